"""Tests of the differentiable inverse-dynamics QP (policies/dlm/qp/, paper eq. 6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from policies.dlm.qp import (
    DEFAULT_WEIGHTS,
    InverseDynamicsQP,
    QPSolution,
    project_onto_facets,
    random_qp_problem,
    reference_points_from_jacobian,
    solve_inverse_dynamics,
    wrench_residual,
)

# cvxpylayers 1.2 converts tensors with np.array(tensor), which numpy 2 flags (harmless)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

NAMES = ("wrench", "jacobian", "finger_facets", "finger_cones", "env_cones", "reference_points")
MASS, GRAVITY, MU = 1.0, 9.81, 0.6


@pytest.fixture(scope="module")
def torch_qp():
    return InverseDynamicsQP("torch")


@pytest.fixture(scope="module")
def cvx_qp():
    pytest.importorskip("cvxpylayers")
    return InverseDynamicsQP("cvxpylayers")  # SCS, tight tolerances, dense derivatives


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _box_problem(wrench, finger_facets, normals, *, mu=MU, env_cones=None):
    """One keyframe (B = T = 1) of a 20 cm box at the origin with two fingers at facet midpoints.

    ``normals`` are the facets' outward normals; cones are ``normalize(-n -+ mu t)``.
    """
    facets = np.asarray(finger_facets, dtype=np.float64)  # (2, 2, 2)
    t = _unit(facets[:, 1] - facets[:, 0])
    n = np.asarray(normals, dtype=np.float64)
    cones = np.stack([_unit(-n - mu * t), _unit(-n + mu * t)], axis=1)
    points = facets.mean(axis=1)
    env = np.zeros((2, 2, 2)) if env_cones is None else np.asarray(env_cones, dtype=np.float64)
    env_points = np.zeros((2, 2))
    lever = np.concatenate([points, env_points])
    J = np.zeros((3, 4, 2))
    J[0, :, 0] = 1
    J[1, :, 1] = 1
    J[2, :, 0] = -lever[:, 1]
    J[2, :, 1] = lever[:, 0]
    as_t = lambda x: torch.tensor(np.asarray(x, dtype=np.float64))[None, None]  # noqa: E731
    return dict(
        wrench=as_t(wrench),
        jacobian=as_t(J.reshape(3, 8)),
        finger_facets=as_t(facets),
        finger_cones=as_t(cones),
        env_cones=as_t(env),
        reference_points=as_t(points),
    )


SIDE_FACETS = [[[0.1, -0.1], [0.1, 0.1]], [[-0.1, 0.1], [-0.1, -0.1]]]  # right, left (CCW box)
SIDE_NORMALS = [[1.0, 0.0], [-1.0, 0.0]]
BOTTOM_FACETS = [[[-0.1, -0.1], [0.0, -0.1]], [[0.0, -0.1], [0.1, -0.1]]]
BOTTOM_NORMALS = [[0.0, -1.0], [0.0, -1.0]]


def _in_cone(force, rays, tol=1e-7):
    """Whether each force (..., 2) is a nonnegative combination of its two rays (..., 2, 2)."""
    f = force.reshape(-1, 2).double()
    g = rays.reshape(-1, 2, 2).double()
    ok = []
    for fi, gi in zip(f, g):
        if gi.abs().sum() == 0:
            ok.append(bool(fi.norm() <= tol))
            continue
        a = torch.linalg.lstsq(gi.T, fi).solution
        ok.append(bool((a >= -tol * (1 + fi.norm())).all() and (gi.T @ a - fi).norm() <= tol * (1 + fi.norm())))
    return all(ok)


def _random_loss(sol: QPSolution, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return sum((x * torch.randn(x.shape, generator=gen, dtype=x.dtype)).sum() for x in sol)


def _grads(layer, problem, seed=1):
    inputs = {k: v.detach().clone().requires_grad_(True) for k, v in problem.items()}
    sol = layer(**inputs)
    _random_loss(sol, seed).backward()
    return sol, {k: v.grad for k, v in inputs.items()}


def _rel(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / (1.0 + b.abs().max()))


# ----------------------------------------------------------------------------- hand cases


def test_hanging_box_forces_carry_the_weight(torch_qp, cvx_qp):
    w = [0.0, MASS * GRAVITY, 0.0]
    prob = _box_problem(w, SIDE_FACETS, SIDE_NORMALS)
    for layer in (torch_qp, cvx_qp):
        sol = layer(**prob)
        lam = sol.finger_forces[0, 0]
        # the fingers supply the wrench: zero slack (up to q_lambda / q_eps)
        assert torch.allclose(lam.sum(0), torch.tensor(w[:2], dtype=lam.dtype), atol=5e-3)
        assert sol.slack.abs().max() < 5e-3
        res = wrench_residual(prob["wrench"], prob["jacobian"], sol.finger_forces, sol.env_forces)
        assert torch.allclose(sol.slack, res, atol=1e-6)
        # minimum-norm grip: each finger at its cone edge, f_y = m g / 2, f_x = f_y / mu inward
        fy, fx = MASS * GRAVITY / 2, MASS * GRAVITY / 2 / MU
        expected = torch.tensor([[-fx, fy], [fx, fy]], dtype=lam.dtype)
        assert torch.allclose(lam, expected, rtol=2e-3, atol=2e-3)
        assert _in_cone(sol.finger_forces, prob["finger_cones"])
        assert sol.env_forces.abs().max() < 1e-6  # empty ground slots carry nothing
        assert torch.allclose(sol.finger_positions, prob["reference_points"], atol=1e-7)


def test_weights_do_not_collapse_the_forces(torch_qp):
    prob = _box_problem([0.0, MASS * GRAVITY, 0.0], SIDE_FACETS, SIDE_NORMALS)
    ours = torch_qp(**prob)
    assert ours.finger_forces.norm() > 10.0  # |lambda| ~ 2 * 9.5 N
    assert ours.slack.norm() < 1e-3 * ours.finger_forces.norm()
    # The released code's weights (slack 0.01 vs force 1): the optimum is (almost) no force at all.
    released = InverseDynamicsQP("torch", q_lambda=1.0, q_eps=0.01)(**prob)
    assert released.finger_forces.norm() < 0.02 * ours.finger_forces.norm()
    assert released.slack[0, 0, 1] > 0.95 * MASS * GRAVITY


def test_infeasible_wrench_gives_slack_not_an_error(torch_qp, cvx_qp):
    # Fingers under the box push up; the wrench asks for a downward pull they cannot make.
    prob = _box_problem([0.0, -5.0, 0.0], BOTTOM_FACETS, BOTTOM_NORMALS)
    for layer in (torch_qp, cvx_qp):
        inputs = {k: v.clone().requires_grad_(True) for k, v in prob.items()}
        sol = layer(**inputs)
        assert all(bool(torch.isfinite(x).all()) for x in sol)
        assert sol.finger_forces.abs().max() < 1e-5
        assert torch.allclose(sol.slack[0, 0], torch.tensor([0.0, -5.0, 0.0], dtype=torch.float64), atol=1e-5)
        _random_loss(sol).backward()
        assert all(bool(torch.isfinite(inputs[k].grad).all()) for k in NAMES)
    # Partly feasible: more push than friction allows -> forces at the cone edges plus slack.
    prob = _box_problem([20.0, MASS * GRAVITY, 0.0], BOTTOM_FACETS, BOTTOM_NORMALS)
    a, b = torch_qp(**prob), cvx_qp(**prob)
    assert a.slack.norm() > 1.0 and a.finger_forces.norm() > 1.0
    assert _in_cone(a.finger_forces, prob["finger_cones"])
    for x, y in zip(a, b):
        assert _rel(x, y) < 1e-4


def test_zero_slack_flag_and_residual(torch_qp):
    prob = random_qp_problem(2, 3, seed=4)
    sol = torch_qp(**prob)
    ev = torch_qp(**prob, zero_slack=True)
    assert torch.equal(ev.finger_forces, sol.finger_forces) and torch.equal(ev.finger_positions, sol.finger_positions)
    assert torch.count_nonzero(ev.slack) == 0
    res = wrench_residual(prob["wrench"], prob["jacobian"], ev.finger_forces, ev.env_forces)
    assert torch.allclose(res, sol.slack, atol=1e-9)


# ----------------------------------------------------------------------------- torch vs cvxpylayers


def test_torch_matches_cvxpylayers_forward(torch_qp, cvx_qp):
    # includes empty ground slots (zero rays) and sliding ones (two equal rays)
    prob = random_qp_problem(3, 5, seed=11, empty_env_prob=0.3, sliding_env_prob=0.3)
    a, b = torch_qp(**prob), cvx_qp(**prob)
    for name, x, y in zip(QPSolution._fields, a, b):
        assert _rel(x, y) < 1e-4, name
    assert _in_cone(a.finger_forces, prob["finger_cones"]) and _in_cone(a.env_forces, prob["env_cones"])
    assert (a.slack.norm(dim=-1) > 1e-2).any() and (a.slack.norm(dim=-1) < 1e-2).any()  # both regimes


def test_torch_matches_cvxpylayers_gradients(torch_qp, cvx_qp):
    # no exactly-zero rays: there the forces are a (ridge-smoothed) kink, see test_empty_slot_gradients
    prob = random_qp_problem(2, 5, seed=12, empty_env_prob=0.0, sliding_env_prob=0.3)
    sa, ga = _grads(torch_qp, prob)
    sb, gb = _grads(cvx_qp, prob)
    for name in NAMES:
        assert _rel(ga[name], gb[name]) < 2e-3, name
        assert ga[name].abs().max() > 0, name


def test_torch_matches_cvxpylayers_clarabel():
    pytest.importorskip("cvxpylayers")
    clarabel = InverseDynamicsQP("cvxpylayers", solver="Clarabel")
    prob = random_qp_problem(2, 5, seed=12, empty_env_prob=0.0, sliding_env_prob=0.3)
    sa, ga = _grads(InverseDynamicsQP("torch"), prob)
    sb, gb = _grads(clarabel, prob)
    for name, x, y in zip(QPSolution._fields, sa, sb):
        assert _rel(x, y) < 1e-4, name
    for name in NAMES:  # an interior-point solution blurs weakly active bounds: looser than SCS
        assert _rel(ga[name], gb[name]) < 5e-3, name


def test_torch_forward_is_exact_nnls():
    """Independent check of the force problem: scipy's NNLS on the least-squares form."""
    from scipy.optimize import nnls

    w_ = DEFAULT_WEIGHTS
    prob = random_qp_problem(8, 5, seed=13)
    sol = InverseDynamicsQP("torch")(**prob)
    K = 40
    flat = lambda x: x.reshape(K, *x.shape[2:]).numpy()  # noqa: E731
    J, w = flat(prob["jacobian"]), flat(prob["wrench"])
    rays = np.concatenate([flat(prob["finger_cones"]), flat(prob["env_cones"])], axis=1)
    lam = np.concatenate([flat(sol.finger_forces), flat(sol.env_forces)], axis=1).reshape(K, 8)
    wc = np.array([w_["q_lambda"]] * 4 + [w_["q_e"]] * 4)
    for k in range(K):
        G = np.zeros((8, 8))
        for c in range(4):
            G[2 * c : 2 * c + 2, 2 * c : 2 * c + 2] = rays[k, c].T
        A = np.vstack([np.sqrt(w_["q_eps"]) * J[k] @ G, np.sqrt(wc)[:, None] * G, np.sqrt(w_["q_ray"]) * np.eye(8)])
        b = np.concatenate([np.sqrt(w_["q_eps"]) * w[k], np.zeros(16)])
        x, _ = nnls(A, b)
        assert np.allclose(G @ x, lam[k], atol=1e-6), k


def test_enumeration_and_pivoting_agree(monkeypatch):
    """The straggler enumeration and pure pivoting find the same optimum."""
    import functools

    from policies.dlm.qp import kernel

    prob = random_qp_problem(60, 5, seed=17)
    base = InverseDynamicsQP("torch")(**prob)
    calls = []
    orig_enum = kernel.enumerate_free_set

    def spy(*args, **kwargs):
        calls.append(args[0].shape[0])
        return orig_enum(*args, **kwargs)

    monkeypatch.setattr(kernel, "enumerate_free_set", spy)
    orig = kernel.nnls_free_set
    for pivots in (1, 10**6):  # enumerate everything left after one check / never enumerate
        monkeypatch.setattr(kernel, "nnls_free_set", functools.partial(orig, pivots_before_enumeration=pivots))
        sol = InverseDynamicsQP("torch", max_iter=1000)(**prob)
        for x, y in zip(sol, base):
            assert torch.allclose(x, y, atol=1e-9)
    assert calls and calls[0] > 10  # the enumeration did run, on many keyframes


# ----------------------------------------------------------------------------- finite differences


def _gradcheck(layer, prob, names=NAMES):
    fixed = {k: v for k, v in prob.items() if k not in names}

    def f(*args):
        return tuple(layer(**fixed, **dict(zip(names, args))))

    inputs = tuple(prob[k].clone().requires_grad_(True) for k in names)
    return torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradients_match_finite_differences(torch_qp):
    # sticking and sliding ground contacts, feasible and infeasible keyframes, clamped and free points
    prob = random_qp_problem(2, 2, seed=5, empty_env_prob=0.0, sliding_env_prob=0.5)
    assert _gradcheck(torch_qp, prob)


def test_empty_slot_gradients(torch_qp):
    """Zero rays: no force, zero gradient w.r.t. those rays, exact gradients for the rest."""
    prob = random_qp_problem(2, 2, seed=6, empty_env_prob=1.0, sliding_env_prob=0.0)
    assert prob["env_cones"].abs().max() == 0
    sol, g = _grads(torch_qp, prob)
    assert sol.env_forces.abs().max() == 0
    assert g["env_cones"].abs().max() == 0
    assert _gradcheck(torch_qp, prob, names=("wrench", "jacobian", "finger_cones", "finger_facets"))


def test_contact_points_are_facet_projections():
    facets = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]] * 3, dtype=torch.float64)
    ref = torch.tensor([[0.3, 0.5], [-2.0, 1.0], [1.5, -1.0]], dtype=torch.float64)
    p = project_onto_facets(ref, facets)
    assert torch.allclose(p, torch.tensor([[0.3, 0.0], [0.0, 0.0], [1.0, 0.0]], dtype=torch.float64))
    # a degenerate facet gives its vertex, finitely
    p0 = project_onto_facets(ref[:1], torch.zeros(1, 2, 2, dtype=torch.float64))
    assert torch.equal(p0, torch.zeros(1, 2, dtype=torch.float64))


def test_reference_points_from_jacobian():
    prob = random_qp_problem(2, 3, seed=7)
    p = reference_points_from_jacobian(prob["jacobian"], torch.zeros(2, 3, 2, dtype=torch.float64))
    assert torch.allclose(p, prob["reference_points"])


# ----------------------------------------------------------------------------- threads, batches, dtypes


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_settings(threads, restore_threads):
    prob = random_qp_problem(16, 5, seed=8)
    torch.set_num_threads(1)
    ref_sol, ref_g = _grads(InverseDynamicsQP("torch"), prob)
    torch.set_num_threads(threads)
    for _ in range(3):
        sol, g = _grads(InverseDynamicsQP("torch"), prob)
        assert torch.get_num_threads() == threads  # the layer restores the caller's setting
        for x, y in zip(sol, ref_sol):
            assert torch.allclose(x, y, atol=1e-10)
        for k in NAMES:
            assert torch.allclose(g[k], ref_g[k], atol=1e-8)


def test_batch_shapes_and_consistency(torch_qp):
    prob = random_qp_problem(3, 4, seed=9)
    sol = torch_qp(**prob)
    assert sol.finger_positions.shape == (3, 4, 2, 2) and sol.finger_forces.shape == (3, 4, 2, 2)
    assert sol.env_forces.shape == (3, 4, 2, 2) and sol.slack.shape == (3, 4, 3)
    # one sample, an unbatched (T, ...) call, and extra leading axes give the same numbers
    one = torch_qp(**{k: v[1:2] for k, v in prob.items()})
    flat = torch_qp(**{k: v[1] for k, v in prob.items()})
    deep = torch_qp(**{k: v.reshape(3, 2, 2, *v.shape[2:]) for k, v in prob.items()})
    for x, y, z, d in zip(sol, one, flat, deep):
        assert torch.allclose(x[1:2], y, atol=1e-10) and torch.allclose(x[1], z, atol=1e-10)
        assert torch.allclose(x, d.reshape(x.shape), atol=1e-10)
    empty = torch_qp(**{k: v[:0] for k, v in prob.items()})
    assert empty.finger_forces.shape == (0, 4, 2, 2)


def test_float32_inputs_and_default_reference(torch_qp):
    prob = random_qp_problem(2, 5, seed=10)
    sol64 = torch_qp(**prob)
    sol32 = torch_qp(**{k: v.float() for k, v in prob.items()})
    assert all(x.dtype == torch.float32 for x in sol32)
    for x, y in zip(sol32, sol64):
        assert _rel(x.double(), y) < 1e-4
    mid = torch_qp(**{k: v for k, v in prob.items() if k != "reference_points"})
    assert torch.allclose(mid.finger_positions, prob["finger_facets"].mean(-2))


def test_functional_form_and_weights(torch_qp):
    prob = random_qp_problem(2, 3, seed=14)
    a = solve_inverse_dynamics(**prob)
    b = torch_qp(**prob)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    c = solve_inverse_dynamics(**prob, q_eps=(1e4, 1e4, 1e4))
    assert torch.allclose(c.finger_forces, b.finger_forces, atol=1e-10)
    d = solve_inverse_dynamics(**prob, q_eps=(1e4, 1e4, 1e2))
    assert not torch.allclose(d.finger_forces, b.finger_forces, atol=1e-6)


# ----------------------------------------------------------------------------- bad input


def test_bad_shapes_name_the_expected_shape(torch_qp):
    prob = random_qp_problem(2, 3, seed=15)
    with pytest.raises(ValueError, match=r"jacobian must have shape \(2, 3, 3, 8\)"):
        torch_qp(**{**prob, "jacobian": prob["jacobian"][..., :6]})
    with pytest.raises(ValueError, match=r"finger_cones must have shape \(2, 3, 2, 2, 2\)"):
        torch_qp(**{**prob, "finger_cones": prob["finger_cones"][:, :2]})
    with pytest.raises(ValueError, match=r"env_cones must have shape"):
        torch_qp(**{**prob, "env_cones": prob["env_cones"][:, :, :1]})
    with pytest.raises(ValueError, match=r"wrench must have shape \(B, T, 3\)"):
        torch_qp(**{**prob, "wrench": prob["wrench"][..., :2]})
    with pytest.raises(ValueError, match=r"reference_points must have shape"):
        torch_qp(**{**prob, "reference_points": prob["reference_points"][None]})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs_raise(torch_qp, name, bad):
    prob = random_qp_problem(1, 2, seed=16)
    x = prob[name].clone()
    x.view(-1)[0] = bad
    with pytest.raises(ValueError, match=f"{name} contains 1 non-finite"):
        torch_qp(**{**prob, name: x})


def test_bad_configuration():
    with pytest.raises(ValueError, match="unknown QP backend"):
        InverseDynamicsQP("osqp")
    with pytest.raises(ValueError, match="q_e must be finite and > 0"):
        InverseDynamicsQP(q_e=0.0)
    with pytest.raises(ValueError, match="q_eps must be a float or a 3-sequence"):
        InverseDynamicsQP(q_eps=(1.0, 2.0))
    with pytest.raises(ValueError, match="cvxpylayers solver must be one of"):
        InverseDynamicsQP("cvxpylayers", solver="gurobi")


# ----------------------------------------------------------------------------- contract and benchmark


def test_with_mechanics_parameters(torch_qp):
    """The QP consumes dlm_gym.mechanics' P(t) as it is (conventions of the contract)."""
    mech = pytest.importorskip("dlm_gym.mechanics")
    from dlm_gym.dynamics import required_wrench
    from dlm_gym.task import Task

    assert mech.NUM_ENV_CONTACTS == torch_qp.num_env_contacts
    poly = np.array([[-0.1, -0.1], [0.1, -0.1], [0.1, 0.1], [-0.1, 0.1]])
    lift = np.array([[0, 0.1, 0], [0, 0.12, 0], [0, 0.16, 0], [0, 0.2, 0], [0, 0.24, 0.0]])
    task = Task(poly, lift)
    P = mech.mechanical_parameters(task, [1, 3], [0.5, 0.5])
    w = required_wrench(task.polygon, task.trajectory)
    as_t = lambda x: torch.tensor(x)[None]  # noqa: E731
    sol = torch_qp(
        as_t(w),
        as_t(P.jacobian),
        as_t(P.finger_facets),
        as_t(P.finger_cones),
        as_t(P.env_cones),
        as_t(P.finger_positions),
    )
    assert torch.allclose(sol.finger_positions[0], torch.tensor(P.finger_positions), atol=1e-9)
    assert sol.slack.abs().max() < 1e-3 * np.abs(w).max()  # a squeeze lifts the box
    assert float(sol.finger_forces[0, 1:, :, 1].sum(-1).min()) > 9.0  # friction carries the weight once lifted


def test_bench_qp_reports_both_backends(load_example):
    out = load_example("benchmark").bench_qp(2, repeats=1)
    for key in (
        "qp_forward_s",
        "qp_backward_s",
        "torch_forward_s",
        "torch_backward_s",
        "cvxpylayers_forward_s",
        "cvxpylayers_backward_s",
        "cvxpylayers_clarabel_forward_s",
        "cvxpylayers_clarabel_backward_s",
    ):
        assert out[key] > 0, key
    assert out["qp_fastest_backend"] in ("torch", "cvxpylayers", "cvxpylayers:Clarabel")
