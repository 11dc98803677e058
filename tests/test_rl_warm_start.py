"""RL that starts from knowledge (``ppo``) and the privileged state agent (``ppo_state``): behaviour, loading, CLIs."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

import dlm_gym
import policies
from policies.common.curves import read_curve
from policies.common.errors import CheckpointError
from policies.common.paths import CHECKPOINT_DIR
from policies.rl.callbacks import validation_tasks
from policies.rl.ppo import PPOPolicy
from policies.rl.state_agent import (
    NORMALIZED_KEYS,
    STATE_CHECKPOINT,
    STATE_TIMESTEPS,
    ObsNormalizer,
    PPOStatePolicy,
    normalizer_path,
)
from policies.rl.train import make_train_env
from policies.rl.warm_start import actor_parameters, nn_initialised_ppo, warm_up_critic

NN = CHECKPOINT_DIR / "nn.pt"
TINY = dict(n_steps=16, batch_size=16, n_epochs=1, seed=0)


@pytest.fixture(scope="module")
def model():
    env = make_train_env(1, 0)
    yield nn_initialised_ppo(env, NN, log_std_init=-3.0, **TINY)
    env.close()


def test_the_initial_policy_plays_exactly_nn(model):
    tasks = validation_tasks(2)
    ppo = [r.loss for r in policies.evaluate(_agent(model), tasks, progress=False)]
    nn = [r.loss for r in policies.evaluate(policies.make_policy("nn"), tasks, progress=False)]
    assert ppo == pytest.approx(nn, rel=1e-5)


def _agent(model):
    from policies.rl.agent import SB3Agent

    return SB3Agent(model)


def test_warm_up_moves_the_critic_only():
    env = make_train_env(1, 0)
    model = nn_initialised_ppo(env, NN, log_std_init=-3.0, **TINY)
    actor = {id(p) for p in actor_parameters(model)}
    before = {n: p.detach().clone() for n, p in model.policy.named_parameters()}
    warm_up_critic(model, 32)
    changed = {n for n, p in model.policy.named_parameters() if not torch.equal(p, before[n])}
    named = dict(model.policy.named_parameters())
    assert changed and all(id(named[n]) not in actor for n in changed), changed
    assert any(n.startswith("value_net") for n in changed)
    assert all(p.requires_grad for p in model.policy.parameters())  # unfrozen afterwards
    assert model.num_timesteps == 32
    # and fine-tuning then moves the plan network
    model.learn(32, reset_num_timesteps=False)
    assert not torch.equal(named["action_net.weight"], before["action_net.weight"]) or any(
        not torch.equal(p, before[n]) for n, p in named.items() if n.startswith("features_extractor.plan")
    )
    env.close()


def test_saved_model_loads_without_unpickling_and_plays_the_same(model, tmp_path):
    path = tmp_path / "warm.zip"
    model.save(path)
    loaded = PPOPolicy(checkpoint=path)
    task = dlm_gym.sample_task(21, n_facets=(4, 6))
    assert policies.rollout(loaded, task).loss == pytest.approx(policies.rollout(_agent(model), task).loss)


def test_a_checkpoint_of_another_kind_is_refused():
    env = make_train_env(1, 0)
    with pytest.raises(CheckpointError, match="not the NNNet"):
        nn_initialised_ppo(env, CHECKPOINT_DIR / "cvx_paper.pt", log_std_init=-3.0, **TINY)
    env.close()


def test_rl_finetune_tiny_run_ships_zip_log_and_summary(load_example, tmp_path):
    script = load_example("rl_finetune")
    out, ship = tmp_path / "run", tmp_path / "shipped" / "agent.zip"
    argv = ["--critic-steps", "32", "--timesteps", "32", "--n-envs", "2", "--n-steps", "16", "--batch-size", "16"]
    argv += ["--n-epochs", "1", "--eval-every", "1", "--val-tasks", "2", "--out", str(out), "--ship", str(ship)]
    assert script.main(argv) == 0
    rows = read_curve(out / "ppo_log.csv")
    assert [r["stage"] for r in rows] == ["nn", "critic", "RL"]
    assert [int(r["step"]) for r in rows] == [0, 32, 64]
    assert all(r["executed_validation"] for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["RL"]["steps"] == 32 and summary["stages"]["critic"]["steps"] == 32
    assert np.mean(summary["per_task"]["nn"]) == pytest.approx(float(rows[0]["executed_validation"]))
    assert np.mean(summary["per_task"]["ppo"]) == pytest.approx(float(rows[-1]["executed_validation"]))
    assert ship.is_file() and (ship.parent / "agent_log.csv").is_file()
    again = policies.evaluate(PPOPolicy(checkpoint=ship), validation_tasks(2), progress=False)
    assert [r.loss for r in again] == pytest.approx(summary["per_task"]["ppo"])
    # the study's table and figure read the run
    curves = load_example("rl_curves")
    assert curves.main(["--finetune", str(out), "--figure", str(tmp_path / "rl.png")]) == 0
    assert (tmp_path / "rl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    line = curves.finetune_row(out)[0]
    assert line.startswith("| PPO | pixels") and "32 + 32" in line
    assert f"{summary['ppo_validation']['mean']:.2f}" in line
    assert curves.main(["--scratch", str(out)]) == 2  # a fine-tuning run is not a scratch run: one line, exit 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch-size", "4096"], "--batch-size (4096) must not exceed"),
        (["--ship", "agent.pt"], "--ship must name a .zip file"),
        (["--nn-checkpoint", "nope.pt"], "nope.pt"),
        (["--log-std", "nan"], "--log-std"),
    ],
)
def test_rl_finetune_bad_arguments_are_one_line_and_exit_2(load_example, argv, message, capsys):
    script = load_example("rl_finetune")
    with pytest.raises(SystemExit) as exit_info:
        script.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)


# ------------------------------------------------------------------ ppo_state
def test_shipped_state_agent_plays_and_is_deterministic():
    policy = policies.make_policy("ppo_state")
    assert isinstance(policy, PPOStatePolicy) and policy.checkpoint == STATE_CHECKPOINT
    assert policy.privileged and policy.obs_type == "state"
    task = dlm_gym.sample_task(5, n_facets=(4, 6))
    first = policies.rollout(policy, task).loss
    assert np.isfinite(first) and policies.rollout(policy, task).loss == first


def test_state_agent_needs_its_statistics(tmp_path):
    zip_path = tmp_path / "agent.zip"
    zip_path.write_bytes(STATE_CHECKPOINT.read_bytes())
    with pytest.raises(CheckpointError, match="agent_obs_norm.npz.*not found"):
        PPOStatePolicy(checkpoint=zip_path)
    stats = normalizer_path(zip_path)
    stats.write_bytes(b"not an npz")
    with pytest.raises(CheckpointError, match="damaged"):
        PPOStatePolicy(checkpoint=zip_path)
    good = ObsNormalizer.load(normalizer_path(STATE_CHECKPOINT))
    good.mean["pose"] = np.zeros(7)
    good.var["pose"] = np.ones(7)
    good.save(stats)
    with pytest.raises(CheckpointError, match="'pose' does not fit"):
        PPOStatePolicy(checkpoint=zip_path)


def test_a_pixel_checkpoint_is_not_a_state_agent():
    with pytest.raises(CheckpointError, match="not supported"):
        PPOStatePolicy(checkpoint=CHECKPOINT_DIR / "ppo_scratch.zip")


def test_state_zoo_file_matches_the_study_defaults(load_example):
    yaml = pytest.importorskip("yaml")
    from policies.rl.zoo_hyperparams import parse_expression

    hp = yaml.safe_load((CHECKPOINT_DIR.parent / "rl" / "hyperparams" / "ppo_state.yml").read_text())
    hp = hp["VideoPlanarManip-v0"]
    cfg = load_example("rl_study").Config()
    assert hp["env_wrapper"] == "dlm_gym.wrappers.MarkovState" and hp["policy"] == "MultiInputPolicy"
    assert hp["n_envs"] == 1 and int(hp["n_timesteps"]) == STATE_TIMESTEPS
    for key in ("n_steps", "batch_size", "n_epochs", "gamma", "learning_rate"):
        assert hp[key] == getattr(cfg, key), key
    normalize = parse_expression(hp["normalize"])
    assert normalize == {"norm_obs": True, "norm_reward": True, "norm_obs_keys": list(NORMALIZED_KEYS)}
    kwargs = parse_expression(hp["policy_kwargs"])
    assert kwargs == {"net_arch": {"pi": [256, 256], "vf": [256, 256]}, "log_std_init": cfg.log_std_init}
    # the shipped agent was trained with those: its network and its budget
    loaded = policies.make_policy("ppo_state").model
    assert loaded.policy.net_arch == kwargs["net_arch"]


def test_ppo_zoo_file_matches_the_finetune_defaults(load_example):
    yaml = pytest.importorskip("yaml")
    from policies.rl.extractors import NNPlanExtractor
    from policies.rl.zoo_hyperparams import parse_expression

    hp = yaml.safe_load((CHECKPOINT_DIR.parent / "rl" / "hyperparams" / "ppo.yml").read_text())["VideoPlanarManip-v0"]
    cfg = load_example("rl_finetune").Config()
    assert hp["env_wrapper"] == "dlm_gym.wrappers.StackVideoChannels" and hp["policy"] == "MultiInputPolicy"
    assert int(hp["n_timesteps"]) == cfg.timesteps
    for key in ("n_envs", "n_steps", "batch_size", "n_epochs", "learning_rate", "clip_range"):
        assert hp[key] == getattr(cfg, key), key
    assert parse_expression(hp["normalize"]) == {"norm_obs": False, "norm_reward": True}
    kwargs = parse_expression(hp["policy_kwargs"])
    assert kwargs["features_extractor_class"] is NNPlanExtractor
    assert kwargs["features_extractor_kwargs"] == {"latent_dim": 75, "lstm_layers": 5, "trainable": cfg.trainable}
    assert kwargs["net_arch"] == {"pi": [], "vf": [128]} and kwargs["log_std_init"] == cfg.log_std
    # the shipped agent has that network
    extractor = policies.make_policy("ppo").model.policy.features_extractor
    assert isinstance(extractor, NNPlanExtractor) and extractor.trainable == cfg.trainable


@pytest.mark.skipif(
    importlib.util.find_spec("rl_zoo3") is None, reason="rl_zoo3 is not installed (pip install rl_zoo3)"
)
@pytest.mark.slow
def test_rl_zoo3_fine_tunes_the_nn_initialised_agent(load_example, tmp_path):
    import os
    import subprocess
    import sys

    from policies.common.paths import REPO_ROOT

    init = tmp_path / "init"
    argv = ["--critic-steps", "32", "--timesteps", "0", "--n-envs", "2", "--n-steps", "16", "--batch-size", "16"]
    assert load_example("rl_finetune").main([*argv, "--val-tasks", "1", "--out", str(init)]) == 0
    cmd = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", "VideoPlanarManip-v0",
        "--gym-packages", "dlm_gym", "-conf", str(REPO_ROOT / "policies/rl/hyperparams/ppo.yml"),
        "-i", str(init / "ppo.zip"), "-f", str(tmp_path / "logs"), "-n", "64", "--seed", "0", "--eval-freq", "-1",
        "--verbose", "0", "--num-threads", "1", "--hyperparams", "n_envs:2", "n_steps:16", "batch_size:16",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    saved = list((tmp_path / "logs").glob("ppo/VideoPlanarManip-v0_*/VideoPlanarManip-v0.zip"))
    assert saved, list(tmp_path.rglob("*"))
    policy = PPOPolicy(checkpoint=saved[0])  # loads with the zoo's loader, no unpickling
    from policies.rl.extractors import NNPlanExtractor

    assert isinstance(policy.model.policy.features_extractor, NNPlanExtractor)
    assert np.isfinite(policies.rollout(policy, dlm_gym.sample_task(3)).loss)


def test_the_loader_refuses_an_unknown_trainable_setting(model, tmp_path):
    import zipfile

    good, bad = tmp_path / "good.zip", tmp_path / "bad.zip"
    model.save(good)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            blob = src.read(item.filename)
            if item.filename == "data":
                data = json.loads(blob)
                assert data["policy_kwargs"]["features_extractor_kwargs"]["trainable"] == "all"
                data["policy_kwargs"]["features_extractor_kwargs"]["trainable"] = "everything"
                blob = json.dumps(data).encode()
            dst.writestr(item, blob)
    with pytest.raises(CheckpointError, match="trainable='everything'"):
        PPOPolicy(checkpoint=bad)


def test_closed_loop_surface_twin_moves_only_interior_points(load_example, square):
    from dlm_gym.actions import action_to_command, command_to_action
    from dlm_gym.config import DEFAULT_CONFIG

    check = load_example("exploit_check")
    pose = np.array([0.05, 0.3, 0.0])
    command = np.array([[0.05, 0.3, 3.0, -2.0], [0.5 * 0.1 + 0.05 + 0.2, 0.3, 1.0, 1.0]])  # the centre, and outside
    action = command_to_action(command, DEFAULT_CONFIG).astype(np.float32)
    twin, moved, deep = check.twin_action(action, square, pose, DEFAULT_CONFIG)
    assert (moved, deep) == (1, 1)
    out = action_to_command(twin.astype(np.float64), DEFAULT_CONFIG)
    # the centre went 10 cm to an edge of the 20 cm square; the outside point and every force stayed
    assert np.isclose(np.abs(out[0, :2] - pose[:2]).max(), 0.1, atol=1e-6)
    np.testing.assert_allclose(out[1], command[1], atol=1e-6)
    np.testing.assert_array_equal(twin[:, 2:], action[:, 2:])


def test_exploit_check_plays_a_closed_loop_pixel_policy_and_its_twin(load_example):
    import dlm_gym

    check = load_example("exploit_check")
    tasks = dlm_gym.load_split("family_xl").tasks[:2]
    figures = check.check_policy("ppo", tasks, dlm_gym.DEFAULT_CONFIG)
    assert figures["closed_loop"] and figures["points"] == 2 * 5 * 2
    played = [r.loss for r in policies.evaluate(policies.make_policy("ppo"), tasks, progress=False)]
    assert figures["planned"]["mean"] == pytest.approx(np.mean(played))  # as it acts: the rollout loop's losses
    with pytest.raises(SystemExit, match="shadow copy"):
        check.check_policy("ppo_state", tasks, dlm_gym.DEFAULT_CONFIG)
