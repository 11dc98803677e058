"""The RL study: the MarkovState and RelativeContacts wrappers, the agent in the shared loop, the script."""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

import dlm_gym
from dlm_gym.actions import action_to_command
from dlm_gym.envs.video_planar_manip import VideoPlanarManipEnv
from dlm_gym.wrappers import RELATIVE_CONTACT_RANGE, MarkovState, RelativeContacts, relative_to_absolute
from policies.common.curves import read_curve
from policies.common.rollout import evaluate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def state_env():
    return VideoPlanarManipEnv(obs_type="state")


@pytest.fixture(scope="module")
def study():
    """examples/rl_study.py as a module (a script, not a package; loaded once for the module's tests)."""
    spec = importlib.util.spec_from_file_location("examples_rl_study", EXAMPLES / "rl_study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def task():
    return dlm_gym.sample_task(850_003, n_facets=(4, 6))


# ------------------------------------------------------------------ wrappers
def test_markov_state_spaces_and_shapes(task):
    env = MarkovState(state_env())
    space = env.observation_space
    assert isinstance(space, spaces.Dict)
    assert set(space.spaces) == set(state_env().observation_space.spaces) | {"velocity", "previous_action"}
    assert space["velocity"].shape == (3,) and space["velocity"].dtype == np.float64
    assert space["previous_action"].shape == (2, 4) and space["previous_action"].dtype == np.float32
    obs, _ = env.reset(options={"task": task})
    assert space.contains(obs)
    action = np.full((2, 4), 1.5, np.float32)  # clipped by the env; recorded clipped
    obs, *_ = env.step(action)
    assert space.contains(obs)
    np.testing.assert_array_equal(obs["previous_action"], np.ones((2, 4), np.float32))
    rel = RelativeContacts(env)
    assert rel.action_space == env.action_space and rel.observation_space == space


def test_wrappers_refuse_pixel_observations():
    with pytest.raises(ValueError, match="obs_type='state'"):
        MarkovState(VideoPlanarManipEnv())
    with pytest.raises(ValueError, match="obs_type='state'"):
        RelativeContacts(VideoPlanarManipEnv())


@pytest.mark.parametrize("stack", ["markov", "relative", "both"])
def test_check_env_passes(stack):
    env = state_env()
    if stack in ("markov", "both"):
        env = MarkovState(env)
    if stack in ("relative", "both"):
        env = RelativeContacts(env)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any other checker warning fails the test
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version")
        check_env(env, skip_render_check=True)


def test_zero_offset_is_the_target_centroid(task):
    env = RelativeContacts(state_env())
    obs, _ = env.reset(options={"task": task})
    forces = np.array([[0.0, 0.0, 0.3, -0.7], [0.0, 0.0, -1.0, 0.25]], np.float32)
    for k in range(task.horizon):
        absolute = env.action(forces)
        command = action_to_command(absolute)
        np.testing.assert_allclose(command[:, :2], np.repeat(task.trajectory[k, None, :2], 2, axis=0), atol=1e-6)
        np.testing.assert_array_equal(absolute[:, 2:], forces[:, 2:])  # forces pass through untouched
        obs, *_ = env.step(forces)
    # an offset of +-1 is RELATIVE_CONTACT_RANGE metres along the world axes, clipped to the view
    a = np.array([[1.0, -1.0, 0, 0], [-1.0, 0.5, 0, 0]])
    cmd = action_to_command(relative_to_absolute(a, task.trajectory, 2))
    expected = task.trajectory[2, :2] + RELATIVE_CONTACT_RANGE * a[:, :2]
    lo, hi = action_to_command(-np.ones((2, 4))), action_to_command(np.ones((2, 4)))
    np.testing.assert_allclose(cmd[:, :2], np.clip(expected, lo[:, :2], hi[:, :2]), atol=1e-6)
    far = relative_to_absolute(np.ones((2, 4)) * 1.0, np.array([[0.39, 0.74, 0.0]] * 5), 0)
    assert np.all(np.abs(far) <= 1.0)
    with pytest.raises(ValueError):
        env.action(np.full((2, 4), np.nan))


def test_markov_velocity_zero_at_reset_nonzero_after_a_push(task):
    env = RelativeContacts(MarkovState(state_env()))
    obs, _ = env.reset(options={"task": task})
    np.testing.assert_array_equal(obs["velocity"], np.zeros(3))
    np.testing.assert_array_equal(obs["previous_action"], np.zeros((2, 4), np.float32))
    # fingers left and right of the target centroid, pushing right and up hard
    push = np.array([[-1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0]], np.float32)
    obs, *_ = env.step(push)  # step 0 places the fingers: no time passes
    np.testing.assert_array_equal(obs["velocity"], np.zeros(3))
    np.testing.assert_array_equal(obs["previous_action"], relative_to_absolute(push, task.trajectory, 0))
    obs, *_ = env.step(push)
    assert np.linalg.norm(obs["velocity"]) > 1e-2
    np.testing.assert_array_equal(obs["velocity"], env.unwrapped._scene.object_velocity)
    # previous_action is the absolute action the env executed (MarkovState sits inside RelativeContacts)
    np.testing.assert_array_equal(obs["previous_action"], relative_to_absolute(push, task.trajectory, 1))


# ------------------------------------------------------------------ the agent in the shared loop
class ScriptedModel:
    """Predicts a fixed action per step (from the observation's step), and records what it was shown."""

    def __init__(self, seed: int = 0) -> None:
        self.actions = np.random.default_rng(seed).uniform(-1, 1, (5, 2, 4)).astype(np.float32)
        self.seen: list[dict] = []

    def predict(self, obs, deterministic=True):
        self.seen.append(obs)
        return self.actions[int(obs["step"])], None


@pytest.mark.parametrize("markov,relative", [(True, True), (True, False), (False, True)])
def test_loop_loss_equals_wrapped_env_return(study, task, markov, relative):
    tasks = [task, dlm_gym.sample_task(850_000, n_facets=(4, 6))]
    model = ScriptedModel()
    policy = study.StackPolicy(model, markov=markov, relative_contacts=relative)
    results = evaluate(policy, tasks, progress=False)
    assert len(policy.projections) == 5 * len(tasks)
    for t, result in zip(tasks, results):
        env = study.wrap_state_env(state_env(), markov=markov, relative_contacts=relative)
        obs, _ = env.reset(options={"task": t})
        total, done = 0.0, False
        while not done:
            obs, reward, done, _, info = env.step(model.actions[int(obs["step"])])
            total += reward
        assert info["object_trajectory_loss"] == result.loss
        assert -total == pytest.approx(result.loss, rel=1e-9)
    assert ("velocity" in model.seen[0]) == markov


def test_stack_policy_notices_a_different_episode(study, task):
    policy = study.StackPolicy(ScriptedModel(), markov=True, relative_contacts=True)
    env = state_env()
    obs, info = env.reset(options={"task": task})
    policy.reset(obs, info)
    obs, *_ = env.step(policy.act(obs))
    obs, *_ = env.step(np.zeros((2, 4), np.float32))  # not what the policy asked for
    with pytest.raises(RuntimeError, match="shadow env"):
        policy.act(obs)


def test_obs_normalizer_matches_vec_normalize(study):
    cfg = study.Config(markov=True)
    venv = study.make_vec_env(cfg)
    venv.reset()
    for _ in range(12):
        venv.step(np.random.default_rng(1).uniform(-1, 1, (1, 2, 4)))
    norm = study.ObsNormalizer.from_vec_normalize(venv)
    raw = venv.get_original_obs()
    single = {k: v[0] for k, v in raw.items()}
    expected = venv.normalize_obs(raw)
    got = norm(single)
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k][0], rtol=1e-6)
    venv.close()


# ------------------------------------------------------------------ the script
def test_tiny_ppo_run_writes_curve_model_and_summary(study, tmp_path, load_example, capsys):
    out = tmp_path / "ppo"
    argv = ["--algo", "ppo", "--markov", "--relative-contacts", "--timesteps", "256", "--n-steps", "128"]
    argv += ["--batch-size", "64", "--n-epochs", "1", "--eval-every", "128", "--eval-tasks", "3", "--out", str(out)]
    assert study.main(argv) == 0
    rows = read_curve(out / "curve.csv")
    assert [int(r["step"]) for r in rows] == [0, 128, 256]
    assert all(r["stage"] == "RL" and r["executed_validation"] for r in rows)
    assert rows[0]["objective"] == "" and float(rows[-1]["objective"]) > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algo"] == "ppo" and summary["steps"] == 256
    assert summary["wrappers"] == ["MarkovState", "RelativeContacts"]
    assert summary["final_validation"]["mean"] == pytest.approx(float(rows[-1]["executed_validation"]))
    assert summary["per_task"]["seed"] == study.validation_seeds(3) == [850_000, 850_001, 850_002]
    assert len(summary["per_task"]["noop"]) == 3
    diff = np.array(summary["per_task"]["loss"]) - np.array(summary["per_task"]["noop"])
    assert summary["difference_vs_noop"]["mean"] == pytest.approx(diff.mean())
    assert summary["exploit_check"]["steps"] == 15
    assert len(summary["exploit_check"]["surface_twin"]["losses"]) == 3
    assert "zero_offset" in summary["references"]
    # the saved run plays the same losses again
    again = evaluate(study.load_policy(out), study.validation_tasks(3), progress=False)
    assert [r.loss for r in again] == summary["per_task"]["loss"]
    # and the study's table reads it
    capsys.readouterr()
    assert load_example("rl_curves").main(["--scratch", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| PPO | state + MarkovState + RelativeContacts | scratch (seed 0) | 256 |" in table


def test_tiny_sac_run(study, tmp_path):
    out = tmp_path / "sac"
    argv = ["--algo", "sac", "--markov", "--timesteps", "150", "--learning-starts", "100", "--batch-size", "32"]
    argv += ["--eval-every", "1000", "--eval-tasks", "3", "--no-norm-obs", "--out", str(out)]
    assert study.main(argv) == 0
    rows = read_curve(out / "curve.csv")
    assert [int(r["step"]) for r in rows] == [0, 150]
    assert not (out / "obs_norm.npz").exists()
    assert json.loads((out / "summary.json").read_text())["steps"] == 150


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--algo", "dqn"], "invalid choice"),
        (["--eval-every", "0"], "positive integer"),
        (["--timesteps", "ten"], "positive integer"),
        (["--batch-size", "512", "--n-steps", "256"], "--batch-size"),
        (["--gamma", "1.5"], "--gamma"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(study, argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        study.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_out_must_not_be_a_file(study, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SystemExit) as exc:
        study.main(["--out", str(f)])
    assert exc.value.code == 2 and "is a file" in capsys.readouterr().err


def test_surface_twin_commands_no_interior_placement(study, task):
    """The exploit check's twin moves interior contact points onto the outline; the loop still agrees with it."""
    model = ScriptedModel()
    model.actions[:] = 0.0  # relative zero offset: both fingers at the target centroid, inside the object
    plain = study.StackPolicy(model, markov=True, relative_contacts=True)
    twin = study.StackPolicy(model, markov=True, relative_contacts=True, surface_twin=True)
    (a,) = evaluate(plain, [task], progress=False)
    (b,) = evaluate(twin, [task], progress=False)
    assert plain.projections[0].min() > 0.01  # placed 1 cm or more inside
    assert twin.projections[0].max() < 1e-6  # placed on the surface
    assert np.isfinite(a.loss) and np.isfinite(b.loss)
