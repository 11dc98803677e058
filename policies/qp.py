"""Differentiable inverse dynamics: the QP layer of DLM (paper Section 4.2, eq. 6).

Given the mechanical parameters P(t) of a task (decoded from the video) and
the wrench the contacts must supply, the layer returns the robot actions: the
finger contact points ``p_c(t)`` and forces ``lambda_c(t)``, the ground forces
``lambda_e(t)`` and the dynamics slack ``eps(t)``.

Problem
-------
With ``Lambda(t) = [lambda_1, ..., lambda_N, lambda_e1, ..., lambda_eE]`` (world
2-vectors acting on the object, the convention of :mod:`dlm_gym.mechanics`)::

    min   sum_t  q_lambda * sum_c ||lambda_c(t)||^2  +  q_e * sum_e ||lambda_e(t)||^2
                 + ||eps(t)||^2_{Q_eps}                 (Q_eps = diag(q_eps), per wrench row)
                 + q_ref * sum_c ||p_c(t) - p_ref_c(t)||^2
                 + q_ray * ||a(t)||^2
    s.t.  w(t) = J(t) Lambda(t) + eps(t)                                  (eq. 6, w = M r'' + G)
          lambda_k(t) = a_k1 gamma_k1 + a_k2 gamma_k2,  a >= 0            (lambda_c in FC_c, lambda_e in FC_e)
          p_c(t) = phi_c1 + s_c (phi_c2 - phi_c1),  0 <= s_c <= 1         (p_c in F_c)

* ``w(t)`` (``wrench``) is ``M r''(t) + G``, computed by the caller
  (:func:`dlm_gym.dynamics.required_wrench`); ``J(t)`` is the paper's
  ``J(r)^T`` of shape ``(3, 2 (N + E))``, ``wrench = J @ Lambda``.
* ``gamma`` are the two unit rays of each cone and ``a`` their nonnegative
  multipliers (2 per contact, ``2 (N + E)`` = 8 in all). An empty ground slot
  has zero rays and so carries no force.
* The paper's finger-acceleration cost ``||p_c''||^2`` is replaced by the
  distance to reference contact points ``p_ref`` (e.g. the lever arms held in
  J's torque row, see :func:`reference_points_from_jacobian`): since J is
  given (the paper's linearisation), the contact points do not enter the
  dynamics constraint.

Structure
---------
Because J is given, the problem separates: per keyframe, the forces are a
nonnegative least squares in the 8 ray multipliers (``eps`` eliminated)::

    min_{a >= 0}  a^T H a - 2 c^T a,   H = (JG)^T Q_eps (JG) + G^T W G + q_ray I,   c = (JG)^T Q_eps w

with ``G`` the block-diagonal ray matrix (``Lambda = G a``) and ``W`` the
force weights; and each contact point is the projection of its reference point
onto its facet segment, ``s_c = clamp(<p_ref - phi_1, d> / |d|^2, 0, 1)``.

Default weights and why
-----------------------
* ``q_lambda = 1``: finger effort, the quantity the QP minimises.
* ``q_e = 0.01``: ground reactions are passive (free to the robot), so they are
  cheap; positive so the problem is strictly convex in ``Lambda`` (unique
  forces, well-defined gradients). When ground and fingers could share a load
  the fingers take about ``q_e / (q_lambda + q_e)`` = 1 % of it.
* ``q_eps = 1e4``: the slack must cost far more than the forces. With the
  released code's weights (slack 0.01 vs force 1) the forces collapse (DESIGN.md:
  f = 0; with a squared slack they are ~1 % of the wrench, tested). For a feasible
  wrench the residual left at the optimum is about ``q_lambda / q_eps`` times the
  wrench times (|Lambda| / |w|)^2: 2e-4 of the weight for a box held by friction
  (2 mN on 1 kg, a 0.2 mm drift over the horizon), small enough to execute the
  forces as they are (the paper sets ``eps = 0`` after training). ``q_eps`` may
  be a 3-sequence to weigh the torque row (N m) apart from the force rows.
* ``q_ref = 1``: any positive value gives the same contact points (the
  projection); it only scales the objective.
* ``q_ray = 1e-4``: a small ridge on the ray multipliers. It makes them unique
  (so the gradients with respect to the rays are well-defined) when a cone is
  degenerate: an empty ground slot (zero rays) or a sliding contact (two equal
  rays). It biases the finger-force cost by ~1e-4 and the ground-force cost by
  ~1 %. Smaller is not better: near a degenerate cone the forces' sensitivity
  to the rays grows like ``1 / q_ray`` (with 1e-6, cvxpylayers' ray gradients
  on sliding contacts were off by 0.08 against 3e-5 with 1e-4), and rays shorter than
  about ``sqrt(q_ray / q_e)`` = 0.1 are priced out (the rays are unit).

At exactly zero rays (an empty slot) the ground force is zero and its gradient
with respect to those rays is zero; the map is a ridge-smoothed kink there
(the force grows like ``|ray|^2 / q_ray``), so finite differences across it
are meaningless.

Evaluation (the paper's ``eps = 0``)
------------------------------------
The forces and contact points are what gets executed. ``forward(...,
zero_slack=True)`` returns them unchanged with ``slack`` zeroed, and
:func:`wrench_residual` reports the wrench they leave unmade (equal to the
slack at the optimum).

Backends
--------
``"torch"`` (default, fast): the force NNLS of every keyframe at once, in
float64 whatever the input dtype. Block principal pivoting (Judice-Pires full
exchanges with Murty's single-pivot fallback) settles 97 % of keyframes in at
most 5 pivots; the rest are solved exactly by enumerating the 2^8 free sets.
The final solve on the optimal free set is a Cholesky solve with two steps of
iterative refinement on the least-squares residual (forces exact to ~1e-13 N
against scipy's NNLS). The backward is analytic implicit differentiation on
the optimal active set (one Cholesky solve; exact wherever the active set is
locally constant, i.e. almost everywhere). Contact points by a differentiable
clamp. Cholesky only, on one intra-op thread (see :func:`_single_thread` and
DESIGN.md's torch threading pitfall); the caller's thread setting is restored.

``"cvxpylayers"``: the reference. The same problem in CVXPY (DPP), with
parameters for the wrench, J, the rays, the facet vertices and the reference
points, solved by cvxpylayers through diffcp with ``mode="dense"`` derivatives
and tight tolerances, by default with SCS (``eps_abs = eps_rel = 1e-9``; diffcp's
own default solver, at default tolerances the source of the 10-150 % gradient
errors in DESIGN.md); ``solver="Clarabel"`` (tolerances 1e-10) is the
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

import contextlib
import functools
import math
import time
import warnings
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from dlm_gym.config import DEFAULT_CONFIG
from dlm_gym.mechanics import contact_points_from_jacobian

__all__ = [
    "BACKENDS",
    "DEFAULT_WEIGHTS",
    "QPSolution",
    "InverseDynamicsQP",
    "solve_inverse_dynamics",
    "wrench_residual",
    "project_onto_facets",
    "reference_points_from_jacobian",
    "random_qp_problem",
    "bench_qp",
]

BACKENDS = ("torch", "cvxpylayers")
"""Names accepted by :class:`InverseDynamicsQP`'s ``backend`` argument."""

DEFAULT_WEIGHTS: dict[str, float] = {
    "q_lambda": 1.0,
    "q_e": 0.01,
    "q_eps": 1e4,
    "q_ref": 1.0,
    "q_ray": 1e-4,
}
"""Default cost weights (see the module docstring for the reasoning)."""

DEFAULT_NUM_ENV_CONTACTS = 2
"""E, ground contact slots (equals ``dlm_gym.mechanics.NUM_ENV_CONTACTS``)."""

_CLARABEL_TIGHT = {
    "tol_gap_abs": 1e-10,
    "tol_gap_rel": 1e-10,
    "tol_feas": 1e-10,
    "tol_ktratio": 1e-9,
    "max_iter": 500,
}
_SCS_TIGHT = {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 100_000}


class QPSolution(NamedTuple):
    """Solution of the inverse-dynamics QP, batch axes first (``(B, T, ...)``)."""

    finger_positions: torch.Tensor
    """``(B, T, N, 2)`` contact points p_c(t) on the facets."""
    finger_forces: torch.Tensor
    """``(B, T, N, 2)`` finger forces lambda_c(t) on the object (in FC_c(t))."""
    env_forces: torch.Tensor
    """``(B, T, E, 2)`` ground forces lambda_e(t) on the object (in FC_e(t))."""
    slack: torch.Tensor
    """``(B, T, 3)`` eps(t) = wrench - J Lambda (zeros if the forward was asked for ``zero_slack``)."""


# --------------------------------------------------------------------------- validation


def _check_weights(weights: dict[str, Any]) -> dict[str, Any]:
    out = dict(DEFAULT_WEIGHTS)
    unknown = set(weights) - set(out)
    if unknown:
        raise TypeError(f"unknown QP weight(s) {sorted(unknown)}; known: {sorted(out)}")
    out.update({k: v for k, v in weights.items() if v is not None})
    for name, value in out.items():
        if name == "q_eps" and not np.isscalar(value):
            arr = np.asarray(value, dtype=np.float64).reshape(-1)
            if arr.shape != (3,):
                raise ValueError(f"q_eps must be a float or a 3-sequence (per wrench row), got shape {arr.shape}")
            if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
                raise ValueError(f"q_eps entries must be finite and > 0, got {arr.tolist()}")
            out[name] = tuple(float(x) for x in arr)
            continue
        v = float(value)
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"QP weight {name} must be finite and > 0, got {value!r}")
        out[name] = v
    return out


def _q_eps_vector(q_eps) -> tuple[float, float, float]:
    if isinstance(q_eps, tuple):
        return q_eps
    return (float(q_eps),) * 3


def _as_tensor(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a tensor or array of numbers") from exc
    if not (x.is_floating_point()):
        x = x.to(torch.get_default_dtype())
    return x


def _validate(
    wrench,
    jacobian,
    finger_facets,
    finger_cones,
    env_cones,
    reference_points,
    num_fingers: int,
    num_env: int,
) -> tuple[tuple[int, ...], list[torch.Tensor]]:
    """Check shapes and values; return the leading batch shape and the tensors."""
    N, E = num_fingers, num_env
    C2 = 2 * (N + E)
    wrench = _as_tensor("wrench", wrench)
    if wrench.ndim < 1 or wrench.shape[-1] != 3:
        raise ValueError(f"wrench must have shape (B, T, 3), got {tuple(wrench.shape)}")
    lead = tuple(wrench.shape[:-1])
    specs = [
        ("jacobian", jacobian, (3, C2)),
        ("finger_facets", finger_facets, (N, 2, 2)),
        ("finger_cones", finger_cones, (N, 2, 2)),
        ("env_cones", env_cones, (E, 2, 2)),
        ("reference_points", reference_points, (N, 2)),
    ]
    out = [wrench]
    for name, x, tail in specs:
        if x is None:
            out.append(None)
            continue
        x = _as_tensor(name, x)
        expected = lead + tail
        if tuple(x.shape) != expected:
            exp_s = "(" + ", ".join(map(str, expected)) + ")"
            raise ValueError(
                f"{name} must have shape {exp_s} = (B, T, {', '.join(map(str, tail))}) for wrench of shape "
                f"{tuple(wrench.shape)} with N = {N} fingers and E = {E} ground slots; got {tuple(x.shape)}"
            )
        out.append(x)
    for name, x in zip(("wrench", "jacobian", "finger_facets", "finger_cones", "env_cones", "reference_points"), out):
        if x is not None and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf); the QP needs finite inputs")
    return lead, out


# --------------------------------------------------------------------------- shared pieces


def wrench_residual(
    wrench: torch.Tensor, jacobian: torch.Tensor, finger_forces: torch.Tensor, env_forces: torch.Tensor
) -> torch.Tensor:
    """``wrench - J Lambda``, shape ``(..., 3)``: the dynamics residual of executing the forces as they are.

    At the optimum it equals the slack ``eps``. The paper sets ``eps = 0`` at
    evaluation and executes the forces; this is the wrench they leave unmade.
    """
    lam = torch.cat([finger_forces, env_forces], dim=-2)
    lam = lam.reshape(*lam.shape[:-2], -1)
    return wrench - torch.einsum("...ij,...j->...i", jacobian, lam)


def project_onto_facets(reference_points: torch.Tensor, finger_facets: torch.Tensor) -> torch.Tensor:
    """Closest points ``(..., N, 2)`` on the facet segments ``(..., N, 2, 2)`` to the reference points.

    ``p = phi_1 + clamp(s, 0, 1) (phi_2 - phi_1)`` with ``s`` the unconstrained
    minimiser; differentiable (zero gradient in ``s`` where the clamp is active).
    A degenerate facet (``phi_1 == phi_2``) yields ``phi_1``.
    """
    phi1, phi2 = finger_facets[..., 0, :], finger_facets[..., 1, :]
    d = phi2 - phi1
    dd = (d * d).sum(-1)
    ok = dd > 1e-300
    s = ((reference_points - phi1) * d).sum(-1) / torch.where(ok, dd, torch.ones_like(dd))
    s = torch.where(ok, s.clamp(0.0, 1.0), torch.zeros_like(s))
    return phi1 + s.unsqueeze(-1) * d


def reference_points_from_jacobian(
    jacobian: torch.Tensor, centroids: torch.Tensor, num_fingers: int = DEFAULT_CONFIG.num_fingers
) -> torch.Tensor:
    """Finger reference points ``(..., N, 2)`` read from J's torque row; see
    :func:`dlm_gym.mechanics.contact_points_from_jacobian`."""
    return contact_points_from_jacobian(jacobian, centroids, num_fingers)


def _facet_midpoints(finger_facets: torch.Tensor) -> torch.Tensor:
    return finger_facets.mean(dim=-2)


# --------------------------------------------------------------------------- torch backend


@contextlib.contextmanager
def _single_thread():
    """Run tiny batched kernels on one intra-op thread, then restore the setting.

    The per-keyframe systems are 8 x 8: threads only add wake-up cost. On a
    2-core machine with other load, one batched ``tril`` (inside Cholesky) was
    measured at ~6 ms with 2 OpenMP threads against ~10 us with 1, and DESIGN.md
    records garbage from batched LU under ``set_num_threads(n > 1)``.
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _masked_system(H: torch.Tensor, c: torch.Tensor, free: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The system whose solution is ``x_F = H_FF^{-1} c_F``, ``x_rest = 0`` (identity rows off the free set)."""
    m = free.to(H.dtype)
    Hm = H * (m.unsqueeze(-1) * m.unsqueeze(-2)) + torch.diag_embed(1.0 - m)
    return Hm, c * m


def _cholesky(H: torch.Tensor) -> torch.Tensor:
    L, info = torch.linalg.cholesky_ex(H)
    if bool((info != 0).any()):  # cannot happen for q_ray > 0; a guard against non-finite data
        raise RuntimeError("inverse-dynamics QP: a reduced Hessian is not positive definite")
    return L


def _chol_solve(L: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cholesky_solve(b.unsqueeze(-1), L).squeeze(-1)


@functools.lru_cache(maxsize=4)
def _all_subsets(n: int) -> torch.Tensor:
    """``(2^n, n)`` bool: every subset of n indices."""
    bits = torch.arange(2**n).unsqueeze(-1) >> torch.arange(n)
    return (bits & 1).bool()


def _enumerate_free_set(H: torch.Tensor, c: torch.Tensor, rtol: float) -> torch.Tensor:
    """Exact optimal free set by enumeration (``n <= _ENUMERATE_MAX_N``): for every subset F,
    ``x_F = H_FF^{-1} c_F``; among the primal-feasible ones (``x >= 0``) the optimum has the
    lowest objective ``x^T H x - 2 c^T x = -c^T x``.
    """
    R, n = c.shape
    subsets = _all_subsets(n).to(c.device)  # (S, n)
    S = subsets.shape[0]
    Hs = H.unsqueeze(1).expand(R, S, n, n).reshape(R * S, n, n)
    cs = c.unsqueeze(1).expand(R, S, n).reshape(R * S, n)
    free = subsets.unsqueeze(0).expand(R, S, n).reshape(R * S, n)
    Hm, cm = _masked_system(Hs, cs, free)
    x = _chol_solve(_cholesky(Hm), cm).view(R, S, n)
    tol = rtol * x.abs().amax(-1, keepdim=True)
    feasible = (x >= -tol).all(-1)
    value = (c.unsqueeze(1) * x).sum(-1)  # -objective
    value = torch.where(feasible, value, torch.full_like(value, -math.inf))
    return subsets[value.argmax(-1)]


def _nnls_free_set(
    H: torch.Tensor, c: torch.Tensor, max_iter: int, pivots_before_enumeration: int = 6, rtol: float = 1e-11
) -> tuple[torch.Tensor, int, int]:
    """Optimal free set of ``min x^T H x - 2 c^T x, x >= 0`` for SPD ``H`` (K, n, n).

    Block principal pivoting on the complementarity conditions ``x_F = H_FF^{-1} c_F >= 0``
    and ``y = H x - c >= 0`` off F: full exchange of all infeasible indices while their
    count keeps falling (with a budget of 3 non-improving full exchanges), else Murty's
    single exchange of the largest infeasible index (finite for P-matrices). Most problems
    finish in 1-3 pivots; after ``pivots_before_enumeration`` the few left are solved by
    enumeration when ``n <= _ENUMERATE_MAX_N`` (exact, and cheaper than Murty's long tail),
    else pivoting goes on up to ``max_iter``.
    Returns ``(free (K, n) bool, iterations, number not converged)``.
    """
    K, n = c.shape
    free = _chol_solve(_cholesky(H), c) > 0  # start from the unconstrained minimiser's support
    dev = c.device
    best = torch.full((K,), n + 1, dtype=torch.long, device=dev)
    budget = torch.full((K,), 3, dtype=torch.long, device=dev)
    order = torch.arange(1, n + 1, dtype=torch.long, device=dev)
    scale_c = c.abs().amax(-1, keepdim=True)
    scale_h = H.abs().amax(dim=(-1, -2)).unsqueeze(-1)
    unconverged = K
    it = 0
    for it in range(1, max_iter + 1):
        Hm, cm = _masked_system(H, c, free)
        x = _chol_solve(_cholesky(Hm), cm)
        y = (H * x.unsqueeze(-2)).sum(-1) - c
        scale_x = x.abs().amax(-1, keepdim=True)
        tol_x = rtol * scale_x
        tol_y = rtol * (scale_c + scale_h * scale_x)
        infeas = (free & (x < -tol_x)) | (~free & (y < -tol_y))
        ninf = infeas.sum(-1)
        left = ninf > 0
        unconverged = int(left.sum())
        if unconverged == 0:
            break
        if it >= pivots_before_enumeration and n <= _ENUMERATE_MAX_N:
            idx = left.nonzero().squeeze(-1)
            free = free.clone()
            free[idx] = _enumerate_free_set(H[idx], c[idx], rtol)
            return free, it + 1, 0
        improved = ninf < best
        best = torch.where(improved, ninf, best)
        use_full = improved | (budget > 0)
        budget = torch.where(improved, torch.full_like(budget, 3), torch.where(use_full, budget - 1, budget))
        last = (infeas.long() * order).argmax(-1)
        single = torch.nn.functional.one_hot(last, n).bool() & infeas
        free = free ^ torch.where(use_full.unsqueeze(-1), infeas, single)
    return free, it, unconverged


_ENUMERATE_MAX_N = 12
"""Largest number of ray multipliers (2 (N + E)) for which stragglers are solved by enumeration."""

_REFINE_STEPS = 2
"""Iterative-refinement steps of the final solve on the optimal free set."""


class _ForceQP(torch.autograd.Function):
    """Forces of K keyframe problems: exact NNLS forward, implicit-differentiation backward.

    Inputs (float64): ``wrench (K, 3)``, ``J (K, 3, C, 2)``, ``rays (K, C, 2 rays, 2 dims)``,
    ``w_contact (C,)`` force weights, ``q_eps (3,)``; ``q_ray`` and ``max_iter`` plain numbers.
    Outputs: ``Lambda (K, C, 2)`` and ``eps (K, 3)``.

    With ``M = J G`` (``(3, 2C)``), ``H = M^T Q M + blockdiag(w_c G_c^T G_c) + q_ray I``,
    ``c = M^T Q w`` and the optimal free set F, ``x_F = H_FF^{-1} c_F`` is smooth in the
    data while F is fixed, so with ``v = H_FF^{-1} (dL/dx)_F`` (zero off F)::

        dL/dH = -v x^T,   dL/dc = v,   hence
        dL/dM = Q eps v^T - Q (M v) x^T,   dL/dw += Q M v,
        dL/dG_c += -w_c (lambda_c v_c^T + (G_c v_c) x_c^T)

    and ``Lambda = G x``, ``eps = w - J Lambda``, ``M = J G`` give the rest by the chain rule.
    """

    @staticmethod
    def forward(ctx, wrench, J, rays, w_contact, q_eps, q_ray: float, max_iter: int):
        K, _, C, _ = J.shape
        with _single_thread():
            M = torch.einsum("kicd,kcrd->kicr", J, rays).reshape(K, 3, 2 * C)
            QM = q_eps.view(1, 3, 1) * M
            gram = torch.einsum("kcrd,kcsd->kcrs", rays, rays) * w_contact.view(1, C, 1, 1)
            eye_c = torch.eye(C, dtype=J.dtype, device=J.device)
            blk = torch.einsum("kcrs,ce->kcres", gram, eye_c).reshape(K, 2 * C, 2 * C)
            H = M.transpose(-1, -2) @ QM + blk + q_ray * torch.eye(2 * C, dtype=J.dtype, device=J.device)
            c = (QM * wrench.unsqueeze(-1)).sum(-2)
            free, _, unconverged = _nnls_free_set(H, c, max_iter)
            Hm, cm = _masked_system(H, c, free)
            L = _cholesky(Hm)
            x = _chol_solve(L, cm)
            mask = free.to(x.dtype)
            for step in range(_REFINE_STEPS + 1):
                lam = torch.einsum("kcr,kcrd->kcd", x.view(K, C, 2), rays)
                eps = wrench - torch.einsum("kicd,kcd->ki", J, lam)
                if step == _REFINE_STEPS:
                    break
                # Refine with the residual of the least-squares form, c - H x = M^T Q eps -
                # (blockdiag + q_ray I) x, which never forms M^T Q M: the error then scales
                # with cond(A) of the stacked least-squares matrix, not cond(H) = cond(A)^2.
                r = (QM * eps.unsqueeze(-1)).sum(-2) - (blk * x.unsqueeze(-2)).sum(-1) - q_ray * x
                x = x + _chol_solve(L, r * mask)
        if unconverged:
            warnings.warn(
                f"inverse-dynamics QP: the active-set search did not converge for {unconverged} of {K} "
                f"keyframes in {max_iter} iterations; their forces are approximate",
                RuntimeWarning,
                stacklevel=2,
            )
        ctx.save_for_backward(J, rays, w_contact, q_eps, M, L, x, free, lam, eps)
        return lam, eps

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_lam, g_eps):
        J, rays, w_contact, q_eps, M, L, x, free, lam, eps = ctx.saved_tensors
        K, _, C, _ = J.shape
        with _single_thread():
            if g_lam is None:
                g_lam = torch.zeros_like(lam)
            if g_eps is None:
                g_eps = torch.zeros_like(eps)
            # eps = w - J Lambda
            g_w = g_eps.clone()
            g_L = g_lam - torch.einsum("kicd,ki->kcd", J, g_eps)
            g_J = -torch.einsum("ki,kcd->kicd", g_eps, lam)
            # Lambda = G x
            xr = x.view(K, C, 2)
            g_x = torch.einsum("kcd,kcrd->kcr", g_L, rays).reshape(K, 2 * C)
            g_rays = torch.einsum("kcr,kcd->kcrd", xr, g_L)
            # x = H_FF^{-1} c_F
            v = _chol_solve(L, g_x * free.to(x.dtype))
            vr = v.view(K, C, 2)
            Mv = (M * v.unsqueeze(-2)).sum(-1)  # (K, 3)
            g_M = q_eps.view(1, 3, 1) * (eps.unsqueeze(-1) * v.unsqueeze(-2) - Mv.unsqueeze(-1) * x.unsqueeze(-2))
            g_w = g_w + q_eps * Mv
            Gv = torch.einsum("kcr,kcrd->kcd", vr, rays)
            g_rays = g_rays - w_contact.view(1, C, 1, 1) * (
                vr.unsqueeze(-1) * lam.unsqueeze(-2) + xr.unsqueeze(-1) * Gv.unsqueeze(-2)
            )
            # M = J G
            g_Mr = g_M.view(K, 3, C, 2)
            g_J = g_J + torch.einsum("kicr,kcrd->kicd", g_Mr, rays)
            g_rays = g_rays + torch.einsum("kicd,kicr->kcrd", J, g_Mr)
        return g_w, g_J, g_rays, None, None, None, None


def _solve_torch(
    wrench: torch.Tensor,
    jacobian: torch.Tensor,
    finger_cones: torch.Tensor,
    env_cones: torch.Tensor,
    weights: dict[str, Any],
    max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forces of the flattened problems: ``(K, 3)``, ``(K, 3, 2C)``, rays ``(K, N, 2, 2)``, ``(K, E, 2, 2)``.

    Returns ``(finger_forces (K, N, 2), env_forces (K, E, 2), slack (K, 3))`` in float64.
    """
    K = wrench.shape[0]
    N, E = finger_cones.shape[1], env_cones.shape[1]
    C = N + E
    dt = torch.float64
    rays = torch.cat([finger_cones, env_cones], dim=1).to(dt)
    J = jacobian.to(dt).reshape(K, 3, C, 2)
    dev = wrench.device
    w_contact = torch.tensor([weights["q_lambda"]] * N + [weights["q_e"]] * E, dtype=dt, device=dev)
    q_eps = torch.tensor(_q_eps_vector(weights["q_eps"]), dtype=dt, device=dev)
    lam, eps = _ForceQP.apply(wrench.to(dt), J, rays, w_contact, q_eps, weights["q_ray"], max_iter)
    return lam[:, :N], lam[:, N:], eps


# --------------------------------------------------------------------------- cvxpylayers backend


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
        cons.append(lam[2 * k: 2 * k + 2] == Gt[:, 2 * k: 2 * k + 2] @ a[2 * k: 2 * k + 2])
    sq = math.sqrt
    stack = [sq(weights["q_lambda"]) * lam[: 2 * N]]
    if E:
        stack.append(sq(weights["q_e"]) * lam[2 * N:])
    stack += [cp.multiply(np.sqrt(np.asarray(_q_eps_vector(weights["q_eps"]))), eps), sq(weights["q_ray"]) * a]
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


def _solve_cvxpylayers(
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


# --------------------------------------------------------------------------- public API


class InverseDynamicsQP(nn.Module):
    """Batched differentiable inverse dynamics (paper eq. 6); see the module docstring.

    Args:
        backend: ``"torch"`` (structured exact NNLS, fast) or ``"cvxpylayers"`` (reference).
        num_fingers: N.
        num_env_contacts: E ground slots.
        q_lambda, q_e, q_eps, q_ref, q_ray: cost weights (defaults :data:`DEFAULT_WEIGHTS`;
            ``q_eps`` may be a 3-sequence, one weight per wrench row).
        solver: cvxpylayers backend only: ``"SCS"`` (default), ``"Clarabel"`` or ``"ECOS"`` (if installed),
            via diffcp.
        solver_args: cvxpylayers backend only: overrides of the solver settings (defaults are tight
            tolerances and ``mode="dense"`` derivatives; e.g. ``{"eps_abs": 1e-6}`` or ``{"mode": "lsqr"}``).
        max_iter: torch backend only: cap on active-set iterations (a few are typical).

    Call with ``wrench (B, T, 3)``, ``jacobian (B, T, 3, 2(N+E))``,
    ``finger_facets (B, T, N, 2, 2)``, ``finger_cones (B, T, N, 2, 2)``,
    ``env_cones (B, T, E, 2, 2)`` and ``reference_points (B, T, N, 2)`` (default:
    facet midpoints); any leading batch shape in place of ``(B, T)`` works.
    Returns a :class:`QPSolution` in the dtype of ``wrench``.
    """

    def __init__(
        self,
        backend: str = "torch",
        *,
        num_fingers: int = DEFAULT_CONFIG.num_fingers,
        num_env_contacts: int = DEFAULT_NUM_ENV_CONTACTS,
        q_lambda: float = DEFAULT_WEIGHTS["q_lambda"],
        q_e: float = DEFAULT_WEIGHTS["q_e"],
        q_eps: float | Sequence[float] = DEFAULT_WEIGHTS["q_eps"],
        q_ref: float = DEFAULT_WEIGHTS["q_ref"],
        q_ray: float = DEFAULT_WEIGHTS["q_ray"],
        solver: str = "SCS",
        solver_args: dict | None = None,
        max_iter: int = 100,
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown QP backend {backend!r}; choose one of {BACKENDS}")
        if int(num_fingers) < 1 or int(num_env_contacts) < 0:
            raise ValueError(f"need num_fingers >= 1 and num_env_contacts >= 0, got {num_fingers}, {num_env_contacts}")
        if int(max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        self.backend = backend
        self.num_fingers = int(num_fingers)
        self.num_env_contacts = int(num_env_contacts)
        self.weights = _check_weights(dict(q_lambda=q_lambda, q_e=q_e, q_eps=q_eps, q_ref=q_ref, q_ray=q_ray))
        self.solver = solver
        self.solver_args = dict(solver_args or {})
        self.max_iter = int(max_iter)
        if backend == "cvxpylayers":
            args = _solver_args(solver, solver_args)  # validates the solver name
            args.pop("mode")
            _cvxpy_layers(  # build (and cache) the CVXPY problem now
                self.num_fingers, self.num_env_contacts, tuple(sorted(self.weights.items())), solver.upper(),
                _freeze(args),
            )

    def extra_repr(self) -> str:
        w = ", ".join(f"{k}={v}" for k, v in self.weights.items())
        return f"backend={self.backend!r}, N={self.num_fingers}, E={self.num_env_contacts}, {w}"

    def forward(
        self,
        wrench: torch.Tensor,
        jacobian: torch.Tensor,
        finger_facets: torch.Tensor,
        finger_cones: torch.Tensor,
        env_cones: torch.Tensor,
        reference_points: torch.Tensor | None = None,
        *,
        zero_slack: bool = False,
    ) -> QPSolution:
        """Solve the QP for every keyframe; see the class docstring for shapes.

        ``zero_slack=True`` is the paper's evaluation setting (``eps = 0``): the
        forces and points are returned as they are (they are what gets
        executed) and ``slack`` is zeros; :func:`wrench_residual` reports what
        the forces leave unmade.
        """
        N, E = self.num_fingers, self.num_env_contacts
        lead, (w, J, facets, fcones, econes, pref) = _validate(
            wrench, jacobian, finger_facets, finger_cones, env_cones, reference_points, N, E
        )
        out_dtype = w.dtype
        if pref is None:
            pref = _facet_midpoints(facets)
        K = int(np.prod(lead)) if lead else 1
        flat = lambda x, tail: x.reshape(K, *tail)  # noqa: E731
        w_f, J_f = flat(w, (3,)), flat(J, (3, 2 * (N + E)))
        fac_f, fc_f, ec_f = flat(facets, (N, 2, 2)), flat(fcones, (N, 2, 2)), flat(econes, (E, 2, 2))
        pref_f = flat(pref, (N, 2))
        if K == 0:
            z = lambda *tail: torch.zeros(*lead, *tail, dtype=out_dtype, device=w.device)  # noqa: E731
            return QPSolution(z(N, 2), z(N, 2), z(E, 2), z(3))
        if self.backend == "torch":
            lam_c, lam_e, eps = _solve_torch(w_f, J_f, fc_f, ec_f, self.weights, self.max_iter)
            p = project_onto_facets(pref_f.to(torch.float64), fac_f.to(torch.float64))
        else:
            p, lam_c, lam_e, eps = _solve_cvxpylayers(
                w_f, J_f, fac_f, fc_f, ec_f, pref_f, self.weights, self.solver, self.solver_args
            )
        if zero_slack:
            eps = torch.zeros_like(eps)
        unflat = lambda x, tail: x.reshape(*lead, *tail).to(out_dtype)  # noqa: E731
        return QPSolution(unflat(p, (N, 2)), unflat(lam_c, (N, 2)), unflat(lam_e, (E, 2)), unflat(eps, (3,)))


def solve_inverse_dynamics(
    wrench: torch.Tensor,
    jacobian: torch.Tensor,
    finger_facets: torch.Tensor,
    finger_cones: torch.Tensor,
    env_cones: torch.Tensor,
    reference_points: torch.Tensor | None = None,
    *,
    backend: str = "torch",
    zero_slack: bool = False,
    **options: Any,
) -> QPSolution:
    """Functional form of :class:`InverseDynamicsQP` (``options`` are its constructor arguments).

    N and E are read from ``finger_cones`` and ``env_cones``. The cvxpylayers
    problem is built once per configuration and cached.
    """
    fc = _as_tensor("finger_cones", finger_cones)
    ec = _as_tensor("env_cones", env_cones)
    if fc.ndim < 3 or ec.ndim < 3:
        raise ValueError(
            f"finger_cones must have shape (B, T, N, 2, 2) and env_cones (B, T, E, 2, 2); "
            f"got {tuple(fc.shape)} and {tuple(ec.shape)}"
        )
    options.setdefault("num_fingers", fc.shape[-3])
    options.setdefault("num_env_contacts", ec.shape[-3])
    layer = InverseDynamicsQP(backend, **options)
    return layer(wrench, jacobian, finger_facets, fc, ec, reference_points, zero_slack=zero_slack)


# --------------------------------------------------------------------------- random problems and benchmark


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def random_qp_problem(
    batch: int,
    horizon: int = DEFAULT_CONFIG.horizon,
    *,
    num_fingers: int = DEFAULT_CONFIG.num_fingers,
    num_env_contacts: int = DEFAULT_NUM_ENV_CONTACTS,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    empty_env_prob: float = 0.25,
    sliding_env_prob: float = 0.25,
    mass: float = DEFAULT_CONFIG.mass,
    gravity: float = DEFAULT_CONFIG.gravity,
) -> dict[str, torch.Tensor]:
    """Random, physically shaped QP inputs (a mix of feasible and infeasible wrenches).

    Centroid at the origin; each finger sits on a random facet (segment 2-20 cm
    long, 5-20 cm from the centroid) with its cone of random friction
    (mu in [0.2, 0.9]) pointing into the object; ground slots lie at y = -0.1 with
    sticking, sliding (both rays equal) or empty (zero rays) cones; J is built
    from the reference points as in :func:`dlm_gym.mechanics.contact_jacobian`;
    the wrench is ``m (a + g e_y)`` plus a random torque. Returns the keyword
    arguments of :class:`InverseDynamicsQP`'s forward.
    """
    rng = np.random.default_rng(seed)
    B, T, N, E = batch, horizon, num_fingers, num_env_contacts
    shape = (B, T, N)
    ang = rng.uniform(0, 2 * np.pi, shape)
    radial = np.stack([np.cos(ang), np.sin(ang)], -1)
    centre = radial * rng.uniform(0.05, 0.2, shape)[..., None]
    tang_ang = ang + np.pi / 2 + rng.uniform(-0.6, 0.6, shape)
    t = np.stack([np.cos(tang_ang), np.sin(tang_ang)], -1)
    n_out = np.stack([t[..., 1], -t[..., 0]], -1)
    flip = (n_out * centre).sum(-1) < 0  # outward normal points away from the centroid
    t[flip] *= -1
    n_out[flip] *= -1
    half = rng.uniform(0.01, 0.1, shape)[..., None]
    facets = np.stack([centre - half * t, centre + half * t], axis=-2)
    mu = rng.uniform(0.2, 0.9, shape)[..., None]
    fcones = np.stack([_unit(-n_out - mu * t), _unit(-n_out + mu * t)], axis=-2)
    pref = centre + t * half * rng.uniform(-1.4, 1.4, shape)[..., None] + 0.01 * rng.normal(size=shape + (2,))

    mu_e = rng.uniform(0.2, 0.9, (B, T, E))[..., None]
    one = np.ones_like(mu_e)
    econes = np.stack([_unit(np.concatenate([-mu_e, one], -1)), _unit(np.concatenate([mu_e, one], -1))], -2)
    u = rng.uniform(size=(B, T, E))
    sliding = u < sliding_env_prob
    econes[sliding] = econes[sliding][:, rng.integers(0, 2), :][:, None, :].repeat(2, axis=1)
    empty = (u >= sliding_env_prob) & (u < sliding_env_prob + empty_env_prob)
    econes[empty] = 0.0
    epoints = np.stack([rng.uniform(-0.15, 0.15, (B, T, E)), np.full((B, T, E), -0.1)], -1)
    epoints[empty] = 0.0

    points = np.concatenate([pref, epoints], axis=2)  # lever arms about the centroid
    J = np.zeros((B, T, 3, N + E, 2))
    J[:, :, 0, :, 0] = 1.0
    J[:, :, 1, :, 1] = 1.0
    J[:, :, 2, :, 0] = -points[..., 1]
    J[:, :, 2, :, 1] = points[..., 0]
    J = J.reshape(B, T, 3, 2 * (N + E))
    acc = rng.normal(scale=3.0, size=(B, T, 3))
    acc[..., 2] *= 10.0
    inertia = mass * 0.2**2 / 6.0
    wrench = acc * np.array([mass, mass, inertia])
    wrench[..., 1] += mass * gravity
    as_t = lambda x: torch.as_tensor(x, dtype=dtype)  # noqa: E731
    return {
        "wrench": as_t(wrench),
        "jacobian": as_t(J),
        "finger_facets": as_t(facets),
        "finger_cones": as_t(fcones),
        "env_cones": as_t(econes),
        "reference_points": as_t(pref),
    }


def _time_backend(
    layer: InverseDynamicsQP, problem: dict[str, torch.Tensor], repeats: int, warmup: int
) -> tuple[float, float]:
    """Median forward and backward seconds (whole batch) with gradients w.r.t. every input."""
    gen = torch.Generator().manual_seed(0)
    fwd, bwd = [], []
    for i in range(warmup + repeats):
        inputs = {k: v.detach().clone().requires_grad_(True) for k, v in problem.items()}
        t0 = time.perf_counter()
        sol = layer(**inputs)
        t1 = time.perf_counter()
        loss = sum((x * torch.randn(x.shape, generator=gen, dtype=x.dtype)).sum() for x in sol)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        if i >= warmup:
            fwd.append(t1 - t0)
            bwd.append(t3 - t2)
    return float(np.median(fwd)), float(np.median(bwd))


def bench_qp(
    batch: int,
    *,
    backends: Sequence[str] = ("torch", "cvxpylayers", "cvxpylayers:Clarabel"),
    horizon: int = DEFAULT_CONFIG.horizon,
    repeats: int | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> dict:
    """Time the QP layer: forward and backward seconds per sample (a sample is T keyframes).

    ``backends`` are backend names, optionally ``"cvxpylayers:<solver>"``.
    Returns ``{"qp_forward_s", "qp_backward_s"}`` for the fastest one (by forward
    + backward), ``"qp_fastest_backend"``, and per backend ``"<name>_forward_s"``
    / ``"<name>_backward_s"`` (``name`` with ``:`` replaced by ``_``, lower case).
    Inputs are :func:`random_qp_problem` in ``dtype`` with gradients w.r.t. all
    of them; the backward includes a random linear loss of every output. Medians
    over ``repeats`` (default 50 for torch, 3 for cvxpylayers) after warm-up.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    problem = random_qp_problem(batch, horizon, seed=seed, dtype=dtype)
    out: dict[str, Any] = {"qp_batch": batch, "qp_horizon": horizon, "qp_threads": torch.get_num_threads()}
    best = None
    for spec in backends:
        backend, _, solver = spec.partition(":")
        layer = InverseDynamicsQP(backend, **({"solver": solver} if solver else {}))
        fast = backend == "torch"
        reps = repeats if repeats is not None else (50 if fast else 3)
        f, b = _time_backend(layer, problem, reps, warmup=5 if fast else 1)
        key = spec.replace(":", "_").lower()
        out[f"{key}_forward_s"] = f / batch
        out[f"{key}_backward_s"] = b / batch
        if best is None or f + b < best[1] + best[2]:
            best = (spec, f, b)
    if best is None:
        raise ValueError("bench_qp needs at least one backend")
    out["qp_fastest_backend"] = best[0]
    out["qp_forward_s"] = best[1] / batch
    out["qp_backward_s"] = best[2] / batch
    return out
