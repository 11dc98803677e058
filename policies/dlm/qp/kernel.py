"""The force kernel of the torch QP backend: batched nonnegative least squares, no autograd.

Per keyframe the forces solve ``min_{a >= 0} a^T H a - 2 c^T a`` (see
:mod:`policies.dlm.qp.problem`). :func:`nnls_free_set` finds the optimal free
set of every keyframe at once; :mod:`policies.dlm.qp.force_qp` wraps it in an
autograd function.

``"torch"`` (default, fast): the force NNLS of every keyframe at once, in
float64 whatever the input dtype. Block principal pivoting (Judice-Pires full
exchanges with Murty's single-pivot fallback) settles 97 % of keyframes in at
most 5 pivots; the rest are solved exactly by enumerating the 2^8 free sets.
The final solve on the optimal free set is a Cholesky solve with two steps of
iterative refinement on the least-squares residual (forces exact to ~1e-13 N
against scipy's NNLS). The backward is analytic implicit differentiation on
the optimal active set (one Cholesky solve; exact wherever the active set is
locally constant, i.e. almost everywhere). Contact points by a differentiable
clamp. Cholesky only, on one intra-op thread (see :func:`single_thread` and
docs/design.md's torch threading pitfall); the caller's thread setting is restored.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch

__all__ = [
    "single_thread",
    "masked_system",
    "cholesky",
    "chol_solve",
    "enumerate_free_set",
    "nnls_free_set",
    "ENUMERATE_MAX_N",
    "REFINE_STEPS",
]


@contextlib.contextmanager
def single_thread():
    """Run tiny batched kernels on one intra-op thread, then restore the setting.

    The per-keyframe systems are 8 x 8: threads only add wake-up cost. On a
    2-core machine with other load, one batched ``tril`` (inside Cholesky) was
    measured at ~6 ms with 2 OpenMP threads against ~10 us with 1, and docs/design.md
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


def masked_system(H: torch.Tensor, c: torch.Tensor, free: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The system whose solution is ``x_F = H_FF^{-1} c_F``, ``x_rest = 0`` (identity rows off the free set)."""
    m = free.to(H.dtype)
    Hm = H * (m.unsqueeze(-1) * m.unsqueeze(-2)) + torch.diag_embed(1.0 - m)
    return Hm, c * m


def cholesky(H: torch.Tensor) -> torch.Tensor:
    L, info = torch.linalg.cholesky_ex(H)
    if bool((info != 0).any()):  # cannot happen for q_ray > 0; a guard against non-finite data
        raise RuntimeError("inverse-dynamics QP: a reduced Hessian is not positive definite")
    return L


def chol_solve(L: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cholesky_solve(b.unsqueeze(-1), L).squeeze(-1)


@functools.lru_cache(maxsize=4)
def _all_subsets(n: int) -> torch.Tensor:
    """``(2^n, n)`` bool: every subset of n indices."""
    bits = torch.arange(2**n).unsqueeze(-1) >> torch.arange(n)
    return (bits & 1).bool()


def enumerate_free_set(H: torch.Tensor, c: torch.Tensor, rtol: float) -> torch.Tensor:
    """Exact optimal free set by enumeration (``n <= ENUMERATE_MAX_N``): for every subset F,
    ``x_F = H_FF^{-1} c_F``; among the primal-feasible ones (``x >= 0``) the optimum has the
    lowest objective ``x^T H x - 2 c^T x = -c^T x``.
    """
    R, n = c.shape
    subsets = _all_subsets(n).to(c.device)  # (S, n)
    S = subsets.shape[0]
    Hs = H.unsqueeze(1).expand(R, S, n, n).reshape(R * S, n, n)
    cs = c.unsqueeze(1).expand(R, S, n).reshape(R * S, n)
    free = subsets.unsqueeze(0).expand(R, S, n).reshape(R * S, n)
    Hm, cm = masked_system(Hs, cs, free)
    x = chol_solve(cholesky(Hm), cm).view(R, S, n)
    tol = rtol * x.abs().amax(-1, keepdim=True)
    feasible = (x >= -tol).all(-1)
    value = (c.unsqueeze(1) * x).sum(-1)  # -objective
    value = torch.where(feasible, value, torch.full_like(value, -math.inf))
    return subsets[value.argmax(-1)]


def nnls_free_set(
    H: torch.Tensor, c: torch.Tensor, max_iter: int, pivots_before_enumeration: int = 6, rtol: float = 1e-11
) -> tuple[torch.Tensor, int, int]:
    """Optimal free set of ``min x^T H x - 2 c^T x, x >= 0`` for SPD ``H`` (K, n, n).

    Block principal pivoting on the complementarity conditions ``x_F = H_FF^{-1} c_F >= 0``
    and ``y = H x - c >= 0`` off F: full exchange of all infeasible indices while their
    count keeps falling (with a budget of 3 non-improving full exchanges), else Murty's
    single exchange of the largest infeasible index (finite for P-matrices). Most problems
    finish in 1-3 pivots; after ``pivots_before_enumeration`` the few left are solved by
    enumeration when ``n <= ENUMERATE_MAX_N`` (exact, and cheaper than Murty's long tail),
    else pivoting goes on up to ``max_iter``.
    Returns ``(free (K, n) bool, iterations, number not converged)``.
    """
    K, n = c.shape
    free = chol_solve(cholesky(H), c) > 0  # start from the unconstrained minimiser's support
    dev = c.device
    best = torch.full((K,), n + 1, dtype=torch.long, device=dev)
    budget = torch.full((K,), 3, dtype=torch.long, device=dev)
    order = torch.arange(1, n + 1, dtype=torch.long, device=dev)
    scale_c = c.abs().amax(-1, keepdim=True)
    scale_h = H.abs().amax(dim=(-1, -2)).unsqueeze(-1)
    unconverged = K
    it = 0
    for it in range(1, max_iter + 1):
        Hm, cm = masked_system(H, c, free)
        x = chol_solve(cholesky(Hm), cm)
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
        if it >= pivots_before_enumeration and n <= ENUMERATE_MAX_N:
            idx = left.nonzero().squeeze(-1)
            free = free.clone()
            free[idx] = enumerate_free_set(H[idx], c[idx], rtol)
            return free, it + 1, 0
        improved = ninf < best
        best = torch.where(improved, ninf, best)
        use_full = improved | (budget > 0)
        budget = torch.where(improved, torch.full_like(budget, 3), torch.where(use_full, budget - 1, budget))
        last = (infeas.long() * order).argmax(-1)
        single = torch.nn.functional.one_hot(last, n).bool() & infeas
        free = free ^ torch.where(use_full.unsqueeze(-1), infeas, single)
    return free, it, unconverged


ENUMERATE_MAX_N = 12
"""Largest number of ray multipliers (2 (N + E)) for which stragglers are solved by enumeration."""

REFINE_STEPS = 2
"""Iterative-refinement steps of the final solve on the optimal free set."""
