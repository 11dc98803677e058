import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import policies
from dlm_gym.config import DEFAULT_CONFIG
from dlm_gym.envs.video_planar_manip import VideoPlanarManipEnv
from dlm_gym.task import sample_task
from policies.common.base import OpenLoopPolicy

ROOT = Path(__file__).resolve().parents[1]


def test_registry_lists_and_builds_the_baselines():
    names = policies.available_policies()
    assert {"noop", "random"} <= set(names)
    for name in ("noop", "random"):
        p = policies.make_policy(name)
        assert isinstance(p, policies.Policy) and p.name == name


def test_unknown_policy_names_the_closest_match():
    with pytest.raises(policies.UnknownPolicyError, match="Did you mean 'noop'.*Available: .*random"):
        policies.make_policy("nop")


def test_noop_keeps_the_fingers_clear_of_the_object():
    """The do-nothing policy gives the same motion as a scene whose fingers were never placed."""
    task = sample_task(4)
    result = policies.rollout(policies.make_policy("noop"), task)
    env = VideoPlanarManipEnv()
    env.reset(options={"task": task})
    scene = env._scene
    poses = [scene.object_pose]
    for _ in range(DEFAULT_CONFIG.horizon - 1):
        scene.run_interval(np.zeros((2, 4)), np.zeros((2, 4)))  # fingers parked far away
        poses.append(scene.object_pose)
    assert np.allclose(result.simulated_trajectory, np.stack(poses), atol=1e-9)


def test_rollouts_are_deterministic_and_return_matches_loss():
    tasks = [sample_task(s) for s in range(3)]
    a = policies.evaluate(policies.make_policy("random", seed=1), tasks, progress=False)
    b = policies.evaluate(policies.make_policy("random", seed=1), tasks, progress=False)
    assert [r.loss for r in a] == [r.loss for r in b]
    for r in a:
        assert r.episode_return == pytest.approx(-r.loss)
        assert r.forward_s >= 0
    s = policies.summarize(a)
    assert s["n"] == 3 and s["loss_mean"] == pytest.approx(np.mean([r.loss for r in a]))


def test_rollout_records_frames():
    r = policies.rollout(policies.make_policy("noop"), sample_task(0), record=True)
    assert len(r.frames) == DEFAULT_CONFIG.horizon + 1
    assert r.frames[0].shape == (DEFAULT_CONFIG.render_size, DEFAULT_CONFIG.render_size, 3)


class _Replay(OpenLoopPolicy):
    name = "replay"

    def __init__(self, commands):
        super().__init__()
        self.commands = commands

    def plan(self, obs, info):
        return self.commands


def test_open_loop_policy_checks_its_plan_and_plays_it_back():
    task = sample_task(0)
    bad = _Replay(np.zeros((3, 2, 4)))
    env = VideoPlanarManipEnv()
    obs, info = env.reset(options={"task": task})
    with pytest.raises(ValueError, match=r"shape \(5, 2, 4\)"):
        bad.reset(obs, info)
    cmds = np.zeros((5, 2, 4))
    cmds[:, :, 1] = 0.7
    good = _Replay(cmds)
    good.reset(obs, info)
    mid_y = sum(DEFAULT_CONFIG.view_y) / 2
    half_y = (DEFAULT_CONFIG.view_y[1] - DEFAULT_CONFIG.view_y[0]) / 2
    assert np.allclose(good.act({"step": 2})[:, 1], (0.7 - mid_y) / half_y)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "evaluate.py"), *args], capture_output=True, text=True, cwd=ROOT
    )


@pytest.mark.slow
def test_evaluate_cli_help_and_bad_flags():
    out = run_cli("--help")
    assert out.returncode == 0 and "--policy" in out.stdout and "--json" in out.stdout
    out = run_cli("--policy", "nop", "--generated", "1")
    assert out.returncode == 2 and "Did you mean 'noop'" in out.stderr
    out = run_cli("--generated", "-3")
    assert out.returncode == 2 and "--generated: expected an integer >= 0" in out.stderr
    out = run_cli("--bogus")
    assert out.returncode == 2 and "unrecognized arguments" in out.stderr


@pytest.mark.slow
def test_evaluate_cli_json_is_reproducible(tmp_path):
    """Same command, same per-task results and intervals (timings aside), whatever the worker count; every
    table carries the floor and the ceiling."""
    outputs = []
    for name, workers in (("a.json", "1"), ("b.json", "2")):
        out = run_cli(
            "--policy",
            "random",
            "--split",
            "--generated",
            "6",
            "--no-progress",
            "--workers",
            workers,
            "--json",
            str(tmp_path / name),
        )
        assert out.returncode == 0, out.stderr
        assert "cm^2" in out.stdout and "miqp" in out.stdout and "noop (ceiling)" in out.stdout
        payload = json.loads((tmp_path / name).read_text())
        for row in payload["results"]:
            row.pop("forward_s")
        outputs.append(payload)
    a, b = outputs
    assert a["results"] == b["results"] and a["neighbours"] == b["neighbours"]
    rows = {r["policy"]: r for r in a["results"]}
    assert set(rows) == {"random", "noop", "miqp"}  # the live floor (generated tasks store none) and the ceiling
    r = rows["random"]
    assert r["n"] == 6 and len(r["losses"]) == 6 and r["loss_ci_low"] <= r["loss_mean"] <= r["loss_ci_high"]
    assert {"mean", "ci_low", "ci_high"} <= set(r["vs_noop"]) and "vs_noop" not in rows["noop"]
    meta = a["meta"]
    assert meta["physics_version"] and meta["bootstrap"]["resamples"] > 0 and meta["generated_seed"] == 0
    assert a["tasks"]["generated"] == [f"generated/{i}" for i in range(6)]


def test_stored_splits_show_their_stored_oracle_floor():
    from dlm_gym.datasets import load_split
    from policies.common.report import FLOOR, compare, format_table

    split = load_split("train")
    rows, _ = compare(["noop"], {"train": split.tasks[:5]}, progress=False)
    floor = next(r for r in rows if r["policy"] == FLOOR)
    assert floor["losses"] == split.oracle_loss[:5].tolist()
    table = format_table(rows)
    assert "oracle (floor)" in table and "noop (ceiling)" in table and "cm^2" in table


@pytest.mark.slow
def test_every_registered_policy_plays_one_task_of_each_split():
    from dlm_gym.datasets import SPLIT_NAMES, load_split

    for name in policies.available_policies():
        policy = policies.make_policy(name)
        for split in SPLIT_NAMES:
            result = policies.rollout(policy, load_split(split).tasks[0])
            assert np.isfinite(result.loss) and result.loss >= 0, (name, split)
            assert result.simulated_trajectory.shape == (DEFAULT_CONFIG.horizon, 3)


@pytest.mark.slow
def test_evaluate_cli_plots_learning_curves(tmp_path):
    out = run_cli("--policy", "ppo", "--plot", str(tmp_path / "curves.png"))
    assert out.returncode == 0, out.stderr
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    out = run_cli("--policy", "random", "--plot", str(tmp_path / "none.png"))
    assert out.returncode == 2 and "no training log for random" in out.stderr
