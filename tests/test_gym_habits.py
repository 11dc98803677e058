"""Gymnasium, SB3 and user habits (issue 12): native human mode, the namespaced id, state observations,
labelled GIFs, quiet progress bars off a terminal, and a user's own policy class in the loop."""

from __future__ import annotations

import io
import itertools
import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import dlm_gym
import policies
from dlm_gym import Task, command_to_action
from dlm_gym.config import DEFAULT_CONFIG
from dlm_gym.envs.video_planar_manip import MAX_POLYGON_VERTICES, VideoPlanarManipEnv
from policies import PolicySpecError
from policies.common.registry import load_policy_spec
from policies.common.report import compare

ROOT = Path(__file__).resolve().parents[1]
T, N = DEFAULT_CONFIG.horizon, DEFAULT_CONFIG.num_fingers


def _actions(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (N, 4)).astype(np.float32) for _ in range(T)]


def _wrappers(env) -> list[str]:
    names = []
    while hasattr(env, "env"):
        names.append(type(env).__name__)
        env = env.env
    return names


# ------------------------------------------------------------------ human mode
def test_human_mode_is_native_without_wrapper_or_warning():
    assert "human" in VideoPlanarManipEnv.metadata["render_modes"]
    assert VideoPlanarManipEnv.metadata["render_fps"] == 10  # one frame per keyframe, 0.1 s apart
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make("VideoPlanarManip-v0", render_mode="human")
        assert "HumanRendering" not in _wrappers(env) and env.unwrapped.render_mode == "human"
        env.reset(seed=0)
        import pygame

        assert pygame.display.get_surface().get_size() == (DEFAULT_CONFIG.render_size,) * 2
        env.step(env.action_space.sample())
        assert env.render() is None
        env.close()
        assert not pygame.display.get_init()


def test_human_mode_observations_equal_headless_ones():
    task = dlm_gym.sample_task(5)
    a = play(VideoPlanarManipEnv(render_mode="human"), task, _actions())
    b = play(VideoPlanarManipEnv(), task, _actions())
    for (oa, ra, ia), (ob, rb, ib) in zip(a, b):
        assert all(np.array_equal(oa[k], ob[k]) for k in oa) and ra == rb
        assert all(np.array_equal(ia[k], ib[k]) for k in ia)


def play(env, task, actions):
    obs, info = env.reset(options={"task": task})
    out = [(obs, 0.0, info)]
    for action in actions:
        obs, reward, _, _, info = env.step(action)
        out.append((obs, reward, info))
    env.close()
    return out


@pytest.mark.parametrize(
    "environ, dummy",
    [
        ({}, True),
        ({"DISPLAY": ":7"}, False),
        ({"WAYLAND_DISPLAY": "wayland-0"}, False),
        ({"SDL_VIDEODRIVER": "x11"}, False),  # the user's choice stands (and stays x11)
    ],
)
def test_dummy_video_driver_only_without_a_display(environ, dummy):
    env = {k: v for k, v in os.environ.items() if k not in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY")}
    env.update(environ)
    code = "import os, dlm_gym.render; print(os.environ.get('SDL_VIDEODRIVER'))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert out.returncode == 0, out.stderr
    expected = "dummy" if dummy else environ.get("SDL_VIDEODRIVER", "None")
    if sys.platform in ("win32", "darwin"):
        expected = environ.get("SDL_VIDEODRIVER", "None")
    assert out.stdout.strip() == expected


_HUMAN_SCRIPT = textwrap.dedent(
    """
    import os, shutil, subprocess, sys
    import numpy as np
    import gymnasium as gym
    import dlm_gym

    display, out = sys.argv[1], sys.argv[2]
    assert "SDL_VIDEODRIVER" not in os.environ, "dlm_gym chose a driver although a display exists"

    def screenshot(path):
        try:
            from PIL import ImageGrab

            image = ImageGrab.grab(xdisplay=display)
        except OSError:  # Pillow without XCB: ImageMagick's import
            if shutil.which("import") is None:
                print("SKIP no screenshot tool")
                sys.exit(0)
            subprocess.run(["import", "-display", display, "-window", "root", path], check=True, timeout=30)
            from PIL import Image

            image = Image.open(path)
        image = image.convert("RGB")
        image.save(path)
        return np.asarray(image)

    env = gym.make("VideoPlanarManip-v0", render_mode="human")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    import pygame

    assert pygame.display.get_driver() != "dummy", pygame.display.get_driver()
    shot = screenshot(out)
    view = env.unwrapped._view()  # what rgb_array would return now
    ys, xs = np.nonzero(shot.any(axis=2))  # the root window is black around the window
    crop = shot[ys.min() : ys.min() + view.shape[0], xs.min() : xs.min() + view.shape[1]]
    colours = len(np.unique(shot.reshape(-1, 3), axis=0))
    match = float((crop == view).all(axis=2).mean()) if crop.shape == view.shape else 0.0
    env.close()
    after = screenshot(out + ".closed.png")
    print(f"OK colours={colours} match={match:.4f} closed_colours={len(np.unique(after.reshape(-1, 3), axis=0))}")
    """
)


def _free_display() -> int:
    for n in range(99, 160):
        if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists():
            return n
    pytest.skip("no free X display number")


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs the Xvfb binary (apt-get install xvfb)")
def test_human_mode_shows_the_scene_in_a_real_window_under_xvfb(tmp_path):
    n = _free_display()
    xvfb = subprocess.Popen(
        ["Xvfb", f":{n}", "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not Path(f"/tmp/.X11-unix/X{n}").exists():
            if xvfb.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"Xvfb :{n} did not start")
            time.sleep(0.1)
        env = {k: v for k, v in os.environ.items() if k not in ("SDL_VIDEODRIVER", "WAYLAND_DISPLAY")}
        env["DISPLAY"] = f":{n}"
        shot = Path(os.environ.get("DLM_GYM_HUMAN_SCREENSHOT", tmp_path / "human_mode.png"))
        out = subprocess.run(
            [sys.executable, "-c", _HUMAN_SCRIPT, f":{n}", str(shot)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        if "SKIP" in out.stdout:
            pytest.skip(out.stdout.strip())
        fields = dict(item.split("=") for item in out.stdout.strip().splitlines()[-1].split()[1:])
        assert int(fields["colours"]) > 20  # the scene, not a black or uniform window
        assert float(fields["match"]) > 0.99  # the window shows the rgb_array view
        assert int(fields["closed_colours"]) == 1  # close() took the window away
        assert shot.is_file()
    finally:
        xvfb.terminate()
        try:
            xvfb.wait(timeout=10)
        except subprocess.TimeoutExpired:
            xvfb.kill()
            xvfb.wait(timeout=10)


# ------------------------------------------------------------------ the namespaced id
def test_namespaced_id_is_registered_beside_the_plain_one():
    plain, spaced = gym.spec("VideoPlanarManip-v0"), gym.spec("dlm_gym/VideoPlanarManip-v0")
    assert spaced.namespace == "dlm_gym" and spaced.entry_point == plain.entry_point
    assert spaced.max_episode_steps is None and plain.max_episode_steps is None  # the env terminates itself
    env = gym.make("dlm_gym/VideoPlanarManip-v0")
    assert "TimeLimit" not in _wrappers(env)
    a = play(env.unwrapped, dlm_gym.sample_task(3), _actions())
    b = play(gym.make("VideoPlanarManip-v0").unwrapped, dlm_gym.sample_task(3), _actions())
    assert [r for _, r, _ in a] == [r for _, r, _ in b]
    assert isinstance(gym.make("dlm_gym:dlm_gym/VideoPlanarManip-v0").unwrapped, VideoPlanarManipEnv)


# ------------------------------------------------------------------ state observations
@pytest.mark.parametrize("obs_type", ["pixels", "state"])
def test_check_env_passes_for_both_obs_types(obs_type):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make("VideoPlanarManip-v0", obs_type=obs_type).unwrapped, skip_render_check=True)
        check_env(gym.make("VideoPlanarManip-v0", obs_type=obs_type, render_mode="rgb_array").unwrapped)


def test_obs_type_is_checked():
    with pytest.raises(ValueError, match="obs_type"):
        VideoPlanarManipEnv(obs_type="rgb")


def test_state_observation_matches_the_task():
    task = dlm_gym.sample_task(11)
    env = VideoPlanarManipEnv(obs_type="state")
    assert set(env.observation_space.spaces) == {
        "pose",
        "targets",
        "step",
        "polygon",
        "polygon_mask",
        "finger_positions",
    }
    obs, info = env.reset(options={"task": task})
    n = len(task.polygon)
    assert obs["polygon"].shape == (MAX_POLYGON_VERTICES, 2) and obs["polygon_mask"].dtype == np.int8
    assert np.array_equal(obs["polygon"][:n], task.polygon) and not obs["polygon"][n:].any()
    assert obs["polygon_mask"].tolist() == [1] * n + [0] * (MAX_POLYGON_VERTICES - n)
    assert np.array_equal(obs["targets"], task.trajectory) and obs["step"] == 0
    assert np.array_equal(obs["pose"], info["pose"]) and np.array_equal(
        obs["finger_positions"], info["finger_positions"]
    )
    assert obs in env.observation_space
    for k, action in enumerate(_actions()):
        obs, _, terminated, _, info = env.step(action)
        assert obs["step"] == k + 1 and obs in env.observation_space
        assert np.array_equal(obs["pose"], info["pose"]) and np.array_equal(obs["pose"], env.simulated_trajectory[-1])
        assert np.array_equal(obs["finger_positions"], info["finger_positions"])
        assert np.array_equal(obs["targets"], task.trajectory)
    assert terminated
    # a smooth shape fills all 24 slots
    obs, _ = env.reset(options={"task": dlm_gym.sample_task(1, shape="smooth")})
    assert obs["polygon_mask"].all()


def test_state_mode_refuses_a_polygon_with_too_many_vertices():
    phi = np.linspace(0, 2 * np.pi, MAX_POLYGON_VERTICES + 6, endpoint=False)
    circle = 0.1 * np.stack([np.cos(phi), np.sin(phi)], axis=1)
    task = Task(circle, np.array([[0.0, 0.1, 0.0]] * T))
    with pytest.raises(ValueError, match="24"):
        VideoPlanarManipEnv(obs_type="state").reset(options={"task": task})
    VideoPlanarManipEnv().reset(options={"task": task})  # pixels take any polygon


def test_obs_type_changes_observations_only():
    task = dlm_gym.sample_task(21)
    pixels = play(VideoPlanarManipEnv(), task, _actions(1))
    state = play(VideoPlanarManipEnv(obs_type="state"), task, _actions(1))
    for (op, rp, ip), (os_, rs, is_) in zip(pixels, state):
        assert rp == rs and all(np.array_equal(ip[k], is_[k]) for k in ip)
        assert set(op) == {"video", "frame", "step"} and op["step"] == os_["step"]


class StateTouch:
    """A duck-typed state policy (no base class, config or name): touches the object's first vertex, pushes up."""

    obs_type = "state"

    def reset(self, obs, info):
        assert set(obs) >= {"pose", "targets", "polygon", "polygon_mask"} and "video" not in obs
        self.seen = []

    def act(self, obs):
        self.seen.append(int(obs["step"]))
        x, y, theta = obs["pose"]
        vertex = obs["polygon"][obs["polygon_mask"].astype(bool)][0]
        c, s = np.cos(theta), np.sin(theta)
        contact = np.array([x + c * vertex[0] - s * vertex[1], y + s * vertex[0] + c * vertex[1]])
        command = np.array([[*contact, 0.0, 5.0], [0.35, 0.7, 0.0, 0.0]])
        return command_to_action(command)


def test_a_state_policy_runs_in_the_shared_loop():
    tasks = [dlm_gym.sample_task(s) for s in (31, 32)]
    policy = StateTouch()
    results = policies.evaluate(policy, tasks, progress=False)
    assert len(results) == 2 and policy.seen == list(range(T))
    # the same actions replayed by hand in a state env give the same losses
    for task, result in zip(tasks, results):
        env = VideoPlanarManipEnv(obs_type="state")
        obs, info = env.reset(options={"task": task})
        policy.reset(obs, info)
        done = False
        while not done:
            obs, _, done, _, info = env.step(policy.act(obs))
        assert info["object_trajectory_loss"] == result.loss
    # a pixel env given to rollout is replaced by a state one
    assert policies.rollout(policy, tasks[0], env=VideoPlanarManipEnv()).loss == results[0].loss


def test_pixel_policies_still_get_pixels():
    assert policies.Policy.obs_type == "pixels" and policies.make_policy("noop").obs_type == "pixels"
    results = policies.evaluate(policies.make_policy("random", seed=2), [dlm_gym.sample_task(7)], progress=False)
    env = VideoPlanarManipEnv()
    obs, info = env.reset(options={"task": dlm_gym.sample_task(7)})
    policy = policies.make_policy("random", seed=2)
    policy.reset(obs, info)
    done = False
    while not done:
        obs, _, done, _, info = env.step(policy.act(obs))
    assert info["object_trajectory_loss"] == results[0].loss


# ------------------------------------------------------------------ a user's policy
POLICY_FILE = '''
import numpy as np

class Still:
    """No base class, no config, no name."""

    def reset(self, obs, info):
        assert "video" in obs

    def act(self, obs):
        return np.zeros((2, 4), np.float32)


class StateStill(Still):
    obs_type = "state"

    def reset(self, obs, info):
        assert "pose" in obs


class NoAct:
    def reset(self, obs, info):
        pass


def factory():
    return Still()
'''


@pytest.fixture
def policy_file(tmp_path) -> Path:
    path = tmp_path / "my_policies.py"
    path.write_text(POLICY_FILE)
    return path


def test_load_policy_spec_from_a_file_and_a_module(policy_file, monkeypatch):
    assert type(load_policy_spec(f"{policy_file}:Still")).__name__ == "Still"
    assert type(load_policy_spec(f"{policy_file}:factory")).__name__ == "Still"
    monkeypatch.syspath_prepend(str(policy_file.parent))
    assert load_policy_spec("my_policies:StateStill").obs_type == "state"
    bad = [
        f"{policy_file}:NoAct",
        f"{policy_file}:Missing",
        "no_such_module_xyz:Cls",
        f"{policy_file}",
        "x:1bad",
        str(policy_file.parent / "absent.py") + ":Still",
    ]
    for spec in bad:
        with pytest.raises(PolicySpecError) as err:
            load_policy_spec(spec)
        assert "\n" not in str(err.value)


def test_compare_accepts_a_duck_typed_policy_spec(policy_file):
    tasks = {"generated": [dlm_gym.sample_task(40 + i, name=f"generated/{i}") for i in range(2)]}
    specs = [f"{policy_file}:Still", f"{policy_file}:StateStill"]
    rows, _ = compare(specs, tasks, progress=False)
    by_name = {r["policy"]: r for r in rows}
    assert set(specs) <= set(by_name)
    # zero actions both ways: the same losses through pixel and state envs
    assert by_name[specs[0]]["losses"] == by_name[specs[1]]["losses"]


def _evaluate_cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "evaluate.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
    )


def test_evaluate_cli_takes_a_policy_spec_and_writes_labelled_gifs(policy_file, tmp_path):
    from PIL import Image, ImageSequence

    spec = f"{policy_file}:Still"
    out = _evaluate_cli(
        "--policy", "noop", spec, "--split", "--generated", "2", "--gif", str(tmp_path / "gifs"), "--no-progress"
    )
    assert out.returncode == 0, out.stderr
    assert spec in out.stdout  # the table names the policy by its spec
    gifs = sorted((tmp_path / "gifs").glob("*.gif"))
    # noop, the spec and the live miqp floor, on 2 tasks each
    assert len(gifs) == 6 and any("my_policies.py_Still" in g.name for g in gifs)
    with Image.open(gifs[0]) as gif:
        assert gif.n_frames == T + 1  # after reset and after each step
        frames, durations = [], []
        for frame in ImageSequence.Iterator(gif):
            durations.append(frame.info["duration"])
            frames.append(np.asarray(frame.convert("RGB")))
    assert durations == [600] * (T + 1)  # milliseconds per keyframe, not 0.5 ms
    assert all(not np.array_equal(a, b) for a, b in itertools.pairwise(frames))
    # the label: dark text pixels in the band under the caption, the same on every frame
    label = [f[30:50, :220] for f in frames]
    assert all((f.sum(axis=2) < 200).sum() > 50 for f in label)


def test_evaluate_cli_labels_differ_by_policy(policy_file, tmp_path):
    out = _evaluate_cli("--policy", "noop", "--split", "--generated", "1", "--gif", str(tmp_path), "--no-progress")
    assert out.returncode == 0, out.stderr
    from PIL import Image

    labels = {}
    for name in ("noop", "miqp"):
        with Image.open(tmp_path / f"{name}_generated_0.gif") as gif:
            labels[name] = np.asarray(gif.convert("RGB"))[30:50, :220]
    assert not np.array_equal(labels["noop"], labels["miqp"])


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_such_module_xyz:Policy", "cannot import"),
        ("{file}:NoAct", "lacks act"),
        ("{file}:Nope", "no attribute"),
    ],
)
def test_evaluate_cli_rejects_a_bad_spec_in_one_line(policy_file, spec, message):
    out = _evaluate_cli("--policy", spec.format(file=policy_file), "--split", "--generated", "1")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_evaluate_cli_imports_a_module_spec_from_the_working_dir(policy_file):
    out = _evaluate_cli(
        "--policy", "my_policies:StateStill", "--split", "--generated", "1", "--no-progress", cwd=policy_file.parent
    )
    assert out.returncode == 0, out.stderr
    assert "my_policies:StateStill" in out.stdout


# ------------------------------------------------------------------ progress bars
def test_progress_bars_stay_off_when_stderr_is_not_a_terminal(monkeypatch):
    fake = io.StringIO()  # not a TTY
    monkeypatch.setattr(sys, "stderr", fake)
    policies.evaluate(policies.make_policy("noop"), [dlm_gym.sample_task(1)], progress=True, desc="quiet")
    assert "quiet" not in fake.getvalue() and "\r" not in fake.getvalue()


def test_progress_bars_show_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    fake = Terminal()
    monkeypatch.setattr(sys, "stderr", fake)
    policies.evaluate(policies.make_policy("noop"), [dlm_gym.sample_task(1)], progress=True, desc="shown")
    assert "shown" in fake.getvalue()
    fake.truncate(0)
    policies.evaluate(policies.make_policy("noop"), [dlm_gym.sample_task(1)], progress=False, desc="hidden")
    assert "hidden" not in fake.getvalue()
