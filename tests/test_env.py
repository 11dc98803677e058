import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import dlm_gym
from dlm_gym import Task, action_to_command, command_to_action
from dlm_gym.config import DEFAULT_CONFIG
from dlm_gym.envs.video_planar_manip import VideoPlanarManipEnv
from dlm_gym.wrappers import StackVideoChannels

T, N = DEFAULT_CONFIG.horizon, DEFAULT_CONFIG.num_fingers


def play(env, actions, **reset_kwargs):
    obs, info = env.reset(**reset_kwargs)
    frames, rewards = [obs["frame"]], []
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        frames.append(obs["frame"])
        rewards.append(r)
    return obs, info, np.stack(frames), np.array(rewards)


def test_gymnasium_check_env_passes():
    check_env(gym.make("VideoPlanarManip-v0").unwrapped, skip_render_check=True)
    check_env(gym.make("VideoPlanarManip-v0", render_mode="rgb_array").unwrapped)


def test_stable_baselines3_check_env_passes_through_the_wrapper():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = StackVideoChannels(gym.make("VideoPlanarManip-v0"))
    sb3_check_env(env, warn=True)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == (50, 50, 3 * (T + 1)) and obs["image"].dtype == np.uint8
    assert np.array_equal(obs["image"][..., :3], gym.make("VideoPlanarManip-v0").reset(seed=0)[0]["video"][0])


def test_string_entry_point_and_spaces():
    env = gym.make("dlm_gym:VideoPlanarManip-v0")
    obs, info = env.reset(seed=0)
    assert obs["video"].shape == (T, 50, 50, 3) and obs["video"].dtype == np.uint8
    assert obs["frame"].shape == (50, 50, 3) and obs["step"] == 0
    assert isinstance(info["task"], Task)
    assert env.action_space.shape == (N, 4)


def test_same_seed_same_videos_and_rollouts():
    actions = [np.random.default_rng(0).uniform(-1, 1, (N, 4)).astype(np.float32) for _ in range(T)]
    a = play(VideoPlanarManipEnv(), actions, seed=123)
    b = play(VideoPlanarManipEnv(), actions, seed=123)
    c = play(VideoPlanarManipEnv(), actions, seed=124)
    assert np.array_equal(a[0]["video"], b[0]["video"])
    assert np.array_equal(a[2], b[2]) and np.array_equal(a[3], b[3])
    assert np.array_equal(a[1]["simulated_trajectory"], b[1]["simulated_trajectory"])
    assert not np.array_equal(a[0]["video"], c[0]["video"])


def test_rewards_sum_to_minus_the_object_trajectory_loss():
    env = VideoPlanarManipEnv()
    actions = [np.zeros((N, 4), np.float32)] * T
    obs, info, _, rewards = play(env, actions, seed=3)
    assert rewards[0] == 0.0  # keyframe 0 is the start pose
    assert rewards.sum() == pytest.approx(-info["object_trajectory_loss"])
    sim = info["simulated_trajectory"]
    assert sim.shape == (T, 3)
    assert info["object_trajectory_loss"] == pytest.approx(
        float(dlm_gym.object_trajectory_loss(sim, info["task"].trajectory))
    )


def test_object_trajectory_loss_units():
    target = np.zeros((5, 3))
    sim = target.copy()
    sim[:, 0] += 0.01  # 1 cm off in x everywhere: (1 cm)^2 over one of three coordinates
    assert dlm_gym.object_trajectory_loss(sim, target) == pytest.approx(1.0 / 3.0)
    sim = target.copy()
    sim[:, 2] = np.pi / 2  # rho sin(theta) = 3 cm
    assert dlm_gym.object_trajectory_loss(sim, target) == pytest.approx(9.0 / 3.0)
    torch = pytest.importorskip("torch")
    assert float(dlm_gym.object_trajectory_loss(torch.tensor(sim), torch.tensor(target))) == pytest.approx(3.0)


def test_env_pickles_mid_episode():
    env = VideoPlanarManipEnv()
    rng = np.random.default_rng(1)
    actions = [rng.uniform(-1, 1, (N, 4)).astype(np.float32) for _ in range(T)]
    env.reset(seed=5)
    env.step(actions[0])
    env.step(actions[1])
    clone = pickle.loads(pickle.dumps(env))
    for a in actions[2:]:
        o1, r1, *_ , i1 = env.step(a)
        o2, r2, *_ , i2 = clone.step(a)
        assert r1 == r2 and np.array_equal(o1["frame"], o2["frame"])
    assert i1["object_trajectory_loss"] == i2["object_trajectory_loss"]


@pytest.mark.parametrize(
    "action, message",
    [
        (np.zeros((N * 4,)), r"shape \(2, 4\)"),
        (np.zeros((N, 3)), r"shape \(2, 4\)"),
        (np.full((N, 4), np.nan), "NaN or inf"),
        (np.array([[0, 0, np.inf, 0], [0, 0, 0, 0]]), "NaN or inf"),
        ("left", "numeric"),
    ],
)
def test_bad_actions_raise_value_error_and_leave_the_episode_intact(action, message):
    env = VideoPlanarManipEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)
    # nothing was consumed: the episode still plays all T steps
    for _ in range(T):
        *_, info = env.step(np.zeros((N, 4), np.float32))
    assert "object_trajectory_loss" in info


def test_out_of_range_actions_are_clipped():
    a, b = VideoPlanarManipEnv(), VideoPlanarManipEnv()
    big = np.full((N, 4), 3.0, np.float32)
    r1 = play(a, [big] * T, seed=2)[3]
    r2 = play(b, [np.ones((N, 4), np.float32)] * T, seed=2)[3]
    assert np.array_equal(r1, r2)


def test_episode_lifecycle_errors():
    env = VideoPlanarManipEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros((N, 4)))
    env.reset(seed=0)
    for _ in range(T):
        env.step(np.zeros((N, 4)))
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step(np.zeros((N, 4)))
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"tsak": None})
    with pytest.raises(TypeError, match="dlm_gym.Task"):
        env.reset(options={"task": "a square"})
    with pytest.raises(ValueError, match="needs options\\['split'\\]"):
        env.reset(options={"index": 3})
    with pytest.raises(ValueError, match="render_mode"):
        VideoPlanarManipEnv(render_mode="ascii")


def test_reset_with_a_user_task(square):
    traj = np.array([[0.0, 0.1, 0.0]] * 3 + [[0.0, 0.12, 0.0], [0.0, 0.15, 0.0]])
    task = Task(square, traj)
    env = VideoPlanarManipEnv()
    obs, info = env.reset(options={"task": task})
    assert info["task"] is task and np.allclose(info["pose"], traj[0])
    # the video shows the object rising: its lowest blue row moves up
    blue = (obs["video"][..., 2] > 150) & (obs["video"][..., 0] < 120)
    lowest_row = [np.nonzero(b.any(axis=1))[0].max() for b in blue]
    assert lowest_row[0] == lowest_row[1] and lowest_row[4] < lowest_row[0]
    with pytest.raises(ValueError, match="T=3"):
        env.reset(options={"task": Task(square, traj[:3])})


def test_video_has_no_fingers_and_frame_shows_them():
    env = VideoPlanarManipEnv()
    obs, info = env.reset(seed=0)
    red = lambda img: ((img[..., 0] > 150) & (img[..., 1] < 120) & (img[..., 2] < 120)).sum()  # noqa: E731
    assert red(obs["video"]) == 0 and red(obs["frame"]) == 0
    action = command_to_action(np.array([[-0.3, 0.6, 0.0, 0.0], [0.3, 0.6, 0.0, 0.0]]))
    obs, *_ = env.step(action)
    assert red(obs["frame"]) > 0 and red(obs["video"]) == 0


def test_rgb_array_view_has_ghosts_and_arrows():
    env = gym.make("VideoPlanarManip-v0", render_mode="rgb_array")
    env.reset(seed=0)
    before = env.render()
    assert before.shape == (DEFAULT_CONFIG.render_size,) * 2 + (3,) and before.dtype == np.uint8
    task = env.unwrapped.task
    # push on the object's top with 20 N straight down: an orange arrow appears
    top = task.trajectory[0, :2] + [0.0, 0.02]
    env.step(command_to_action(np.array([[*top, 0.0, -20.0], [0.35, 0.7, 0.0, 0.0]])))
    after = env.render()
    orange = lambda img: ((img[..., 0] > 200) & (abs(img[..., 1].astype(int) - 120) < 30) & (img[..., 2] < 60)).sum()  # noqa: E731
    green = lambda img: ((img[..., 1] > 140) & (img[..., 0] < 140) & (img[..., 2] < 140)).sum()  # noqa: E731
    assert orange(before) == 0 and orange(after) > 20
    assert green(before) > 100


def test_human_render_mode_opens_a_window():
    env = gym.make("VideoPlanarManip-v0", render_mode="human")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    env.close()


def test_action_mapping_round_trip():
    rng = np.random.default_rng(0)
    action = rng.uniform(-1, 1, (N, 4)).astype(np.float32)
    cmd = action_to_command(action)
    assert np.allclose(command_to_action(cmd), action, atol=1e-6)
    corners = action_to_command(np.array([[-1, -1, -1, -1], [1, 1, 1, 1]]))
    assert np.allclose(corners[0], [DEFAULT_CONFIG.view_x[0], DEFAULT_CONFIG.view_y[0], -40, -40])
    assert np.allclose(corners[1], [DEFAULT_CONFIG.view_x[1], DEFAULT_CONFIG.view_y[1], 40, 40])
    assert command_to_action(np.array([[9.0, 0, 0, 0], [0, 0, 0, 0]]))[0, 0] == 1.0


def test_async_vector_env():
    envs = gym.make_vec("VideoPlanarManip-v0", num_envs=2, vectorization_mode="async")
    try:
        obs, info = envs.reset(seed=[0, 1])
        assert obs["video"].shape == (2, T, 50, 50, 3)
        obs, rewards, term, trunc, info = envs.step(np.zeros((2, N, 4), np.float32))
        assert rewards.shape == (2,) and not term.any()
    finally:
        envs.close()
