import numpy as np
import pytest

from dlm_gym.config import DEFAULT_CONFIG
from dlm_gym.geometry import lowest_height, signed_area
from dlm_gym.scene import Scene, convex_pieces
from dlm_gym.task import sample_task

G = DEFAULT_CONFIG.gravity


def test_an_object_left_alone_stays_at_rest_on_the_ground(square):
    scene = Scene()
    scene.reset(square, (0.05, 0.1, 0.0))
    for _ in range(10):
        scene.run_interval(np.zeros((2, 4)), np.zeros((2, 4)))
    assert np.allclose(scene.object_pose, [0.05, 0.1, 0.0], atol=1e-3)
    assert np.abs(scene.object_velocity).max() < 1e-2


def test_a_non_convex_object_rests_too():
    ell = np.array([[0, 0], [0.3, 0], [0.3, 0.1], [0.1, 0.1], [0.1, 0.3], [0, 0.3]]) - [0.1, 0.1]
    ell = ell - np.array([0.3 * 0.1 * 0.15 + 0.1 * 0.2 * 0.05, 0.3 * 0.1 * 0.05 + 0.1 * 0.2 * 0.2]) / 0.05 + 0.1
    pieces = convex_pieces(ell)
    assert len(pieces) >= 2
    assert sum(signed_area(np.array(p)) for p in pieces) == pytest.approx(signed_area(ell))
    from dlm_gym.geometry import centroid

    ell = ell - centroid(ell)
    y0 = -ell[:, 1].min()
    scene = Scene()
    scene.reset(ell, (0.0, y0, 0.0))
    for _ in range(10):
        scene.run_interval(np.zeros((2, 4)), np.zeros((2, 4)))
    assert np.allclose(scene.object_pose, [0.0, y0, 0.0], atol=2e-3)


def _lift(square, squeeze: float, rise_per_keyframe: float = 0.02) -> float:
    """Squeeze a 1 kg box from both sides, carry its weight and raise the fingers; return the final height."""
    scene = Scene()
    scene.reset(square, (0.0, 0.1, 0.0))
    support = DEFAULT_CONFIG.mass * G / 2  # each finger carries half the weight by friction
    cmd = np.array([[-0.1, 0.1, squeeze, support], [0.1, 0.1, -squeeze, support]])
    scene.place_fingers(cmd)
    for _ in range(4):
        nxt = cmd.copy()
        nxt[:, 1] += rise_per_keyframe
        scene.run_interval(cmd, nxt)
        cmd = nxt
    return float(scene.object_pose[1])


def test_enough_squeeze_lifts_a_box(square):
    # friction 0.6 x 15 N = 9 N per finger > 4.9 N of weight each
    assert _lift(square, 15.0) == pytest.approx(0.1 + 4 * 0.02, abs=0.01)


@pytest.mark.parametrize("squeeze", [0.0, 3.0])
def test_too_little_squeeze_lets_it_slip(square, squeeze):
    assert _lift(square, squeeze) < 0.105


def test_fingers_realise_the_commanded_force(square):
    """A finger pressing a resting box sideways with less than the ground's friction holds still at its command."""
    scene = Scene()
    scene.reset(square, (0.0, 0.1, 0.0))
    cmd = np.array([[-0.1, 0.1, 3.0, 0.0], [0.1, 0.1, -3.0, 0.0]])
    scene.place_fingers(cmd)
    scene.run_interval(cmd, cmd)
    assert np.allclose(scene.finger_forces, cmd[:, 2:], atol=0.3)
    assert np.allclose(scene.finger_positions[:, 0], [-0.1 - 0.002, 0.1 + 0.002], atol=2e-3)


def test_the_object_never_tunnels_through_the_ground():
    rng = np.random.default_rng(0)
    for seed in range(5):
        task = sample_task(seed)
        scene = Scene()
        pose = np.array([0.0, 0.45, rng.uniform(-np.pi, np.pi)])
        scene.reset(task.polygon, pose, velocity=(0.0, -2.0, rng.uniform(-5, 5)))
        # both fingers hammer downwards at the force limit on top of the object
        push = np.array([[-0.05, 0.5, 0.0, -40.0], [0.05, 0.5, 0.0, -40.0]])
        scene.place_fingers(push)
        lowest = []
        for _ in range(12):
            scene.run_interval(push, push)
            lowest.append(lowest_height(task.polygon, scene.object_pose[None])[0])
        assert min(lowest) > -0.003, f"seed {seed}: object sank {min(lowest):.4f} m into the ground"


def test_results_do_not_depend_on_earlier_episodes():
    """Replaying a task on a scene that has played other tasks gives bit-identical poses."""
    task, other = sample_task(1), sample_task(2)
    cmd = np.array([[-0.05, 0.3, 0.0, -5.0], [0.05, 0.3, 0.0, -5.0]])
    commands = np.stack([cmd] * 5)
    fresh = Scene().rollout(task.polygon, task.trajectory[0], commands)
    used = Scene()
    used.rollout(other.polygon, other.trajectory[0], commands)
    assert np.array_equal(used.rollout(task.polygon, task.trajectory[0], commands), fresh)
