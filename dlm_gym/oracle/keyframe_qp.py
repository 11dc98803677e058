"""The oracle's per-keyframe force QPs (eq. 12 for fixed contacts) and how their feasibility is decided.

For a fixed contact combination (one candidate per finger) the MIQP of
:mod:`dlm_gym.oracle` separates per keyframe t into a tiny convex QP::

    min   q_lambda sum_c ||lambda_c(t)||^2
    s.t.  sum_c J_c(t) lambda_c(t) + sum_e J_e(t) lambda_e(t) = M r''(t) + G
          lambda_c = Gamma_c a_c, a_c >= 0,  lambda_e = Gamma_e b_e, b_e >= 0,  |lambda_c| <= F

(4 finger ray multipliers for N = 2, up to 4 ground multipliers, 3
equalities, box bounds). :func:`solve_keyframe_qps` solves a batch of them,
one per (combination, keyframe): in closed form where possible
(:func:`two_fingers_airborne`), with the batched interior-point method
(:func:`dlm_gym.oracle.ipm.solve_batched_qp`) on an elastic reformulation
otherwise, and with Clarabel (:func:`clarabel_keyframe_qp`) for the few it
leaves undecided.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dlm_gym.config import SceneConfig
from dlm_gym.dynamics import required_wrench
from dlm_gym.mechanics import env_contacts_for
from dlm_gym.oracle.candidates import ContactCandidates
from dlm_gym.oracle.ipm import (
    IPM_ACCEPT,
    BatchedQPResult,
    solve_batched_qp,
    solve_spd3x3,
)
from dlm_gym.task import Task

__all__ = [
    "ELASTIC_PENALTY",
    "FEASIBILITY_TOLERANCE",
    "KeyframeData",
    "KeyframeQP",
    "clarabel_keyframe_qp",
    "dense_keyframe_qp",
    "elastic_qp_inputs",
    "keyframe_data",
    "keyframe_forces",
    "solve_keyframe_qps",
    "two_fingers_airborne",
]

FEASIBILITY_TOLERANCE = 1e-6
"""Largest wrench residual (N, and N m / object_radius for torque) still counted as feasible."""


ELASTIC_PENALTY = 1e6
"""N^-1 price of a unit wrench residual in the elastic QP (exact once above the multipliers)."""


@dataclasses.dataclass
class KeyframeData:
    """Per keyframe and candidate: the QP data, torque rows scaled by 1 / object_radius.

    Dividing the torque row by rho makes it a force in newtons, so the three
    equality rows share one scale (and one :data:`FEASIBILITY_TOLERANCE`).

    Attributes:
        G: ``(T, C, 2, 2)`` the candidate's friction-cone rays Gamma_c(t) as columns (rows x, y).
        tq: ``(T, C, 2)`` scaled torque of each ray about the object's centre.
        Ae: ``(T, 3, R)`` ground-ray wrench columns (R = 2 E, the rays of
            :func:`dlm_gym.mechanics.env_contacts_for`), scaled torque row.
        ce: ``(T, R)`` 1 on the rays of empty ground slots (a linear cost drives them to 0), else 0.
        w: ``(T, 3)`` required wrench ``M r''(t) + G``, scaled torque.
        scale: rho, the object radius the torques were divided by.
    """

    G: np.ndarray
    tq: np.ndarray
    Ae: np.ndarray
    ce: np.ndarray
    w: np.ndarray
    scale: float


def keyframe_data(task: Task, cands: ContactCandidates, config: SceneConfig) -> KeyframeData:
    """The per-keyframe QP data of every candidate of a task (see :class:`KeyframeData`)."""
    rho = config.object_radius  # torque in N m / rho is a force in N: the rows get comparable scales
    traj = task.trajectory
    d = cands.positions - traj[:, None, :2]
    rays = cands.cones  # (T, C, ray, xy)
    tq = (d[..., None, 0] * rays[..., 1] - d[..., None, 1] * rays[..., 0]) / rho
    env = env_contacts_for(task, config)
    de = env.points - traj[:, None, :2]
    er = env.cones  # (T, E, ray, xy)
    etq = (de[..., None, 0] * er[..., 1] - de[..., None, 1] * er[..., 0]) / rho
    T = traj.shape[0]
    Ae = np.concatenate(
        [
            er[..., 0].reshape(T, 1, -1),
            er[..., 1].reshape(T, 1, -1),
            etq.reshape(T, 1, -1),
        ],
        axis=1,
    )
    empty = np.abs(er).sum(-1).reshape(T, -1) == 0
    w = required_wrench(task.polygon, traj, config).copy()
    w[:, 2] /= rho
    return KeyframeData(np.swapaxes(rays, -1, -2), tq, Ae, empty.astype(np.float64), w, rho)


def _det3(A: np.ndarray, i: int, j: int, k: int) -> np.ndarray:
    """Determinant of columns i, j, k of ``A (3, n, B)``."""
    a, b, c = A[:, i], A[:, j], A[:, k]
    return a[0] * (b[1] * c[2] - b[2] * c[1]) - b[0] * (a[1] * c[2] - a[2] * c[1]) + c[0] * (a[1] * b[2] - a[2] * b[1])


def two_fingers_airborne(
    G: np.ndarray, tq: np.ndarray, w: np.ndarray, *, q: float, F: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact closed-form solution of the keyframe QP for two fingers and no ground contact.

    The 4 ray multipliers x obey 3 equations ``A x = w``. When A has rank 3
    they form the line ``x = x0 + s n`` (x0 the least-norm solution, n the
    null vector, from signed 3x3 minors), the cones and force bounds cut it
    to an interval of s, and the cost, convex quadratic in s, is minimised by
    clipping its stationary point to that interval.

    Returns ``a (2, 2, B)``, ``feasible (B,)`` and ``good (B,)``; where A is
    (nearly) rank deficient ``good`` is False and the caller uses the
    interior-point method instead. An interval empty by less than 1e-12 N
    (rounding) counts as a point.
    """
    B = w.shape[-1]
    A = np.concatenate([G, tq[:, None]], axis=1)  # (2, 3, 2, B): finger, row, ray
    A = np.moveaxis(A, 0, 1).reshape(3, 4, B)
    n = np.stack([_det3(A, 1, 2, 3), -_det3(A, 0, 2, 3), _det3(A, 0, 1, 3), -_det3(A, 0, 1, 2)])
    AAt = (A[:, None] * A[None]).sum(2)
    # Cauchy-Binet: |n|^2 = det(A A^T); compare it with the rows' scale.
    nn = (n * n).sum(0)
    good = nn > 1e-10 * AAt[0, 0] * AAt[1, 1] * AAt[2, 2]
    n = n / np.sqrt(np.where(good, nn, 1.0))
    x0 = (A * solve_spd3x3(np.where(good, AAt, np.eye(3)[:, :, None]), w)[:, None]).sum(0)  # (4, B)
    f0 = (G * x0.reshape(2, 1, 2, B)).sum(2)  # (2 fingers, 2 comps, B)
    fn = (G * n.reshape(2, 1, 2, B)).sum(2)
    # Every constraint has the form  c + s d >= 0.
    c = np.concatenate([x0, (F - f0).reshape(4, B), (F + f0).reshape(4, B)])
    d = np.concatenate([n, -fn.reshape(4, B), fn.reshape(4, B)])
    ratio = -c / np.where(d == 0, 1.0, d)
    lo = np.where(d > 0, ratio, -np.inf).max(0)
    hi = np.where(d < 0, ratio, np.inf).min(0)
    feasible = (lo <= hi + 1e-12) & np.all((d != 0) | (c >= -1e-12), axis=0)
    s_star = -(f0 * fn).sum((0, 1)) / np.maximum((fn * fn).sum((0, 1)), 1e-300)
    s = np.clip(s_star, lo, np.maximum(lo, hi))
    x = np.maximum(x0 + s * n, 0.0)
    return x.reshape(2, 2, B), feasible & good, good


@dataclasses.dataclass
class KeyframeQP:
    """One keyframe QP in dense form, over ``x = (a_1, ..., a_N, beta)`` (``n = 2 N + R``)::

        min  1/2 x^T P x + c^T x   s.t.  Aeq x = beq,  x >= 0,  -F <= box x <= F

    Attributes:
        P: ``(n, n)`` Hessian, ``2 q G_c^T G_c`` on the finger blocks.
        c: ``(n,)`` linear cost: 1 on the rays of empty ground slots.
        Aeq: ``(3, n)`` the wrench rows.
        beq: ``(3,)`` the required wrench.
        box: ``(2 N, n)`` the finger forces ``G_c a_c``.
        F: the force limit.
    """

    P: np.ndarray
    c: np.ndarray
    Aeq: np.ndarray
    beq: np.ndarray
    box: np.ndarray
    F: float


def dense_keyframe_qp(data: KeyframeData, combo: np.ndarray, t: int, *, q: float, F: float) -> KeyframeQP:
    """The QP of contact combination ``combo`` at keyframe ``t`` as dense matrices (for general solvers)."""
    N, R = combo.size, data.Ae.shape[2]
    G, tq = data.G[t, combo], data.tq[t, combo]  # (N, 2, 2), (N, 2)
    n = 2 * N + R
    Aeq = np.zeros((3, n))
    box = np.zeros((2 * N, n))
    P = np.zeros((n, n))
    for c in range(N):
        cols = slice(2 * c, 2 * c + 2)
        Aeq[:2, cols], Aeq[2, cols] = G[c], tq[c]
        box[2 * c : 2 * c + 2, cols] = G[c]
        P[cols, cols] = 2.0 * q * G[c].T @ G[c]
    Aeq[:, 2 * N :] = data.Ae[t]
    cost = np.concatenate([np.zeros(2 * N), data.ce[t]])
    return KeyframeQP(P, cost, Aeq, data.w[t], box, F)


def clarabel_keyframe_qp(
    data: KeyframeData, combo: np.ndarray, t: int, *, q: float, F: float
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """One keyframe QP with Clarabel: ``(a (N, 2), beta (R,))``, or ``(None, None)`` if infeasible.

    The fallback for the few problems the batched method leaves undecided.
    Clarabel detects infeasibility with a certificate; a solve that ends in
    any other failure is also reported as infeasible, so a doubtful contact
    pair is dropped rather than planned with.
    """
    import clarabel
    import scipy.sparse as sp

    N = combo.size
    qp = dense_keyframe_qp(data, combo, t, q=q, F=F)
    n = qp.P.shape[0]
    # Rows: equality (zero cone), -x <= 0 and +-G a <= F (nonnegative cone).
    A = np.vstack([qp.Aeq, -np.eye(n), qp.box, -qp.box])
    b = np.concatenate([qp.beq, np.zeros(n), np.full(4 * N, F)])
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = 1e-10
    settings.tol_feas = 1e-10
    solver = clarabel.DefaultSolver(
        sp.csc_matrix(np.triu(qp.P)),
        qp.c,
        sp.csc_matrix(A),
        b,
        [clarabel.ZeroConeT(3), clarabel.NonnegativeConeT(n + 4 * N)],
        settings,
    )
    sol = solver.solve()
    if sol.status not in (
        clarabel.SolverStatus.Solved,
        clarabel.SolverStatus.AlmostSolved,
    ):
        return None, None
    x = np.maximum(np.asarray(sol.x), 0.0)
    if np.abs(qp.Aeq @ x - qp.beq).max() > FEASIBILITY_TOLERANCE:
        return None, None
    return x[: 2 * N].reshape(N, 2), x[2 * N :]


def elastic_qp_inputs(
    data: KeyframeData, combos: np.ndarray, keyframes: np.ndarray, penalty: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Arguments ``(G, tq, Au, cu, w)`` of :func:`~dlm_gym.oracle.ipm.solve_batched_qp` for a batch.

    The "other" variables ``u`` are the R ground-ray multipliers beta followed
    by the elastic slacks ``s+, s-`` (3 each) on the wrench equality, priced at
    ``penalty`` per newton (see :func:`solve_keyframe_qps`); the closed form
    passes 0 and reads only ``G``, ``tq`` and ``w``.

    Args:
        combos: ``(B, N)`` candidate indices per problem.
        keyframes: ``(B,)`` keyframe per problem.
    """
    t = keyframes
    G = np.ascontiguousarray(np.moveaxis(data.G[t[:, None], combos], 0, -1))  # (N, 2, 2, B)
    tq = np.ascontiguousarray(np.moveaxis(data.tq[t[:, None], combos], 0, -1))  # (N, 2, B)
    b = t.size
    eye = np.broadcast_to(np.eye(3)[:, :, None], (3, 3, b))
    Au = np.concatenate([np.moveaxis(data.Ae[t], 0, -1), eye, -eye], axis=1)
    cu = np.concatenate([data.ce[t].T, np.full((6, b), penalty)], axis=0)
    w = np.ascontiguousarray(data.w[t].T)
    return G, tq, Au, cu, w


def solve_keyframe_qps(
    data: KeyframeData,
    combos: np.ndarray,
    keyframes: np.ndarray,
    config: SceneConfig,
    q: float,
    *,
    closed_form: bool = True,
) -> tuple[np.ndarray, np.ndarray, BatchedQPResult]:
    """Force cost and feasibility of each (contact combination, keyframe) QP.

    Args:
        combos: ``(B, N)`` candidate indices per problem.
        keyframes: ``(B,)`` keyframe per problem.
        closed_form: solve two-finger problems without ground contact in
            closed form (:func:`two_fingers_airborne`); False sends every
            problem to the interior-point method (used by the tests).

    Returns ``(cost (B,), feasible (B,), raw result)`` with cost = inf where infeasible.

    In the interior-point path feasibility is decided exactly (up to
    :data:`FEASIBILITY_TOLERANCE`): the QP is first solved in elastic form,
    with nonnegative slacks ``s+ - s-`` on the wrench equality priced at
    P = :data:`ELASTIC_PENALTY` per newton. A feasible problem with optimal
    cost C* has an elastic optimum of at most C*, hence slacks summing to at
    most C* / P <= C_max / P, where C_max = 2 N q F^2 bounds any force cost
    under the box. So at a converged elastic optimum a residual above
    C_max / P proves infeasibility, and a residual within tolerance proves
    feasibility (and then, the penalty being exact, optimality). The few
    problems in between, and the rare ones (about 0.1 %) where the
    interior-point method did not converge, are handed one by one to
    Clarabel (:func:`clarabel_keyframe_qp`), which certifies infeasibility
    itself.
    """
    N = combos.shape[1]
    F = config.force_limit
    B = combos.shape[0]
    R = data.Ae.shape[2]

    def build(sel: np.ndarray, penalty: float) -> tuple:
        return elastic_qp_inputs(data, combos[sel], keyframes[sel], penalty)

    res = BatchedQPResult(np.zeros((N, 2, B)), np.zeros((R + 6, B)), np.zeros(B), np.zeros(B), np.zeros(B))
    residual = np.zeros(B)
    todo = np.arange(B)
    with np.errstate(all="ignore"):
        if closed_form and N == 2:
            air = np.flatnonzero(data.ce[keyframes].all(axis=1))
            if air.size:
                G, tq, _, _, w = build(air, 0.0)
                a, feas, good = two_fingers_airborne(G, tq, w, q=q, F=F)
                done = air[good]
                res.a[..., done] = a[..., good]
                residual[done] = np.where(feas[good], 0.0, np.inf)
                todo = np.setdiff1d(todo, done, assume_unique=True)
        if todo.size:
            sub = solve_batched_qp(*build(todo, ELASTIC_PENALTY), q=q, F=F)
            sub_res = sub.u[R:].sum(0)
            c_max = 2.0 * N * q * F * F
            unsure = (sub_res > FEASIBILITY_TOLERANCE) & (sub_res <= c_max / ELASTIC_PENALTY)
            for k in np.flatnonzero(unsure | (sub.measure > IPM_ACCEPT)):
                b = todo[k]
                a, beta = clarabel_keyframe_qp(data, combos[b], int(keyframes[b]), q=q, F=F)
                if a is None:
                    sub_res[k] = np.inf
                else:
                    sub.a[..., k], sub.u[:R, k], sub.u[R:, k], sub_res[k] = (
                        a,
                        beta,
                        0.0,
                        0.0,
                    )
                    sub.gap[k] = sub.measure[k] = 0.0
            res.a[..., todo], res.u[:, todo] = sub.a, sub.u
            res.objective[todo], res.gap[todo], res.measure[todo] = (
                sub.objective,
                sub.gap,
                sub.measure,
            )
            residual[todo] = sub_res
    feasible = residual <= FEASIBILITY_TOLERANCE
    f = (np.moveaxis(data.G[keyframes[:, None], combos], 0, -1) * res.a[:, None]).sum(2)
    cost = np.where(feasible, q * (f * f).sum((0, 1)), np.inf)
    return cost, feasible, res


def keyframe_forces(res: BatchedQPResult, data: KeyframeData, combo: np.ndarray, T: int, E: int) -> tuple:
    """Finger and ground forces ``(T, N, 2)``, ``(T, E, 2)`` of a combination's per-keyframe QP solutions."""
    G = data.G[np.arange(T)[:, None], combo[None, :]]  # (T, N, 2, 2)
    fingers = np.einsum("tcij,cjt->tci", G, res.a)
    R = 2 * E
    beta = res.u[:R].T.reshape(T, E, 2)  # (T, E, ray)
    rays = np.stack([data.Ae[:, 0, :R], data.Ae[:, 1, :R]], axis=-1).reshape(T, E, 2, 2)  # (T, E, ray, xy)
    ground = np.einsum("tek,teki->tei", beta, rays)
    return fingers, ground
