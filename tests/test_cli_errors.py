"""Every user error of a command-line script is one line, ``error: ...``, on stderr with exit code 2 (issue 11).

Each case runs the script in a subprocess, as a user would; all of them fail
while parsing or loading, before any training or solving starts.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dlm_gym import cli
from policies.dlm.models import NNNet, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--iterations", "1", "--latent-dim", "8", "--lstm-layers", "1", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    nn_ckpt = save_checkpoint(NNNet(latent_dim=8, lstm_layers=1), tmp / "nn.pt", policy="nn", command="python x")
    truncated = tmp / "truncated.pt"
    truncated.write_bytes(nn_ckpt.read_bytes()[:2000])
    regular = tmp / "regular_file"
    regular.write_text("not a folder")
    corrupt = tmp / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    folder = tmp / "folder"
    folder.mkdir()
    return {
        "nn": nn_ckpt,
        "truncated": truncated,
        "regular": regular,
        "corrupt": corrupt,
        "folder": folder,
        "missing": tmp / "missing.pt",
        "out": tmp / "out" / "x.pt",
    }


CASES = {
    # examples/train.py
    "train --init-checkpoint missing": ("train", ["--policy", "cvx", "--init-checkpoint", "{missing}"], "no file"),
    "train --init-checkpoint truncated": ("train", ["--policy", "cvx", "--init-checkpoint", "{truncated}"], "corrupt"),
    "train --init-checkpoint wrong kind": ("train", ["--policy", "dlm", "--init-checkpoint", "{nn}"], "not a prefix"),
    "train --train-split missing": ("train", ["--policy", "mdr", "--train-split", "{folder}/none.npz"], "no file"),
    "train --train-split unknown name": ("train", ["--policy", "mdr", "--train-split", "nosuch"], "no split named"),
    "train --train-split corrupt": ("train", ["--policy", "mdr", "--train-split", "{corrupt}"], "corrupt.npz"),
    "train --lr nan": ("train", ["--policy", "mdr", "--lr", "nan"], "--lr: expected a finite positive number"),
    "train --lr -1": ("train", ["--policy", "mdr", "--lr", "-1"], "--lr"),
    "train --weight-decay inf": ("train", ["--policy", "mdr", "--weight-decay", "inf"], "--weight-decay"),
    "train --grad-clip nan": ("train", ["--policy", "mdr", "--grad-clip", "nan"], "'none'"),
    "train --eval-splits unknown name": ("train", ["--policy", "mdr", "--eval-splits", "nosuch"], "no split named"),
    "train --eval-every 0": ("train", ["--policy", "mdr", "--eval-every", "0"], "--eval-every"),
    "train --seed -1": ("train", ["--policy", "mdr", "--seed", "-1"], "--seed"),
    "train --out under a file": ("train", ["--policy", "mdr", "--out", "{regular}/x.pt"], "is a file"),
    "train --out a directory": ("train", ["--policy", "mdr", "--out", "{folder}"], "is a directory"),
    "train no --policy": ("train", [], "--policy is required"),
    # examples/generate_dataset.py
    "generate --out a file": ("generate_dataset", ["--out", "{regular}"], "is a file; give a directory"),
    "generate --time-limit -1": ("generate_dataset", ["--time-limit", "-1"], "--time-limit"),
    "generate --time-limit nan": ("generate_dataset", ["--time-limit", "nan"], "--time-limit"),
    "generate --size 0": ("generate_dataset", ["--size", "0"], "--size"),
    # examples/benchmark.py: the path is checked before the run, not after it
    "benchmark --json under a file": ("benchmark", ["--json", "{regular}/b.json"], "is a file"),
    "benchmark --json a directory": ("benchmark", ["--json", "{folder}"], "is a directory"),
    "benchmark --episodes 0": ("benchmark", ["--episodes", "0"], "--episodes"),
    # examples/rl_finetune.py: a checkpoint of another kind fails when loaded, before any env step
    "rl_finetune --nn-checkpoint truncated": (
        "rl_finetune",
        ["--nn-checkpoint", "{truncated}", "--out", "{folder}/r"],
        "corrupt",
    ),
    "rl_finetune --nn-checkpoint missing": ("rl_finetune", ["--nn-checkpoint", "{missing}"], "missing.pt"),
    "rl_finetune --trainable bogus": ("rl_finetune", ["--trainable", "bogus"], "--trainable"),
    # examples/rl_study.py
    "rl_study --ship not a zip": ("rl_study", ["--markov", "--ship", "{folder}/agent.pt"], "--ship must name a .zip"),
    "rl_study --ship without --markov": ("rl_study", ["--ship", "{folder}/agent.zip"], "--ship makes the zoo's"),
    # examples/rl_curves.py
    "rl_curves --scratch not a run": ("rl_curves", ["--scratch", "{folder}"], "not a finished run"),
    "rl_curves --finetune missing": ("rl_curves", ["--finetune", "{folder}/none"], "none"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_errors_are_one_line_and_exit_code_2(files, case):
    script, args, message = CASES[case]
    argv = [a.format(**files) for a in args]
    if script == "train" and "--out" not in argv:
        argv += ["--out", str(files["out"])]  # never the shipped checkpoint, whatever happens
    if script == "train":
        argv += TINY
    if script == "generate_dataset" and "--out" not in argv:
        argv += ["--out", str(files["folder"])]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{script}.py"), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert message in lines[0]
    assert not files["out"].exists()


@pytest.mark.parametrize(
    "parse, text, ok",
    [
        (cli.positive_int, "3", 3),
        (cli.positive_int, "0", None),
        (cli.positive_int, "2.5", None),
        (cli.non_negative_int, "0", 0),
        (cli.non_negative_int, "-1", None),
        (cli.finite_float, "-2", -2.0),
        (cli.finite_float, "inf", None),
        (cli.finite_positive_float, "1e-4", 1e-4),
        (cli.finite_positive_float, "nan", None),
        (cli.finite_positive_float, "0", None),
        (cli.finite_non_negative_float, "0", 0.0),
        (cli.finite_non_negative_float, "-0.1", None),
        (cli.split_name_or_file, "train", "train"),
        (cli.split_name_or_file, "nosuch", None),
        (cli.split_name_or_file, "/nonexistent/x.npz", None),
    ],
)
def test_argument_types(parse, text, ok):
    if ok is None:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
    else:
        assert parse(text) == ok


def test_path_types(tmp_path):
    regular = tmp_path / "file"
    regular.write_text("x")
    assert cli.output_file(str(tmp_path / "new" / "deeper" / "x.json")) == tmp_path / "new" / "deeper" / "x.json"
    assert cli.output_dir(str(tmp_path / "new")) == tmp_path / "new"
    assert cli.existing_file(str(regular)) == regular
    assert cli.existing_dir(str(tmp_path)) == tmp_path
    for parse, text in [
        (cli.output_file, str(tmp_path)),  # a directory
        (cli.output_file, str(regular / "x.json")),  # under a regular file
        (cli.output_file, ""),
        (cli.output_dir, str(regular)),
        (cli.output_dir, str(regular / "sub")),
        (cli.existing_file, str(tmp_path / "missing")),
        (cli.existing_file, str(tmp_path)),
        (cli.existing_dir, str(regular)),
        (cli.existing_dir, str(tmp_path / "missing")),
    ]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
    assert not (tmp_path / "new").exists()  # checking never creates anything


def test_parser_errors_are_one_line(capsys):
    p = cli.ArgumentParser(prog="tool")
    p.add_argument("--n", type=cli.positive_int)
    with pytest.raises(SystemExit) as exit_:
        p.parse_args(["--n", "-4"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: argument --n: expected a positive integer, got '-4' (see tool --help)\n"
    assert cli.fail("two\nlines") == 2 and capsys.readouterr().err == "error: two lines\n"
