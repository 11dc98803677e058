"""The learned-policy trainers run end to end on a tiny budget and their checkpoints play through the rollout loop.

Also the one config of a run, :class:`policies.dlm.config.TrainConfig`: the CLI
it builds, its checks, its presets, and the record and command it leaves in
the checkpoint.
"""

import argparse
import dataclasses
import importlib.util
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from dlm_gym import cli
from dlm_gym.datasets import load_split
from policies.common.curves import executed_columns, read_curve
from policies.common.paths import CHECKPOINT_DIR, REPO_ROOT
from policies.common.rollout import rollout
from policies.dlm.architectures import LEARNED
from policies.dlm.config import DEFAULT, PAPER, TrainConfig
from policies.dlm.models import load_checkpoint
from policies.dlm.trainer import train_policy
from policies.learned import LearnedPolicy

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(iterations=2, sim_iterations=1, latent_dim=8, lstm_layers=1, eval_every=1, threads=1)


def tiny(name: str, out: Path, **changes) -> TrainConfig:
    """A tiny run of ``name`` writing ``out``."""
    return dataclasses.replace(DEFAULT, policy=name, out=str(out), **{**TINY, **changes})


def _train_script():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "examples" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parse_command(script, command: str) -> TrainConfig:
    """The config ``examples/train.py`` builds from a command line."""
    words = shlex.split(command)
    assert words[:2] == ["python", "examples/train.py"]
    return TrainConfig.from_args(script.parse_args(words[2:]))


@pytest.fixture(scope="module")
def task():
    return load_split("family").tasks[0]


@pytest.fixture(scope="module")
def script():
    return _train_script()


# ------------------------------------------------------------------ presets
def test_paper_preset_is_section_5():
    """PAPER is the paper's schedule: plain Adam, lr 1e-4, 100 iterations per stage, latent 75, 5 LSTM layers."""
    assert (PAPER.iterations, PAPER.lr, PAPER.sim_iterations, PAPER.sim_lr) == (100, 1e-4, 100, 1e-4)
    assert PAPER.grad_clip is None and PAPER.weight_decay == 0 and PAPER.lr_schedule == "constant"
    assert (PAPER.latent_dim, PAPER.lstm_layers, PAPER.batch_size) == (75, 5, None)
    default = (DEFAULT.iterations, DEFAULT.lr, DEFAULT.sim_iterations, DEFAULT.sim_lr, DEFAULT.grad_clip)
    assert default == (1000, 1e-3, 30, 1e-4, 1.0)
    assert DEFAULT.latent_dim == 75 and DEFAULT.lstm_layers == 5
    # the README's spelling of the paper's schedule is PAPER
    argv = "--policy dlm --iterations 100 --lr 1e-4 --sim-iterations 100 --sim-lr 1e-4 --grad-clip none".split()
    assert TrainConfig.from_args(_train_script().parse_args(argv)) == PAPER


# ------------------------------------------------------------------ the CLI
def test_every_field_is_a_flag_of_train_py(script):
    parser_flags = set()
    p = cli.ArgumentParser(prog="train")
    TrainConfig.add_arguments(p)
    for action in p._actions:
        parser_flags.update(action.option_strings)
    fields = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(TrainConfig)}
    assert fields <= parser_flags
    documented = (
        "--iterations --lr --sim-iterations --sim-lr --weight-decay --grad-clip --lr-schedule --latent-dim "
        "--lstm-layers --sim-grad --sim-eval-mode --train-split --batch-size --finetune-split --init-checkpoint "
        "--threads --seed --out --eval-splits --eval-every --policy"
    ).split()
    assert set(documented) == fields
    # the script's parser is that one, plus the RL flags and --policy offering ppo_scratch too
    args = script.parse_args(["--policy", "ppo_scratch"])
    assert args.policy == "ppo_scratch" and args.timesteps is None and args.seed == 0 and args.threads == 1
    assert TrainConfig.from_args(script.parse_args(["--policy", "dlm"])) == DEFAULT


def test_help_shows_the_defaults_of_the_presets(script, capsys):
    with pytest.raises(SystemExit):
        script.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "L_P / L_QP / L_NN (default: 1000; paper: 100)" in text
    assert "learning rate of the supervised stages (default: 1e-3; paper: 1e-4)" in text
    assert "(default: 1.0; 'none' for the paper's unclipped Adam)" in text
    assert "--timesteps" in text and "--n-envs" in text and "--eval-splits" in text


def test_command_round_trips_through_the_cli(script, tmp_path, monkeypatch):
    """Parsing ``config.command()`` with the script's own parser gives the config back, for every kind of field."""
    monkeypatch.chdir(REPO_ROOT)  # commands are run from the repository root; relative paths are relative to it
    init = tmp_path / "cvx.pt"
    init.write_bytes(b"exists: the CLI checks it")
    every = TrainConfig(
        policy="dlm",
        iterations=7,
        lr=2.5e-4,
        sim_iterations=3,
        sim_lr=3e-5,
        weight_decay=0.01,
        grad_clip=0.5,
        lr_schedule="cosine",
        latent_dim=16,
        lstm_layers=2,
        sim_grad="autodiff",
        sim_eval_mode=True,
        train_split="test",
        batch_size=5,
        finetune_split="family",
        eval_splits=("train", "smooth"),
        eval_every=3,
        init_checkpoint=str(init),
        seed=12345,
        threads=2,
        out=str(tmp_path / "deep" / "dlm.pt"),
    )
    configs = [DEFAULT, PAPER, every, dataclasses.replace(PAPER, policy="nnm", out="runs/nnm.pt", seed=2)]
    for config in configs:
        assert _parse_command(script, config.command()) == config
    # a standalone parser built from the dataclass reads the same command
    standalone = TrainConfig.add_arguments(cli.ArgumentParser(prog="x"))
    assert TrainConfig.from_args(standalone.parse_args(shlex.split(every.command())[2:])) == every
    assert "--grad-clip none" in PAPER.command() and "--sim-eval-mode" in every.command()
    assert "--eval-splits train smooth" in every.command() and "--sim-eval-mode" not in DEFAULT.command()
    # paths inside the repository are written relative to its root, as the README writes them
    inside = dataclasses.replace(
        DEFAULT,
        policy="cvx",
        init_checkpoint=str(CHECKPOINT_DIR / "mdr_paper.pt"),
        out=str(REPO_ROOT / "runs" / "cvx.pt"),
    )
    assert "--init-checkpoint policies/checkpoints/mdr_paper.pt --seed 0" in inside.command()
    assert inside.command().endswith("--out runs/cvx.pt")


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--iterations", "0"], "--iterations"),
        (["--lr", "nan"], "--lr"),
        (["--sim-iterations", "-3"], "--sim-iterations"),
        (["--sim-lr", "0"], "--sim-lr"),
        (["--weight-decay", "-0.1"], "--weight-decay"),
        (["--grad-clip", "0"], "--grad-clip"),
        (["--lr-schedule", "linear"], "--lr-schedule"),
        (["--latent-dim", "1.5"], "--latent-dim"),
        (["--lstm-layers", "0"], "--lstm-layers"),
        (["--sim-grad", "exact"], "--sim-grad"),
        (["--batch-size", "0"], "--batch-size"),
        (["--train-split", "nosuch"], "--train-split"),
        (["--eval-splits", "nosuch"], "--eval-splits"),
        (["--eval-every", "0"], "--eval-every"),
        (["--seed", "-1"], "--seed"),
        (["--threads", "0"], "--threads"),
        (["--init-checkpoint", "/nonexistent/x.pt"], "--init-checkpoint"),
    ],
)
def test_invalid_flags_are_one_line_errors_naming_the_flag(script, capsys, argv, flag):
    with pytest.raises(SystemExit) as exit_:
        script.parse_args(["--policy", "cvx", *argv])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0]


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(policy="ppo"), r"TrainConfig.policy \(--policy\): expected one of mdr, cvx, dlm, nn, nnm"),
        (dict(iterations=0), r"TrainConfig.iterations \(--iterations\): expected a positive integer, got '0'"),
        (dict(iterations=True), r"TrainConfig.iterations \(--iterations\): expected a number"),
        (dict(iterations=2.5), r"--iterations\): expected a positive integer"),
        (dict(lr=float("inf")), r"TrainConfig.lr \(--lr\): expected a finite positive number"),
        (dict(grad_clip=0.0), r"TrainConfig.grad_clip \(--grad-clip\): expected a finite positive number or 'none'"),
        (dict(lr_schedule="linear"), r"TrainConfig.lr_schedule \(--lr-schedule\): expected one of constant, cosine"),
        (dict(sim_grad=None), r"--sim-grad\): expected one of fd, autodiff"),
        (dict(seed=2**32), r"TrainConfig.seed \(--seed\): expected an integer in \[0, 2\*\*32\)"),
        (dict(eval_splits="family"), r"TrainConfig.eval_splits \(--eval-splits\): expected a tuple .*\('family',\)"),
        (dict(train_split=""), r"TrainConfig.train_split \(--train-split\): expected a file path or a split name"),
        (dict(iterations=None), r"TrainConfig.iterations \(--iterations\): cannot be None"),
        (dict(sim_eval_mode=1), r"TrainConfig.sim_eval_mode \(--sim-eval-mode\): expected True or False"),
    ],
)
def test_invalid_values_name_the_field_and_the_flag(changes, message):
    with pytest.raises(ValueError, match=message) as err:
        dataclasses.replace(DEFAULT, **changes)
    assert "\n" not in str(err.value)


def test_values_are_normalised():
    config = TrainConfig(lr=1, out=Path("runs/x.pt"), eval_splits=["family", Path("/tmp/v.npz")], batch_size=4)
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config.out == "runs/x.pt" and config.eval_splits == ("family", "/tmp/v.npz")
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["eval_splits"] == ["family", "/tmp/v.npz"]
    assert TrainConfig.from_dict({"policy": "nn"}) == dataclasses.replace(DEFAULT, policy="nn")
    with pytest.raises(ValueError, match="unknown TrainConfig settings \\['cosine'\\]"):
        TrainConfig.from_dict({"cosine": True})
    assert TrainConfig(policy="cvx").checkpoint_path == CHECKPOINT_DIR / "cvx_paper.pt"
    assert config.log_path == Path("runs/x_log.csv")


def test_train_policy_takes_a_config():
    with pytest.raises(TypeError, match="takes a TrainConfig"):
        train_policy("mdr")


def test_shipped_checkpoints_read_back_their_config():
    """Checkpoints written before TrainConfig record their schedule in older keys; from_checkpoint reads those."""
    payload = torch.load(CHECKPOINT_DIR / "dlm_paper.pt", map_location="cpu", weights_only=True)
    config = TrainConfig.from_checkpoint(payload)
    assert config == dataclasses.replace(DEFAULT, init_checkpoint="policies/checkpoints/cvx_paper.pt")
    assert config.checkpoint_path == CHECKPOINT_DIR / "dlm_paper.pt"
    assert TrainConfig.from_checkpoint({"policy": "dlm", "extra": {}}) is None


# ------------------------------------------------------------------ training
@pytest.mark.parametrize("name", ["nn", "mdr", "cvx"])
def test_supervised_trainers_end_to_end(name, tmp_path, task):
    config = tiny(name, tmp_path / f"{name}.pt")
    threads = torch.get_num_threads()
    out = train_policy(config, progress=False)
    assert torch.get_num_threads() == threads  # --threads holds while training only
    assert out == tmp_path / f"{name}.pt" and out.exists()
    rows = read_curve(tmp_path / f"{name}_log.csv")
    stages = {"nn": {"L_NN"}, "mdr": {"L_P"}, "cvx": {"L_P", "L_QP"}}[name]
    assert {r["stage"] for r in rows} == stages
    assert [int(r["step"]) for r in rows if r["stage"] == rows[0]["stage"]] == [0, 1]
    for r in rows:
        for column in ("objective", "seconds", *executed_columns(["train", "finetune"])):
            assert np.isfinite(float(r[column])), column
    assert [float(r["seconds"]) for r in rows] == sorted(float(r["seconds"]) for r in rows)  # since training began
    model, meta = load_checkpoint(out)
    assert meta["policy"] == name and meta["hparams"] == {"latent_dim": 8, "lstm_layers": 1}
    assert meta["command"].startswith(f"python examples/train.py --policy {name} ")
    assert "--iterations 2" in meta["command"] and str(out) in meta["command"]
    # the checkpoint stores its config, and its command is that config's
    assert meta["extra"]["train_config"] == config.to_dict()
    assert TrainConfig.from_checkpoint(meta) == config and meta["command"] == config.command()
    final = meta["extra"]["final_executed"]
    assert final["train"] == pytest.approx(float(rows[-1]["executed_train"]))
    assert meta["extra"]["final_executed_std"]["train"] == pytest.approx(float(rows[-1]["executed_train_std"]))
    policy = LearnedPolicy(name, checkpoint=out)
    result = rollout(policy, task)
    assert np.isfinite(result.loss)


def test_the_stored_command_rebuilds_the_checkpoint(script, tmp_path):
    """Running the command a checkpoint records gives the same weights (and the same config) again."""
    config = tiny("mdr", tmp_path / "mdr.pt", iterations=3, eval_every=2)
    first = train_policy(config, progress=False)
    _, meta = load_checkpoint(first)
    assert script.main([*shlex.split(meta["command"])[2:], "--no-progress"]) == 0
    _, again = load_checkpoint(first)
    assert again["content_hash"] == meta["content_hash"]
    assert again["extra"]["train_config"] == meta["extra"]["train_config"] and again["command"] == meta["command"]


@pytest.mark.parametrize("name, prefix", [("dlm", "cvx"), ("nnm", "nn")])
def test_sim_trainers_end_to_end(name, prefix, tmp_path, task):
    """dlm/nnm fine-tune a prefix checkpoint on L_sim (autodiff here: fast and process-free)."""
    base = train_policy(tiny(prefix, tmp_path / f"{prefix}.pt"), progress=False)
    # the network is the prefix checkpoint's, whatever size the config names: the record says so
    config = tiny(name, tmp_path / f"{name}.pt", init_checkpoint=str(base), sim_grad="autodiff", latent_dim=75)
    out = train_policy(config, progress=False)
    rows = read_curve(tmp_path / f"{name}_log.csv")
    assert {r["stage"] for r in rows} == {"L_sim"}
    before, _ = load_checkpoint(base)
    after, meta = load_checkpoint(out)
    assert meta["policy"] == name and meta["extra"]["train_config"]["sim_grad"] == "autodiff"
    assert TrainConfig.from_checkpoint(meta) == dataclasses.replace(config, latent_dim=8)
    assert f"--init-checkpoint {base}" in meta["command"] and "--latent-dim 8" in meta["command"]
    changed = [not torch.equal(a, b) for a, b in zip(before.state_dict().values(), after.state_dict().values())]
    assert any(changed)
    assert np.isfinite(rollout(LearnedPolicy(name, checkpoint=out), task).loss)


@pytest.mark.slow
def test_dlm_from_scratch_with_fd_gradient(tmp_path, task):
    """The whole dlm schedule (L_P, L_QP, L_sim with finite differences through pymunk) in one call."""
    config = tiny("dlm", tmp_path / "dlm.pt", iterations=1, eval_every=5)
    out = train_policy(config, progress=False)
    rows = read_curve(tmp_path / "dlm_log.csv")
    assert [r["stage"] for r in rows] == ["L_P", "L_QP", "L_sim"]
    assert np.isfinite(rollout(LearnedPolicy("dlm", checkpoint=out), task).loss)


def test_prefix_checkpoint_must_match(tmp_path):
    base = train_policy(tiny("nn", tmp_path / "nn.pt"), progress=False)
    with pytest.raises(ValueError, match="prefix"):
        train_policy(tiny("dlm", tmp_path / "dlm.pt", init_checkpoint=str(base)), progress=False)
    # and an nn checkpoint is never played as dlm, under either of its names
    from policies.dlm.models import CheckpointError

    for name in ("dlm", "dlm_paper"):
        with pytest.raises(CheckpointError, match="holds a 'nn' model, not 'dlm'"):
            LearnedPolicy(name, checkpoint=base)
    assert LearnedPolicy("nn_paper", checkpoint=base).name == "nn_paper"


def test_plain_names_are_the_large_data_models():
    import policies
    from policies.dlm.keypoint_dlm import KeypointDLM
    from policies.dlm.models import NNNet

    distinct = policies.available_policies(aliases=False)
    assert {"dlm", "dlm_paper", "nn", "nn_paper"} <= set(distinct)
    assert policies.common.registry.alias_target("dlm") is None
    for name in ("mdr", "cvx", "dlm"):
        assert isinstance(policies.make_policy(name).model, KeypointDLM)
        assert type(policies.make_policy(name + "_paper").model).__name__ == "DLMNet"
    for name in ("nn", "nnm"):
        assert isinstance(policies.make_policy(name).model, NNNet)
    assert set(LEARNED) <= set(_train_script().TRAINERS)


def test_cli_trainers(tmp_path, script):
    assert {"ppo_scratch", "nn", "nnm", "mdr", "cvx", "dlm"} <= set(script.TRAINERS)
    out = tmp_path / "mdr.pt"
    argv = "--policy mdr --iterations 1 --latent-dim 8 --lstm-layers 1 --grad-clip none --no-progress".split()
    assert script.main([*argv, "--out", str(out)]) == 0
    _, meta = load_checkpoint(out)
    assert meta["extra"]["train_config"]["grad_clip"] is None and meta["extra"]["train_config"]["iterations"] == 1
    assert "schedule" not in meta["extra"]  # the settings have one home, train_config
    assert "--grad-clip none" in meta["command"]
    with pytest.raises(SystemExit):
        script.parse_args(["--policy", "mdr", "--grad-clip", "-1"])
    assert isinstance(script.parse_args(["--list"]), argparse.Namespace)


def test_generated_train_split_with_minibatches(tmp_path, task):
    """The larger-data variant: a split generated from fresh seeds, trained on random minibatches."""
    from dlm_gym.datasets import SplitSpec, generate_split

    path, _ = generate_split("extra", SplitSpec(6, (4, 6), "polygon", seed=990_000), out_dir=tmp_path, progress=False)
    config = tiny("cvx", tmp_path / "cvx.pt", train_split=str(path), batch_size=4, eval_splits=("family",))
    out = train_policy(config, progress=False)
    rows = read_curve(tmp_path / "cvx_log.csv")
    assert "executed_extra" in rows[0] and "executed_finetune" in rows[0] and "executed_family_std" in rows[0]
    assert all(np.isfinite(float(r["executed_family"])) for r in rows)
    _, meta = load_checkpoint(out)
    assert meta["extra"]["train_config"]["batch_size"] == 4 and f"--train-split {path}" in meta["command"]
    assert "--batch-size 4" in meta["command"] and "--eval-splits family" in meta["command"]
    assert np.isfinite(rollout(LearnedPolicy("cvx", checkpoint=out), task).loss)


# ------------------------------------------------------------------ training corpora
@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    from dlm_gym.datasets import CorpusSpec, generate_corpus

    path = tmp_path_factory.mktemp("corpus") / "c"
    generate_corpus(path, CorpusSpec(size=6, shard_size=3, time_limit=5.0), workers=1, progress=False)
    return path


def test_a_corpus_is_streamed_in_minibatches(tiny_corpus, tmp_path, monkeypatch):
    import policies.dlm.trainer as trainer

    seen = []
    real = trainer.split_data

    def spy(split, scene_config=None):
        seen.append(tuple(t.seed for t in split.tasks) if not isinstance(split, str) else split)
        return real(split) if scene_config is None else real(split, scene_config)

    monkeypatch.setattr(trainer, "split_data", spy)
    out = tmp_path / "cvx.pt"
    config = dataclasses.replace(
        DEFAULT,
        policy="cvx",
        train_split=str(tiny_corpus),
        batch_size=2,
        iterations=3,
        latent_dim=8,
        lstm_layers=1,
        threads=1,
        out=str(out),
        eval_every=10,
    )
    train_policy(config, progress=False)
    batches = [s for s in seen[1:] if isinstance(s, tuple)]  # seen[0]: the first shard, for the statistics
    assert len(batches) == 6 and all(len(b) == 2 for b in batches)  # 3 steps of L_P, 3 of L_QP
    assert len(set(batches[:3])) == 3  # every step reads fresh tasks: one epoch of 6 tasks in 3 batches
    assert "executed_train" in read_curve(out.with_name("cvx_log.csv"))[0]
    _, meta = load_checkpoint(out)
    assert (
        meta["extra"]["train_config"]["train_split"] == str(tiny_corpus)
        and f"--train-split {tiny_corpus}" in meta["command"]
    )


def test_a_corpus_needs_a_batch_size(tiny_corpus, script, capsys):
    with pytest.raises(SystemExit) as exit_:
        script.parse_args(["--policy", "cvx", "--train-split", str(tiny_corpus)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a training corpus" in err[0] and "--batch-size" in err[0]
    with pytest.raises(ValueError, match="batch_size"):
        dataclasses.replace(DEFAULT, train_split=str(tiny_corpus))
