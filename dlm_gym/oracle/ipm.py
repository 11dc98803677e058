"""A batched primal-dual interior-point method for many tiny QPs of one structure.

Generic: it knows nothing of contacts or keyframes. The oracle
(:mod:`dlm_gym.oracle.keyframe_qp`) maps its per-keyframe force QPs onto the
structure below; see :func:`solve_batched_qp`.

Why hand-written: the oracle solves thousands of QPs with about 10 variables
per task, and a general solver called once per QP spends most of its time in
per-call overhead. Here every iteration is a few dozen NumPy operations over
the whole batch, the Newton system being reduced by hand to a 3x3 system per
problem (``examples/qp_solver_benchmark.py`` measures the trade-off).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

__all__ = [
    "IPM_ACCEPT",
    "BatchedQPResult",
    "inv2x2",
    "solve_batched_qp",
    "solve_spd3x3",
]

IPM_ACCEPT = 1e-6
"""Scaled KKT violation up to which an interior-point solution is trusted."""


def inv2x2(H: np.ndarray) -> np.ndarray:
    """Inverse of a stack of 2x2 matrices ``(..., 2, 2, B)``."""
    a, b, c, d = H[..., 0, 0, :], H[..., 0, 1, :], H[..., 1, 0, :], H[..., 1, 1, :]
    det = a * d - b * c
    out = np.empty_like(H)
    out[..., 0, 0, :] = d / det
    out[..., 0, 1, :] = -b / det
    out[..., 1, 0, :] = -c / det
    out[..., 1, 1, :] = a / det
    return out


def solve_spd3x3(S: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Solve symmetric positive definite 3x3 systems ``S (3, 3, B) x = r (3, B)`` by Cholesky."""
    l00 = np.sqrt(S[0, 0])
    l10 = S[1, 0] / l00
    l20 = S[2, 0] / l00
    l11 = np.sqrt(S[1, 1] - l10 * l10)
    l21 = (S[2, 1] - l20 * l10) / l11
    l22 = np.sqrt(S[2, 2] - l20 * l20 - l21 * l21)
    y0 = r[0] / l00
    y1 = (r[1] - l10 * y0) / l11
    y2 = (r[2] - l20 * y0 - l21 * y1) / l22
    x2 = y2 / l22
    x1 = (y1 - l21 * x2) / l11
    x0 = (y0 - l10 * x1 - l20 * x2) / l00
    return np.stack([x0, x1, x2])


def _max_step(pairs: list[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """Largest t in (0, 1] keeping every ``x + t dx`` nonnegative (per problem, batch last)."""
    t = np.ones(n)
    for x, dx in pairs:
        neg = dx < 0
        ratio = np.where(neg, x / np.where(neg, -dx, 1.0), np.inf)
        t = np.minimum(t, ratio.reshape(-1, n).min(axis=0))
    return t


class _Newton(NamedTuple):
    """One iteration's iterate, residuals and factorised reduced Newton system."""

    a: np.ndarray
    u: np.ndarray
    za: np.ndarray
    zu: np.ndarray
    zh: np.ndarray
    zl: np.ndarray
    sh: np.ndarray
    sl: np.ndarray
    G: np.ndarray
    A: np.ndarray
    Au: np.ndarray
    Hi: np.ndarray
    AHi: np.ndarray
    S: np.ndarray
    Du: np.ndarray
    ra: np.ndarray
    ru: np.ndarray
    rp: np.ndarray
    rh: np.ndarray
    rl: np.ndarray


def _direction(nt: _Newton, rca: np.ndarray, rcu: np.ndarray, rch: np.ndarray, rcl: np.ndarray) -> tuple:
    """Newton direction for complementarity right-hand sides ``rca, rcu, rch, rcl`` (predictor or corrector)."""
    a, u, za, zu, zh, zl, sh, sl, G, A, Au, Hi, AHi, S, Du, ra, ru, rp, rh, rl = nt
    # Box slacks obey dsh = -rh - G da and dsl = -rl + G da.
    rch2 = rch + zh * rh
    rcl2 = rcl + zl * rl
    ga = -ra + rca / a - (G * (rch2 / sh - rcl2 / sl)[:, :, None]).sum(1)
    gu = -ru + rcu / u
    rhs = -rp - (AHi * ga[:, None]).sum((0, 2)) - (Au * (gu / Du)[None]).sum(1)
    dy = solve_spd3x3(S, rhs)
    da = (Hi * (ga + (A * dy[None, :, None]).sum(1))[:, None]).sum(2)
    du = (gu + (Au * dy[:, None]).sum(0)) / Du
    dza = (rca - za * da) / a
    dzu = (rcu - zu * du) / u
    df = (G * da[:, None]).sum(2)
    dsh, dsl = -rh - df, -rl + df
    dzh = (rch - zh * dsh) / sh
    dzl = (rcl - zl * dsl) / sl
    return da, du, dy, dza, dzu, dsh, dsl, dzh, dzl


@dataclasses.dataclass
class BatchedQPResult:
    """The returned iterate of :func:`solve_batched_qp` (batch on the last axis).

    Attributes:
        a: ``(N, 2, B)`` the paired variables of the N blocks.
        u: ``(m, B)`` the other nonnegative variables.
        objective: ``(B,)`` objective value at the returned iterate.
        gap: ``(B,)`` complementarity (duality gap) at the returned iterate.
        measure: ``(B,)`` max scaled KKT violation of the returned iterate;
            compare with :data:`IPM_ACCEPT` before trusting it.
    """

    a: np.ndarray
    u: np.ndarray
    objective: np.ndarray
    gap: np.ndarray
    measure: np.ndarray


def solve_batched_qp(
    G: np.ndarray,
    tq: np.ndarray,
    Au: np.ndarray,
    cu: np.ndarray,
    w: np.ndarray,
    *,
    q: float,
    F: float,
    tol: float = 1e-9,
    max_iter: int = 60,
) -> BatchedQPResult:
    """Solve B independent small QPs at once (batch on the last axis)::

        min   q sum_c ||G_c a_c||^2 + cu^T u
        s.t.  sum_c A_c a_c + Au u = w,   A_c = [G_c; tq_c]   (3 x 2)
              a >= 0,  u >= 0,  -F <= G_c a_c <= F

    ``G (N, 2, 2, B)`` maps each block's two variables to a bounded 2-vector
    (in the oracle: a finger's ray multipliers to its force), ``tq (N, 2, B)``
    is the third equality row of each block, ``Au (3, m, B)``/``cu (m, B)``
    the columns and linear costs of the other nonnegative variables. ``G_c``
    must be invertible (2x2 Newton blocks are inverted in closed form).

    A primal-dual interior-point method with Mehrotra's predictor-corrector,
    started from an infeasible point. The box slacks are separate iterates
    (computing them as ``F - G a`` loses all precision next to an active
    bound). The Newton system reduces, through the 2x2 blocks and the
    diagonal of the other variables, to a 3x3 system per problem, so each
    iteration is a few dozen vectorised NumPy operations. Problems retire once
    their scaled KKT violation is below ``tol`` or stops improving; the best
    iterate is returned with its violation in ``measure``. Nothing here
    detects infeasibility: the caller decides it (the oracle does so with an
    elastic reformulation, :func:`dlm_gym.oracle.solve_keyframe_qps`).
    """
    N, _, _, B = G.shape
    m = Au.shape[1]
    A = np.concatenate([G, tq[:, None]], axis=1)  # (N, 3, 2, B)
    n_ineq = 6 * N + m

    out_a = np.zeros((N, 2, B))
    out_u = np.zeros((m, B))
    out_obj = np.full(B, np.inf)
    out_gap = np.full(B, np.inf)
    best = np.full(B, np.inf)
    idx = np.arange(B)

    a = np.ones((N, 2, B))
    u = np.ones((m, B))
    za = np.ones((N, 2, B))
    zu = np.maximum(cu, 1.0)
    f0 = (G * a[:, None]).sum(2)
    sh, sl = F - f0, F + f0
    zh = np.ones((N, 2, B))
    zl = np.ones((N, 2, B))
    y = np.zeros((3, B))
    wscale = 1.0 + np.abs(w).max(axis=0)
    cscale = 1.0 + np.abs(cu).max(axis=0)
    stall = np.zeros(B, dtype=np.int64)

    for _ in range(max_iter):
        f = (G * a[:, None]).sum(2)  # the bounded images G_c a_c (N, 2, B)
        Aty = (A * y[None, :, None]).sum(1)  # (N, 2, B)
        rh = sh + f - F
        rl = sl - f - F
        ra = 2.0 * q * (G * f[:, :, None]).sum(1) - Aty - za + (G * (zh - zl)[:, :, None]).sum(1)
        ru = cu - (Au * y[:, None]).sum(0) - zu
        rp = (A * a[:, None]).sum((0, 2)) + (Au * u[None]).sum(1) - w
        comp = (a * za).sum((0, 1)) + (u * zu).sum(0) + (sh * zh).sum((0, 1)) + (sl * zl).sum((0, 1))
        obj = q * (f * f).sum((0, 1)) + (cu * u).sum(0)
        pres = (
            np.maximum(
                np.abs(rp).max(0),
                np.maximum(np.abs(rh).max((0, 1)), np.abs(rl).max((0, 1))),
            )
            / wscale
        )
        dres = np.maximum(
            np.abs(ra).max((0, 1)) / (1.0 + np.abs(Aty).max((0, 1))),
            np.abs(ru).max(0) / cscale,
        )
        meas = np.maximum(np.maximum(pres, dres), comp / (1.0 + np.abs(obj)))
        meas = np.where(np.isfinite(meas), meas, np.inf)

        better = meas < best[idx]
        if better.any():
            k = idx[better]
            best[k] = meas[better]
            out_a[:, :, k], out_u[:, k] = a[:, :, better], u[:, better]
            out_obj[k], out_gap[k] = obj[better], comp[better]
        # Stalling only counts once the iterate is acceptable: early IPM
        # iterates need not improve the KKT violation monotonically.
        stall = np.where(better | (best[idx] > IPM_ACCEPT), 0, stall + 1)
        retire = (meas <= tol) | (stall >= 3) | ~np.isfinite(meas)
        if retire.any():
            keep = ~retire
            idx = idx[keep]
            if idx.size == 0:
                break
            a, u, za, zu, zh, zl, sh, sl, y = (v[..., keep] for v in (a, u, za, zu, zh, zl, sh, sl, y))
            G, A, tq, Au, cu, w = (v[..., keep] for v in (G, A, tq, Au, cu, w))
            rh, rl, ra, ru, rp, comp = (v[..., keep] for v in (rh, rl, ra, ru, rp, comp))
            wscale, cscale, stall = wscale[keep], cscale[keep], stall[keep]
        n = idx.size
        mu = comp / n_ineq

        # Reduced Newton system: 2x2 blocks H_c, diagonal Du, 3x3 Schur complement S.
        dh = zh / sh + zl / sl
        H = (G[:, :, :, None] * (2.0 * q + dh)[:, :, None, None] * G[:, :, None, :]).sum(1)
        H[:, 0, 0] += za[:, 0] / a[:, 0]
        H[:, 1, 1] += za[:, 1] / a[:, 1]
        Hi = inv2x2(H)
        Du = zu / u
        AHi = (A[:, :, :, None] * Hi[:, None]).sum(2)  # (N, 3, 2, n)
        S = (AHi[:, :, None] * A[:, None]).sum((0, 3)) + (Au[:, None] * Au[None] * (1.0 / Du)[None, None]).sum(2)

        newton = _Newton(a, u, za, zu, zh, zl, sh, sl, G, A, Au, Hi, AHi, S, Du, ra, ru, rp, rh, rl)

        da, du, dy, dza, dzu, dsh, dsl, dzh, dzl = _direction(newton, -a * za, -u * zu, -sh * zh, -sl * zl)
        steps = [
            (a, da),
            (u, du),
            (za, dza),
            (zu, dzu),
            (sh, dsh),
            (sl, dsl),
            (zh, dzh),
            (zl, dzl),
        ]
        t = _max_step(steps, n)
        comp_aff = (
            ((a + t * da) * (za + t * dza)).sum((0, 1))
            + ((u + t * du) * (zu + t * dzu)).sum(0)
            + ((sh + t * dsh) * (zh + t * dzh)).sum((0, 1))
            + ((sl + t * dsl) * (zl + t * dzl)).sum((0, 1))
        )
        sm = np.clip(comp_aff / (mu * n_ineq), 0.0, 1.0) ** 3 * mu
        da, du, dy, dza, dzu, dsh, dsl, dzh, dzl = _direction(
            newton,
            sm - a * za - da * dza,
            sm - u * zu - du * dzu,
            sm - sh * zh - dsh * dzh,
            sm - sl * zl - dsl * dzl,
        )
        steps = [
            (a, da),
            (u, du),
            (za, dza),
            (zu, dzu),
            (sh, dsh),
            (sl, dsl),
            (zh, dzh),
            (zl, dzl),
        ]
        t = np.minimum(0.99 * _max_step(steps, n), 1.0)
        a, u, y = a + t * da, u + t * du, y + t * dy
        za, zu = za + t * dza, zu + t * dzu
        sh, sl, zh, zl = sh + t * dsh, sl + t * dsl, zh + t * dzh, zl + t * dzl

    return BatchedQPResult(out_a, out_u, out_obj, out_gap, best)
