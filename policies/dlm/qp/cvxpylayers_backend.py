"""The cvxpylayers backend of the QP layer: the reference it is tested against.

``"cvxpylayers"``: the reference. The same problem in CVXPY (DPP), with
parameters for the wrench, J, the rays, the facet vertices and the reference
points, solved by cvxpylayers through diffcp with ``mode="dense"`` derivatives
and tight tolerances, by default with SCS (``eps_abs = eps_rel = 1e-9``; diffcp's
own default solver, at default tolerances the source of the 10-150 % gradient
errors in docs/design.md); ``solver="Clarabel"`` (tolerances 1e-10) is the
alternative. Measured against the exact torch layer on 1280 random keyframes:
SCS-tight agrees to 5e-9 in values and 1e-7 in gradients; Clarabel-tight to
2e-5 and 1e-4, but 10 % off on a contact point whose facet bound was weakly
active (s = -1.3e-4), because an interior-point solution stays off the bound
and blends the two sides' derivatives. Because the problem
separates exactly, it is posed as two CVXPY problems (forces; contact points),
and the force objective is written as the 2-norm of the weighted residual
stack, which has the same minimiser as its square but a much better scaled
conic form (with the squares Clarabel stalled at "AlmostSolved", contact points
off by up to 0.1 m and forces by 1e-2 N). The exception to agreement is the
rays of sliding contacts, where the ``1 / q_ray`` sensitivity leaves the
conic solvers' gradients off by up to ~1e-2 relative (the torch layer's match
finite differences there).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from policies.dlm.qp.problem import q_eps_vector

__all__ = ["solve_cvxpylayers", "prepare_cvxpylayers"]

_CLARABEL_TIGHT = {
    "tol_gap_abs": 1e-10,
    "tol_gap_rel": 1e-10,
    "tol_feas": 1e-10,
    "tol_ktratio": 1e-9,
    "max_iter": 500,
}
_SCS_TIGHT = {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 100_000}


def _freeze(d: dict | None):
    return tuple(sorted((d or {}).items()))


@functools.lru_cache(maxsize=8)
def _cvxpy_layers(num_fingers: int, num_env: int, weights_key: tuple, solver: str, solver_args_key: tuple):
    """Build (once per configuration) the two CVXPY problems and their CvxpyLayers.

    The QP separates exactly into a force problem (ray multipliers, forces,
    slack) and a contact-point problem, so the reference solves them as two
    DPP problems. The force problem's objective is written as the Euclidean
    norm of the stacked weighted residuals ``||(sqrt(q_lambda) lambda_c,
    sqrt(q_e) lambda_e, sqrt(Q_eps) eps, sqrt(q_ray) a)||_2``: its minimiser is
    that of the sum of squares (sqrt is monotone) and its conic form (one
    second-order cone) is far better scaled than the square's rotated cone,
    with which Clarabel stalled at "AlmostSolved" with errors up to 1e-2 N.
    """
    import cvxpy as cp
    from cvxpylayers.torch import CvxpyLayer

    weights = dict(weights_key)
    N, E = num_fingers, num_env
    C = N + E
    args = dict(solver_args_key)

    # --- forces: lambda_k = a_k1 gamma_k1 + a_k2 gamma_k2, w = J Lambda + eps
    J = cp.Parameter((3, 2 * C), name="J")
    w = cp.Parameter(3, name="wrench")
    Gt = cp.Parameter((2, 2 * C), name="rays")  # column 2k + r = ray r of contact k
    a = cp.Variable(2 * C, nonneg=True, name="a")
    lam = cp.Variable(2 * C, name="Lambda")
    eps = cp.Variable(3, name="eps")
    cons = [w == J @ lam + eps]
    for k in range(C):
        cons.append(lam[2 * k : 2 * k + 2] == Gt[:, 2 * k : 2 * k + 2] @ a[2 * k : 2 * k + 2])
    sq = math.sqrt
    stack = [sq(weights["q_lambda"]) * lam[: 2 * N]]
    if E:
        stack.append(sq(weights["q_e"]) * lam[2 * N :])
    stack += [cp.multiply(np.sqrt(np.asarray(q_eps_vector(weights["q_eps"]))), eps), sq(weights["q_ray"]) * a]
    forces = cp.Problem(cp.Minimize(cp.norm(cp.hstack(stack), 2)), cons)

    # --- contact points: p_c = phi_1 + s (phi_2 - phi_1), 0 <= s <= 1
    phi1 = cp.Parameter((N, 2), name="phi1")
    phi2 = cp.Parameter((N, 2), name="phi2")
    pref = cp.Parameter((N, 2), name="p_ref")
    p = cp.Variable((N, 2), name="p_c")
    s = cp.Variable(N, name="s")
    pcons = [s >= 0, s <= 1] + [p[i, :] == phi1[i, :] + s[i] * (phi2[i, :] - phi1[i, :]) for i in range(N)]
    points = cp.Problem(cp.Minimize(weights["q_ref"] * cp.sum_squares(p - pref)), pcons)

    if not (forces.is_dpp() and points.is_dpp()):  # pragma: no cover - a guard on the formulation
        raise RuntimeError("the inverse-dynamics problems are not DPP")
    force_layer = CvxpyLayer(forces, parameters=[J, w, Gt], variables=[lam, eps], solver_args=args)
    point_layer = CvxpyLayer(points, parameters=[phi1, phi2, pref], variables=[p], solver_args=args)
    return force_layer, point_layer


def _solver_args(solver: str, solver_args: dict | None) -> dict:
    name = solver.upper()
    if name == "CLARABEL":
        base = {"solve_method": "Clarabel", "mode": "dense", **_CLARABEL_TIGHT}
    elif name == "SCS":
        base = {"solve_method": "SCS", "mode": "dense", **_SCS_TIGHT}
    elif name == "ECOS":
        base = {"solve_method": "ECOS", "mode": "dense"}
    else:
        raise ValueError(f"cvxpylayers solver must be one of 'Clarabel', 'SCS', 'ECOS', got {solver!r}")
    base.update(solver_args or {})
    return base


def solve_cvxpylayers(
    wrench, jacobian, finger_facets, finger_cones, env_cones, reference_points, weights, solver, solver_args
):
    K = wrench.shape[0]
    N, E = finger_cones.shape[1], env_cones.shape[1]
    C = N + E
    dt = torch.float64
    args = _solver_args(solver, solver_args)
    # diffcp takes the derivative mode only when it differentiates (its solve-only
    # path hands every argument to the solver), so pass it per call.
    mode = args.pop("mode")
    force_layer, point_layer = _cvxpy_layers(N, E, tuple(sorted(weights.items())), solver.upper(), _freeze(args))
    grad_on = torch.is_grad_enabled()
    dev = wrench.device
    cpu = lambda x: x.to(device="cpu", dtype=dt)  # noqa: E731  (diffcp works in numpy)
    rays = cpu(torch.cat([finger_cones, env_cones], dim=1))  # (K, C, 2 rays, 2 dims)
    Gt = rays.permute(0, 3, 1, 2).reshape(K, 2, 2 * C)
    f_in = (cpu(jacobian), cpu(wrench), Gt)
    p_in = (cpu(finger_facets[:, :, 0, :]), cpu(finger_facets[:, :, 1, :]), cpu(reference_points))
    f_grad = grad_on and any(x.requires_grad for x in f_in)
    p_grad = grad_on and any(x.requires_grad for x in p_in)
    lam, eps = force_layer(*f_in, solver_args={"mode": mode} if f_grad else None)
    (p,) = point_layer(*p_in, solver_args={"mode": mode} if p_grad else None)
    lam = lam.reshape(K, C, 2).to(dev)
    return p.to(dev), lam[:, :N], lam[:, N:], eps.to(dev)


def prepare_cvxpylayers(num_fingers: int, num_env: int, weights: dict, solver: str, solver_args: dict | None) -> None:
    """Check the solver name and build (and cache) the CVXPY problem now, so that errors surface at construction."""
    args = _solver_args(solver, solver_args)
    args.pop("mode")
    _cvxpy_layers(num_fingers, num_env, tuple(sorted(weights.items())), solver.upper(), _freeze(args))
