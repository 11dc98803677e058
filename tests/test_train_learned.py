"""The learned-policy trainers run end to end on a tiny budget and their checkpoints play through the rollout loop."""

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from dlm_gym.datasets import load_split
from policies.learned import LearnedPolicy
from policies.models import load_checkpoint
from policies.rollout import rollout
from policies.train_learned import DEFAULT_SCHEDULE, PAPER_SCHEDULE, train_policy

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(iterations=2, sim_iterations=1, latent_dim=8, lstm_layers=1, eval_every=1, progress=False, threads=1)


def _train_script():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "examples" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def task():
    return load_split("family").tasks[0]


def test_schedules_are_documented():
    assert (PAPER_SCHEDULE.iterations, PAPER_SCHEDULE.lr, PAPER_SCHEDULE.latent_dim, PAPER_SCHEDULE.lstm_layers) == (
        100, 1e-4, 75, 5,
    )
    assert DEFAULT_SCHEDULE.latent_dim == 75 and DEFAULT_SCHEDULE.lstm_layers == 5


@pytest.mark.parametrize("name", ["nn", "mdr", "cvx"])
def test_supervised_trainers_end_to_end(name, tmp_path, task):
    out = train_policy(name, out_path=tmp_path / f"{name}.pt", seed=0, **TINY)
    assert out == tmp_path / f"{name}.pt" and out.exists()
    rows = list(csv.DictReader((tmp_path / f"{name}_log.csv").open()))
    stages = {"nn": {"L_NN"}, "mdr": {"L_P"}, "cvx": {"L_P", "L_QP"}}[name]
    assert {r["stage"] for r in rows} == stages
    assert all(np.isfinite(float(r["executed_train"])) and np.isfinite(float(r["executed_finetune"])) for r in rows)
    model, meta = load_checkpoint(out)
    assert meta["policy"] == name and meta["hparams"] == {"latent_dim": 8, "lstm_layers": 1}
    assert meta["command"].startswith(f"python examples/train.py --policy {name} ")
    assert "--iterations 2" in meta["command"] and str(out) in meta["command"]
    policy = LearnedPolicy(name, checkpoint=out)
    result = rollout(policy, task)
    assert np.isfinite(result.loss)


@pytest.mark.parametrize("name, prefix", [("dlm", "cvx"), ("nnm", "nn")])
def test_sim_trainers_end_to_end(name, prefix, tmp_path, task):
    """dlm/nnm fine-tune a prefix checkpoint on L_sim (autodiff here: fast and process-free)."""
    base = train_policy(prefix, out_path=tmp_path / f"{prefix}.pt", **TINY)
    out = train_policy(name, out_path=tmp_path / f"{name}.pt", init_checkpoint=base, sim_grad="autodiff", **TINY)
    rows = list(csv.DictReader((tmp_path / f"{name}_log.csv").open()))
    assert {r["stage"] for r in rows} == {"L_sim"}
    before, _ = load_checkpoint(base)
    after, meta = load_checkpoint(out)
    assert meta["policy"] == name and meta["extra"]["sim_grad"] == "autodiff"
    changed = [not torch.equal(a, b) for a, b in zip(before.state_dict().values(), after.state_dict().values())]
    assert any(changed)
    assert np.isfinite(rollout(LearnedPolicy(name, checkpoint=out), task).loss)


def test_dlm_from_scratch_with_fd_gradient(tmp_path, task):
    """The whole dlm schedule (L_P, L_QP, L_sim with finite differences through pymunk) in one call."""
    out = train_policy("dlm", out_path=tmp_path / "dlm.pt", iterations=1, sim_iterations=1, latent_dim=8,
                       lstm_layers=1, eval_every=5, progress=False, threads=1)
    rows = list(csv.DictReader((tmp_path / "dlm_log.csv").open()))
    assert [r["stage"] for r in rows] == ["L_P", "L_QP", "L_sim"]
    assert np.isfinite(rollout(LearnedPolicy("dlm", checkpoint=out), task).loss)


def test_prefix_checkpoint_must_match(tmp_path):
    base = train_policy("nn", out_path=tmp_path / "nn.pt", **TINY)
    with pytest.raises(ValueError, match="prefix"):
        train_policy("dlm", out_path=tmp_path / "dlm.pt", init_checkpoint=base, **TINY)
    # and an nn checkpoint is never played as dlm, under either of its names
    from policies.models import CheckpointError

    for name in ("dlm", "dlm_paper"):
        with pytest.raises(CheckpointError, match="holds a 'nn' model, not 'dlm'"):
            LearnedPolicy(name, checkpoint=base)
    assert LearnedPolicy("nn_paper", checkpoint=base).name == "nn_paper"


def test_plain_names_are_aliases_of_the_paper_models():
    import policies

    every, distinct = policies.available_policies(), policies.available_policies(aliases=False)
    assert {"dlm", "dlm_paper", "nn", "nn_paper"} <= set(every)
    assert "dlm_paper" in distinct and "dlm" not in distinct
    assert policies.registry.alias_target("dlm") == "dlm_paper"


def test_cli_trainers(tmp_path, monkeypatch):
    script = _train_script()
    assert {"ppo", "nn", "nnm", "mdr", "cvx", "dlm"} <= set(script.TRAINERS)
    out = tmp_path / "mdr.pt"
    assert script.main(["--policy", "mdr", "--iterations", "1", "--latent-dim", "8", "--lstm-layers", "1",
                        "--grad-clip", "none", "--no-progress", "--out", str(out)]) == 0
    _, meta = load_checkpoint(out)
    assert meta["extra"]["schedule"]["iterations"] == 1 and "grad_clip" not in meta["extra"]["schedule"]
    assert "--grad-clip none" in meta["command"]
    with pytest.raises(SystemExit):
        script.parse_args(["--policy", "mdr", "--grad-clip", "-1"])


def test_generated_train_split_with_minibatches(tmp_path, task):
    """The larger-data variant: a split generated from fresh seeds, trained on random minibatches."""
    from dlm_gym.datasets import SplitSpec, generate_split

    path, _ = generate_split("extra", SplitSpec(6, (4, 6), "polygon", seed=990_000), out_dir=tmp_path, progress=False)
    out = train_policy("cvx", out_path=tmp_path / "cvx.pt", train_split=path, batch_size=4, **TINY)
    rows = list(csv.DictReader((tmp_path / "cvx_log.csv").open()))
    assert "executed_extra" in rows[0] and "executed_finetune" in rows[0]
    _, meta = load_checkpoint(out)
    assert meta["extra"]["batch_size"] == 4 and f"--train-split {path}" in meta["command"]
    assert "--batch-size 4" in meta["command"]
    assert np.isfinite(rollout(LearnedPolicy("cvx", checkpoint=out), task).loss)
