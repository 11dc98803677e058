"""Gradients of L_sim through the simulator: finite differences over pymunk and the torch autodiff model."""

import numpy as np
import pytest
import torch

from dlm_gym.actions import action_to_command, command_bounds, command_to_action, noop_commands
from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.envs.video_planar_manip import VideoPlanarManipEnv
from dlm_gym.metrics import object_trajectory_loss
from dlm_gym.task import Task, sample_task
from policies.baselines import squeeze_commands
from policies.dlm.diffsim import discrepancy, sim_loss_autodiff, simulate_torch
from policies.dlm.simgrad import fd_gradient, naive_fd_gradient, sim_loss_fd, simulate

T = DEFAULT_CONFIG.horizon


def _box_task(lift_per_keyframe: float = 0.02, y0: float = 0.3) -> Task:
    square = np.array([[-0.1, -0.1], [0.1, -0.1], [0.1, 0.1], [-0.1, 0.1]])
    return Task(square, [[0.0, y0 + lift_per_keyframe * k, 0.0] for k in range(T)])


def _box_squeeze(fy=(4.905, 4.905), rise: float = 0.015, y0: float = 0.3, squeeze: float = 15.0) -> np.ndarray:
    """Two fingers squeeze a 20 cm box from both sides, carry (about) its weight and rise."""
    return np.array([[[-0.1, y0 + rise * k, squeeze, fy[0]], [0.1, y0 + rise * k, -squeeze, fy[1]]] for k in range(T)])


# ------------------------------------------------------------------------------------------- simulate
@pytest.mark.parametrize("seed", [0, 5])
def test_simulate_reproduces_the_env_exactly(seed):
    task = sample_task(seed)
    cmd = squeeze_commands(task)
    cmd[2, 0, 2] = 55.0  # beyond the force limit: the env clips the action
    cmd[3, 1, 0] = -0.5  # left of the view
    actions = command_to_action(cmd)  # what an agent hands the env (float32, clipped)
    env = VideoPlanarManipEnv()  # a fresh env: its scene has no history (see policies.dlm.simgrad)
    env.reset(options={"task": task})
    for a in actions:
        *_, info = env.step(a)
    sim = simulate([task], action_to_command(actions)[None])[0]
    assert np.array_equal(sim, env.simulated_trajectory)
    # clipping in simulate() is the env's: the unclipped commands give the same rollout
    assert np.array_equal(simulate(task, action_to_command(command_to_action(cmd, clip=False)))[0], sim)


def test_bad_commands_are_rejected():
    task = sample_task(0)
    with pytest.raises(ValueError, match="shape"):
        simulate([task], np.zeros((1, T, 3, 4)))
    bad = squeeze_commands(task)[None].copy()
    bad[0, 1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fd_gradient([task], bad, workers=0)


# ------------------------------------------------------------------------------------- finite differences
def test_fd_gradient_matches_a_naive_central_difference():
    """Snapshots + causality + processes give the plain re-simulate-everything central differences."""
    task = sample_task(1)
    cmd = squeeze_commands(task)
    # on the box edge at the last keyframe: the + step is clipped (one-sided difference). (An earlier keyframe
    # drags the finger off the object, and its command then lies centimetres inside it, where the projection
    # onto the nearest facet amplifies the snapshots' 1e-16 m round-off into millimetres.)
    edge = (4, 0, 1)
    cmd[edge] = command_bounds()[1][1]
    loss_n, grad_n = naive_fd_gradient([task], cmd[None])
    loss, grad = fd_gradient([task], cmd[None], workers=0, chain=False)
    assert loss[0] == loss_n[0] == float(object_trajectory_loss(simulate(task, cmd)[0], task.trajectory))
    # keyframes 0 and 1 restart from a fresh scene, like the naive rollouts: bit for bit
    assert np.array_equal(grad[:, :2], grad_n[:, :2])
    # later keyframes restart from a pickled scene, which continues the nominal rollout to ~1e-15 m
    assert np.linalg.norm(grad - grad_n) <= 1e-3 * np.linalg.norm(grad_n)
    assert np.abs(grad_n).max() > 0.1  # a real signal, not zeros

    # chain mode: the same contact-point differences, force gradients through Scene.anchor (exact only where
    # no contact point was projected out of the object: here they were, so only the positions must agree)
    loss_c, grad_c = fd_gradient([task], cmd[None], workers=0, chain=True)
    assert np.array_equal(loss_c, loss) and np.array_equal(grad_c[:, 0], grad[:, 0])
    same = np.ones(grad.shape[:-1], bool)
    same[(0,) + edge[:2]] = False  # at the clipped entry the two schemes use different one-sided stencils
    assert np.array_equal(grad_c[..., :2][same], grad[..., :2][same])
    assert np.linalg.norm(grad_c[..., 2:]) > 0.1 * np.linalg.norm(grad[..., 2:])

    # the process pool (keyframes split between workers for a single datapoint) changes nothing
    for chain, expected in ((False, grad), (True, grad_c)):
        loss_p, grad_p = fd_gradient([task], cmd[None], workers=2, chain=chain)
        assert np.array_equal(loss_p, loss) and np.array_equal(grad_p, expected)


def test_fd_gradient_is_deterministic_and_batched():
    tasks = [sample_task(s) for s in (2, 3, 4)]
    cmds = np.stack([squeeze_commands(t) for t in tasks])
    l1, g1 = fd_gradient(tasks, cmds, workers=2)
    l2, g2 = fd_gradient(tasks, cmds, workers=2)
    assert np.array_equal(l1, l2) and np.array_equal(g1, g2)
    l3, g3 = fd_gradient(tasks[1:2], cmds[1:2], workers=0)  # one datapoint alone, in this process
    assert np.array_equal(l3, l1[1:2]) and np.array_equal(g3, g1[1:2])


def test_do_nothing_has_zero_gradient():
    """Fingers parked in the top corners never touch the object: no command moves it, in either simulator."""
    tasks = [sample_task(s) for s in (0, 6)]  # one falls and tips over, one rests on the ground
    cmds = np.stack([noop_commands()] * 2)
    _, grad = fd_gradient(tasks, cmds, workers=0)
    assert not grad.any()
    c = torch.tensor(cmds, requires_grad=True)
    sim_loss_autodiff(tasks, c).sum().backward()
    assert not c.grad.any()


def test_simulator_loss_backward_carries_the_fd_gradient():
    tasks = [sample_task(s) for s in (7, 8)]
    cmds = np.stack([squeeze_commands(t) for t in tasks])
    losses, grads = fd_gradient(tasks, cmds)
    c = torch.tensor(cmds, requires_grad=True)
    out = sim_loss_fd(tasks, c)
    assert out.shape == (2,) and torch.allclose(out, torch.as_tensor(losses))
    (out * torch.tensor([1.0, 3.0], dtype=torch.float64)).sum().backward()
    expected = grads * np.array([1.0, 3.0])[:, None, None, None]
    assert np.array_equal(c.grad.numpy(), expected)


# ---------------------------------------------------------------------------------------- autodiff
def test_autodiff_gradient_matches_finite_differences_of_the_torch_model():
    """float64 backward vs central differences of simulate_torch itself, along random directions (T = 3)."""
    cfg = SceneConfig(horizon=3)
    task = sample_task(3)
    cases = [
        # a sampled polygon carried by a two-finger squeeze, and a box pushed sideways on the ground
        # (the contact points 1 mm off the surface: exactly on it, the projection's one-sided derivative along
        # the normal would make the central difference straddle a kink)
        (task.polygon, task.trajectory[0], _off_surface(squeeze_commands(task)[:3]), task.trajectory[:3]),
        (
            _box_task().polygon,
            np.array([0.0, 0.1, 0.0]),
            _off_surface(np.array([[[-0.1, 0.1 + 0.001 * k, 8.0, 0.5], [0.3, 0.75, 0.0, 0.5]] for k in range(3)])),
            np.array([[0.01 * k, 0.1, 0.0] for k in range(3)]),
        ),
    ]
    rng = np.random.default_rng(0)
    scale = torch.tensor([1e-3, 1e-3, 0.4, 0.4], dtype=torch.float64)  # metres vs newtons
    for polygon, start, cmd, target in cases:
        tgt = torch.tensor(target)[None]

        def loss(c):
            return object_trajectory_loss(simulate_torch([polygon], start[None], c, cfg), tgt).sum()  # noqa: B023

        c = torch.tensor(cmd[None], requires_grad=True)
        loss(c).backward()
        eps = 1e-6
        with torch.no_grad():
            for _ in range(6):
                v = torch.tensor(rng.normal(size=c.shape)) * scale
                numeric = (loss(c + eps * v) - loss(c - eps * v)) / (2 * eps)
                analytic = (c.grad * v).sum()
                assert abs(analytic - numeric) <= 1e-5 * (c.grad.abs() * v.abs()).sum() + 1e-9, (analytic, numeric)


def _off_surface(cmd: np.ndarray, gap: float = 1e-3) -> np.ndarray:
    """Commands whose contact points sit ``gap`` behind the surface, against their force."""
    out = cmd.copy()
    f = out[..., 2:]
    out[..., :2] -= gap * f / np.linalg.norm(f, axis=-1, keepdims=True)
    return out


def test_torch_servo_matches_the_scene():
    """The torch anchors and finger placements are Scene.anchor's and Scene.place_fingers'."""
    from dlm_gym.scene import Scene
    from policies.dlm.diffsim import command_anchors

    cmd = np.array([[0.1, 0.2, 12.0, -5.0], [-0.1, 0.3, 0.3, 0.2]])  # the second is below the 1 N floor
    scene = Scene()
    scene.reset(_box_task().polygon, (0.0, 0.3, 0.0))
    scene.place_fingers(cmd)
    anchors, centres = command_anchors(torch.tensor(cmd))
    assert np.allclose(anchors.numpy(), [scene.anchor(c) for c in cmd], atol=1e-15)
    assert np.allclose(centres.numpy(), scene.finger_positions, atol=1e-15)


def test_torch_projection_matches_the_scene():
    """Contact points inside the object (and finger centres below the ground) move exactly as Scene moves them."""
    from dlm_gym.scene import Scene
    from policies.dlm.diffsim import DEFAULT_MODEL, _Scene, _servo_anchors

    task = sample_task(4, n_facets=6)
    pose = np.array([0.05, 0.3, 0.7])
    rng = np.random.default_rng(0)
    cmds = np.concatenate([rng.uniform([-0.3, -0.05, -20, -20], [0.3, 0.6, 20, 20], (200, 4))])
    scene = Scene()
    scene.reset(task.polygon, pose)
    expected = np.array([scene._servo_target(*c, *pose[:2])[:2] for c in cmds])
    moved = np.array([scene._servo_target(*c, *pose[:2])[2] for c in cmds])
    assert (moved > 0.01).sum() > 20  # many of them were inside
    sc = _Scene([task.polygon], DEFAULT_CONFIG, DEFAULT_MODEL, torch.float64, "cpu")
    c = torch.tensor(cmds.T[None])  # (1, 4, 200): the batch of one object, 200 "fingers"
    th = torch.tensor([[pose[2]]], dtype=torch.float64)
    ax, ay = _servo_anchors(
        sc,
        torch.tensor([[pose[0]]]),
        torch.tensor([[pose[1]]]),
        torch.cos(th),
        torch.sin(th),
        c[:, 0],
        c[:, 1],
        c[:, 2],
        c[:, 3],
    )
    assert np.allclose(np.stack([ax[0].numpy(), ay[0].numpy()], 1), expected, atol=1e-12)


def test_torch_batch_mixes_facet_counts():
    """Polygons of different facet counts share a batch (padded); each row is its own simulation."""
    tasks = [sample_task(0, n_facets=4), _box_task(), sample_task(2, n_facets=6)]
    cmds = torch.tensor(np.stack([squeeze_commands(t) for t in tasks]))
    polys, starts = [t.polygon for t in tasks], np.stack([t.trajectory[0] for t in tasks])
    batch = simulate_torch(polys, starts, cmds)
    alone = torch.cat([simulate_torch([p], s[None], c[None]) for p, s, c in zip(polys, starts, cmds)])
    assert batch.shape == (3, T, 3)
    assert torch.allclose(batch, alone, atol=1e-8)


def test_autodiff_is_deterministic():
    tasks = [sample_task(s) for s in (0, 1)]
    cmds = np.stack([squeeze_commands(t) for t in tasks])
    grads = []
    for _ in range(2):
        c = torch.tensor(cmds, dtype=torch.float32, requires_grad=True)
        sim_loss_autodiff(tasks, c).sum().backward()
        grads.append(c.grad.clone())
    assert torch.equal(grads[0], grads[1])


def _cos(a, b):
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize(
    "fy, rise",
    [((4.905, 4.905), 0.015), ((7.0, 5.0), 0.01), ((4.905, 4.905), 0.0)],
)
def test_fd_and_autodiff_gradients_agree_on_a_box_squeezed_in_the_air(fy, rise):
    """Both gradients of L_sim w.r.t. the vertical forces f_y and contact heights y point the same way.

    The case is chosen where both simulators model the same physics: a box
    held in the air by two fingers whose friction sticks (15 N squeeze, 9 N of
    friction each against at most 7 N of load), so the net vertical force
    moves the object and the contact heights carry it along. There the
    gradients must agree (cosine > 0.95 over the T x N entries). The normal
    coordinates (x, f_x) are not compared: against a held box their effect is
    set by how contact is resolved (pymunk's hard contact vs the model's
    0.1 mm smoothing), and is near zero in both.
    """
    task = _box_task()
    cmd = _box_squeeze(fy, rise)
    _, g_fd = fd_gradient([task], cmd[None])
    c = torch.tensor(cmd[None], requires_grad=True)
    sim_loss_autodiff([task], c).sum().backward()
    g_ad = c.grad.numpy()
    assert _cos(g_fd[..., 3], g_ad[..., 3]) > 0.95  # f_y
    assert _cos(g_fd[..., 1], g_ad[..., 1]) > 0.95  # y


# ------------------------------------------------------------------------------------ model fidelity
def test_torch_model_tracks_pymunk():
    """Documented accuracy of the smoothed model against the real scene (max position error per rollout)."""
    held = _box_squeeze()
    tasks = [_box_task(), _box_task(0.0)] + [sample_task(s) for s in (0, 2, 3)]
    cmds = np.stack([held, _box_squeeze(rise=0.0)] + [noop_commands()] * 3)
    d = discrepancy(tasks, cmds)
    assert d["position_mm"][:2].max() < 1.0, d["position_mm"]  # a lifted box, a held box
    assert d["position_mm"][2:].max() < 5.0, d["position_mm"]  # objects left alone (falling, tipping)
    assert d["angle_deg"].max() < 1.0, d["angle_deg"]
    sampled = [sample_task(s) for s in (0, 2, 3, 4)]
    d = discrepancy(sampled, np.stack([squeeze_commands(t) for t in sampled]))
    assert d["position_mm"].max() < 6.0, d["position_mm"]  # sampled polygons carried by a squeeze


def test_benchmark_entry_points(load_example):
    benchmark = load_example("benchmark")
    fd = benchmark.bench_fd(2, repeats=1)
    ad = benchmark.bench_autodiff(2, repeats=1)
    assert set(fd) == {"sim_grad_fd_backward_s"} and fd["sim_grad_fd_backward_s"] > 0
    assert set(ad) == {"sim_grad_autodiff_backward_s"} and ad["sim_grad_autodiff_backward_s"] > 0
