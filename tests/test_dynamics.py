import numpy as np

from dlm_gym.config import DEFAULT_CONFIG
from dlm_gym.dynamics import _operators, keyframe_accelerations, keyframe_velocities, required_wrench
from dlm_gym.geometry import polar_moment


def test_accelerations_reproduce_the_keyframes():
    rng = np.random.default_rng(0)
    traj = rng.normal(size=(5, 3))
    a = keyframe_accelerations(traj)
    B, V = _operators(5, DEFAULT_CONFIG.dt)
    assert np.allclose(B @ a, traj[1:] - traj[0])
    v = keyframe_velocities(traj)
    assert np.allclose(v[0], 0.0)  # the object starts at rest


def test_a_still_object_needs_only_its_weight(square):
    traj = np.tile([0.0, 0.1, 0.3], (5, 1))
    assert np.allclose(keyframe_accelerations(traj), 0.0, atol=1e-9)
    w = required_wrench(square, traj)
    assert np.allclose(w, [0.0, DEFAULT_CONFIG.mass * DEFAULT_CONFIG.gravity, 0.0], atol=1e-9)


def test_constant_force_free_motion_matches_the_model(square):
    """Integrating a constant acceleration from rest gives keyframes whose model acceleration is that constant."""
    dt, acc = DEFAULT_CONFIG.dt, np.array([1.0, -2.0, 3.0])
    t = np.arange(5)[:, None] * dt
    traj = 0.5 * acc * t**2
    assert np.allclose(keyframe_accelerations(traj), acc, atol=1e-9)
    w = required_wrench(square, traj)
    I = polar_moment(square, 1.0)  # noqa: E741  (the paper's symbol)
    assert np.allclose(w[:, 2], I * 3.0) and np.allclose(w[:, 1], -2.0 + 9.81)


def test_batched_accelerations():
    traj = np.random.default_rng(1).normal(size=(4, 5, 3))
    batched = keyframe_accelerations(traj)
    assert batched.shape == (4, 5, 3)
    assert np.allclose(batched[2], keyframe_accelerations(traj[2]))
