"""The MIQP contact-trajectory oracle (paper eq. 11-12, Appendix A; DESIGN.md section 7).

It labels the data: for a :class:`~dlm_gym.task.Task` it finds globally
optimal finger contacts ``p_c(t)`` and forces ``lambda_c(t)`` that, together
with ground reactions ``lambda_e(t)``, produce the wrench the target motion
needs at every keyframe.

Formulation
-----------
Symbols follow the paper: N fingers c, T keyframes t, object poses r(t),
``M r''(t) + G`` the required wrench (:func:`dlm_gym.dynamics.required_wrench`),
``J(r)^T`` the contact Jacobian and FC the friction cones
(:mod:`dlm_gym.mechanics`).

* **Contact modes.** Each finger sticks at one body-fixed point of one facet
  for the whole horizon. The CoRL generator keeps one facet per finger; we also
  fix the point, because the simulated fingers grip by static friction and
  cannot slide along a facet faithfully. The point is chosen among K
  candidates per facet, at fractions ``(k + 0.5) / K`` along it
  (``candidates_per_facet``). A candidate is excluded when at some keyframe
  the contact point lies below ``finger_radius + CANDIDATE_GROUND_MARGIN`` or
  the finger disc touching it from outside would dip within
  ``CANDIDATE_GROUND_MARGIN`` of the ground (no finger fits under an object
  lying on the ground).
* **Binaries.** ``x_i`` in {0, 1} says whether candidate i is used;
  ``sum_i x_i = N`` and a candidate holds at most one finger. Fingers are
  interchangeable, so instead of one binary per (finger, candidate) we keep
  one per candidate and number the fingers by increasing candidate index
  (finger 1's candidate index < finger 2's): this removes the N! symmetric
  copies of each solution, and two fingers on one point are excluded (a
  second finger there adds nothing a single one cannot apply, and two
  pymunk discs cannot occupy one spot).
* **Physics (eq. 12), per keyframe t.** With the contact points fixed per
  candidate, the torque is linear in the forces, so no McCormick envelope is
  needed::

      sum_i J_i(t) lambda_i(t) + sum_e J_e(t) lambda_e(t) = M r''(t) + G
      lambda_i(t) = Gamma_i(t) a_i(t),   a_i(t) >= 0        (finger cone FC_c)
      lambda_e(t) = Gamma_e(t) b_e(t),   b_e(t) >= 0        (ground cone FC_e)
      -F x_i <= lambda_i(t) <= F x_i   (each component, F = force_limit)
      a_i1(t) + a_i2(t) <= A x_i       (A = sqrt(2 (1 + mu_c^2)) F, a valid big-M)

  The ground cones are those of :func:`dlm_gym.mechanics.env_contacts_for`
  (a single kinetic-friction edge where the ground contact slides).
* **Cost (eq. 11).** ``sum_t sum_c q_lambda ||lambda_c(t)||^2 + q_p ||p_c''(t)||^2``
  with ``p_c''`` the accelerations (:func:`dlm_gym.dynamics.acceleration_operator`)
  of the contact point's world trajectory. Because exactly one candidate is on
  per finger, ``sum_t ||p_c''(t)||^2`` is a constant per candidate and enters
  linearly in the binaries. Ground forces are not penalised. We take
  ``q_lambda = 1 N^-2`` (:data:`Q_LAMBDA`) and ``q_p = 0.1 s^4 m^-2``
  (:data:`Q_P`). Optimal force costs are a few hundred (forces of 5-20 N, 2
  fingers, 5 keyframes). The minimum-norm keyframe accelerations of a motion
  started at rest are large, ``sum_t ||p''||^2`` is 100-1000 m^2 s^-4 per
  contact, but most of it is the translation shared by every candidate; what
  differs between candidates (rotation times lever arm) is about 4 % of the
  cost at q_p = 0.1. Measured on 60 sampled tasks, the acceleration term
  changed the chosen contacts in 2 tasks, for at most 2.9 % more force cost
  than the force-only optimum: it breaks near-ties towards smooth finger
  motion without overriding the force optimum (at q_p = 1 it raised the
  force cost by up to 20 %).

Solvers
-------
Both backends are exact for this MIQP.

* ``backend="enum"`` (default, fastest): enumerate the N-subsets of the
  valid candidates. For fixed contacts the problem separates per keyframe
  into tiny convex QPs (4 finger ray multipliers, up to 4 ground multipliers,
  3 equalities, box bounds). Without ground contact and with N = 2 the 4
  multipliers are one line through a 3-equation system and the QP has a
  closed form (:func:`_two_fingers_airborne`); the others are all solved at
  once by a vectorised primal-dual interior-point method (Mehrotra
  predictor-corrector, :func:`_ipm`) written here in NumPy. Keyframes are
  processed one at a time, most constraining first; pairs infeasible at a
  keyframe are dropped, and pairs whose partial cost (their acceleration
  cost plus the force costs of the keyframes solved so far, a valid lower
  bound since every term is nonnegative) exceeds the incumbent are pruned.
  Infeasibility is decided by an elastic (L1-penalised) formulation, with
  Clarabel settling the rare undecided or unconverged cases, so an
  infeasible pair is never mistaken for a feasible one (see
  :func:`_solve_keyframe_qps`). The QPs are solved to a relative accuracy of
  about 1e-9.
* ``backend="scip"``: the MIQP above written in PySCIPOpt and solved to a
  relative gap ``rel_gap`` (default 1e-4). The quadratic cost is carried by
  one epigraph variable per candidate and keyframe.

Results come back as an :class:`OraclePlan` whose :meth:`OraclePlan.commands`
are the per-keyframe finger commands ``(x, y, f_x, f_y)`` the environment
takes.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import time
from typing import Literal

import numpy as np

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.dynamics import acceleration_operator, required_wrench
from dlm_gym.mechanics import (
    NUM_ENV_CONTACTS,
    MechanicalParameters,
    env_contacts_for,
    finger_geometry,
    mechanical_parameters,
)
from dlm_gym.task import Task

__all__ = [
    "Q_LAMBDA",
    "Q_P",
    "DEFAULT_CANDIDATES_PER_FACET",
    "CANDIDATE_GROUND_MARGIN",
    "FEASIBILITY_TOLERANCE",
    "BACKENDS",
    "OracleStatus",
    "OracleInfeasibleError",
    "OraclePlan",
    "ContactCandidates",
    "contact_candidates",
    "solve_oracle",
]

Q_LAMBDA = 1.0
"""q_lambda in N^-2: weight of the squared finger forces in eq. 11."""
Q_P = 0.1
"""q_p in s^4 m^-2: weight of the squared finger accelerations in eq. 11."""
DEFAULT_CANDIDATES_PER_FACET = 6
"""K, candidate contact points per facet."""
CANDIDATE_GROUND_MARGIN = 0.002
"""Metres of clearance a finger must keep from the ground."""
FEASIBILITY_TOLERANCE = 1e-6
"""Largest wrench residual (N, and N m / object_radius for torque) still counted as feasible."""
BACKENDS = ("enum", "scip")

Backend = Literal["enum", "scip"]


class OracleStatus(enum.Enum):
    """Outcome of an oracle solve."""

    OPTIMAL = "optimal"
    """Globally optimal within the requested relative gap."""
    FEASIBLE_WITH_GAP = "feasible_with_gap"
    """A feasible plan, but the time limit stopped the proof of optimality."""
    INFEASIBLE = "infeasible"
    """No plan with these contact candidates and force limits exists."""
    TIME_LIMIT = "time_limit"
    """The time limit passed before any feasible plan was found."""


class OracleInfeasibleError(RuntimeError):
    """The oracle found no plan (infeasible task or time limit); see the message."""


@dataclasses.dataclass
class OraclePlan:
    """The oracle's answer for one task.

    Attributes:
        status: see :class:`OracleStatus`.
        cost: value of eq. 11 (``inf`` without a plan).
        gap: relative optimality gap (0 when proven optimal within solver tolerance; ``inf`` without a plan).
        solve_time_s: wall time of the solve, in seconds.
        facets: ``(N,)`` facet index per finger (-1 without a plan).
        fractions: ``(N,)`` position along the facet (vertex f -> f + 1) per finger.
        finger_positions: ``(T, N, 2)`` world contact points p_c(t) in metres.
        finger_forces: ``(T, N, 2)`` world forces lambda_c(t) **on the object**, in newtons.
        env_forces: ``(T, E, 2)`` ground forces lambda_e(t) on the object, per slot.
        params: the mechanical parameters P(t) of the chosen contacts (None without a plan).
        backend: the solver used.
        force_cost: the ``q_lambda ||lambda||^2`` part of ``cost``.
        accel_cost: the ``q_p ||p''||^2`` part of ``cost``.
        message: a human-readable note on the outcome.
    """

    status: OracleStatus
    cost: float
    gap: float
    solve_time_s: float
    facets: np.ndarray
    fractions: np.ndarray
    finger_positions: np.ndarray
    finger_forces: np.ndarray
    env_forces: np.ndarray
    params: MechanicalParameters | None
    backend: str = ""
    force_cost: float = float("inf")
    accel_cost: float = float("inf")
    message: str = ""

    @property
    def ok(self) -> bool:
        """True when the plan is usable (optimal, or feasible with a gap)."""
        return self.status in (OracleStatus.OPTIMAL, OracleStatus.FEASIBLE_WITH_GAP)

    def raise_if_not_ok(self) -> "OraclePlan":
        """Return the plan, or raise :class:`OracleInfeasibleError` if it has no usable solution."""
        if not self.ok:
            raise OracleInfeasibleError(
                f"oracle ({self.backend}) returned {self.status.value} after {self.solve_time_s:.2f} s: {self.message}"
            )
        return self

    def commands(self) -> np.ndarray:
        """Per-keyframe finger commands ``(T, N, 4)``: ``(x, y, f_x, f_y)`` in metres and newtons.

        At keyframe t finger c sits at the contact point p_c(t) and pushes
        with lambda_c(t) (world frame, force on the object); this is exactly
        what the environment takes (see :mod:`dlm_gym.actions`).

        Raises:
            OracleInfeasibleError: if the plan is not :attr:`ok`.
        """
        self.raise_if_not_ok()
        return np.concatenate([self.finger_positions, self.finger_forces], axis=-1)


# --- candidates ---------------------------------------------------------------


@dataclasses.dataclass
class ContactCandidates:
    """The K candidate contact points per facet of a task and their geometry.

    Attributes:
        facets: ``(C,)`` facet of each candidate (C = N_F K).
        fractions: ``(C,)`` fraction along the facet.
        positions: ``(T, C, 2)`` world contact points.
        cones: ``(T, C, 2, 2)`` world friction-cone rays (pointing into the object).
        valid: ``(C,)`` False for candidates too close to the ground at some keyframe.
        accel_sq: ``(C,)`` ``sum_t ||p''(t)||^2`` of the candidate's world trajectory.
    """

    facets: np.ndarray
    fractions: np.ndarray
    positions: np.ndarray
    cones: np.ndarray
    valid: np.ndarray
    accel_sq: np.ndarray


def contact_candidates(
    task: Task,
    config: SceneConfig = DEFAULT_CONFIG,
    candidates_per_facet: int = DEFAULT_CANDIDATES_PER_FACET,
    *,
    ground_margin: float = CANDIDATE_GROUND_MARGIN,
) -> ContactCandidates:
    """Candidate contact points at fractions ``(k + 0.5) / K`` of every facet, with their geometry."""
    K = int(candidates_per_facet)
    if K < 1:
        raise ValueError(f"candidates_per_facet must be >= 1, got {candidates_per_facet}")
    facets = np.repeat(np.arange(task.n_facets), K)
    fractions = np.tile((np.arange(K) + 0.5) / K, task.n_facets)
    geo = finger_geometry(task, facets, fractions, config)
    rf = config.finger_radius
    disc_bottom = geo.positions[..., 1] + rf * geo.normals[..., 1] - rf
    clear = (geo.positions[..., 1] >= rf + ground_margin) & (disc_bottom >= ground_margin)
    valid = clear.all(axis=0)
    A = acceleration_operator(task.horizon, config.dt)
    acc = np.einsum("st,tci->sci", A, geo.positions)
    return ContactCandidates(
        facets=facets,
        fractions=fractions,
        positions=geo.positions,
        cones=geo.cones,
        valid=valid,
        accel_sq=(acc**2).sum(axis=(0, 2)),
    )


# --- the batched interior-point QP kernel -----------------------------------------


_IPM_ACCEPT = 1e-6
"""Scaled KKT violation up to which an interior-point solution is trusted."""


def _inv2(H: np.ndarray) -> np.ndarray:
    """Inverse of a stack of 2x2 matrices ``(..., 2, 2, B)``."""
    a, b, c, d = H[..., 0, 0, :], H[..., 0, 1, :], H[..., 1, 0, :], H[..., 1, 1, :]
    det = a * d - b * c
    out = np.empty_like(H)
    out[..., 0, 0, :] = d / det
    out[..., 0, 1, :] = -b / det
    out[..., 1, 0, :] = -c / det
    out[..., 1, 1, :] = a / det
    return out


def _solve3(S: np.ndarray, r: np.ndarray) -> np.ndarray:
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


@dataclasses.dataclass
class _QPResult:
    a: np.ndarray  # (N, 2, B) finger ray multipliers
    u: np.ndarray  # (m, B) ground multipliers then slacks
    objective: np.ndarray  # (B,) elastic objective
    gap: np.ndarray  # (B,) complementarity (duality gap) at the returned iterate
    measure: np.ndarray  # (B,) max scaled KKT violation of the returned iterate


def _ipm(
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
) -> _QPResult:
    """Solve B independent small QPs at once (batch on the last axis)::

        min   q sum_c ||G_c a_c||^2 + cu^T u
        s.t.  sum_c A_c a_c + Au u = w,   A_c = [G_c; tq_c]   (3 x 2)
              a >= 0,  u >= 0,  -F <= G_c a_c <= F

    ``G (N, 2, 2, B)`` maps each finger's two ray multipliers to its force
    (rows x, y; columns rays), ``tq (N, 2, B)`` holds the rays' torques,
    ``Au (3, m, B)``/``cu (m, B)`` the other nonnegative variables.

    A primal-dual interior-point method with Mehrotra's predictor-corrector,
    started from an infeasible point. The box slacks are separate iterates
    (computing them as ``F - G a`` loses all precision next to an active
    bound). The Newton system reduces, through the 2x2 finger blocks and the
    diagonal of the other variables, to a 3x3 system per problem, so each
    iteration is a few dozen vectorised NumPy operations. Problems retire once
    their scaled KKT violation is below ``tol`` or stops improving; the best
    iterate is returned with its violation in ``measure``.
    """
    N, _, _, B = G.shape
    m = Au.shape[0 + 1]
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
        f = (G * a[:, None]).sum(2)  # finger forces (N, 2, B)
        Aty = (A * y[None, :, None]).sum(1)  # (N, 2, B)
        rh = sh + f - F
        rl = sl - f - F
        ra = 2.0 * q * (G * f[:, :, None]).sum(1) - Aty - za + (G * (zh - zl)[:, :, None]).sum(1)
        ru = cu - (Au * y[:, None]).sum(0) - zu
        rp = (A * a[:, None]).sum((0, 2)) + (Au * u[None]).sum(1) - w
        comp = (a * za).sum((0, 1)) + (u * zu).sum(0) + (sh * zh).sum((0, 1)) + (sl * zl).sum((0, 1))
        obj = q * (f * f).sum((0, 1)) + (cu * u).sum(0)
        pres = np.maximum(np.abs(rp).max(0), np.maximum(np.abs(rh).max((0, 1)), np.abs(rl).max((0, 1)))) / wscale
        dres = np.maximum(
            np.abs(ra).max((0, 1)) / (1.0 + np.abs(Aty).max((0, 1))), np.abs(ru).max(0) / cscale
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
        stall = np.where(better | (best[idx] > _IPM_ACCEPT), 0, stall + 1)
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

        # Reduced Newton system: finger blocks H_c (2x2), diagonal Du, 3x3 Schur complement S.
        dh = zh / sh + zl / sl
        H = (G[:, :, :, None] * (2.0 * q + dh)[:, :, None, None] * G[:, :, None, :]).sum(1)
        H[:, 0, 0] += za[:, 0] / a[:, 0]
        H[:, 1, 1] += za[:, 1] / a[:, 1]
        Hi = _inv2(H)
        Du = zu / u
        AHi = (A[:, :, :, None] * Hi[:, None]).sum(2)  # (N, 3, 2, n)
        S = (AHi[:, :, None] * A[:, None]).sum((0, 3)) + (Au[:, None] * Au[None] * (1.0 / Du)[None, None]).sum(2)

        def direction(rca, rcu, rch, rcl):
            # Box slacks obey dsh = -rh - G da and dsl = -rl + G da.
            rch2 = rch + zh * rh
            rcl2 = rcl + zl * rl
            ga = -ra + rca / a - (G * (rch2 / sh - rcl2 / sl)[:, :, None]).sum(1)
            gu = -ru + rcu / u
            rhs = -rp - (AHi * ga[:, None]).sum((0, 2)) - (Au * (gu / Du)[None]).sum(1)
            dy = _solve3(S, rhs)
            da = (Hi * (ga + (A * dy[None, :, None]).sum(1))[:, None]).sum(2)
            du = (gu + (Au * dy[:, None]).sum(0)) / Du
            dza = (rca - za * da) / a
            dzu = (rcu - zu * du) / u
            df = (G * da[:, None]).sum(2)
            dsh, dsl = -rh - df, -rl + df
            dzh = (rch - zh * dsh) / sh
            dzl = (rcl - zl * dsl) / sl
            return da, du, dy, dza, dzu, dsh, dsl, dzh, dzl

        da, du, dy, dza, dzu, dsh, dsl, dzh, dzl = direction(-a * za, -u * zu, -sh * zh, -sl * zl)
        steps = [(a, da), (u, du), (za, dza), (zu, dzu), (sh, dsh), (sl, dsl), (zh, dzh), (zl, dzl)]
        t = _max_step(steps, n)
        comp_aff = (
            ((a + t * da) * (za + t * dza)).sum((0, 1))
            + ((u + t * du) * (zu + t * dzu)).sum(0)
            + ((sh + t * dsh) * (zh + t * dzh)).sum((0, 1))
            + ((sl + t * dsl) * (zl + t * dzl)).sum((0, 1))
        )
        sm = np.clip(comp_aff / (mu * n_ineq), 0.0, 1.0) ** 3 * mu
        da, du, dy, dza, dzu, dsh, dsl, dzh, dzl = direction(
            sm - a * za - da * dza,
            sm - u * zu - du * dzu,
            sm - sh * zh - dsh * dzh,
            sm - sl * zl - dsl * dzl,
        )
        steps = [(a, da), (u, du), (za, dza), (zu, dzu), (sh, dsh), (sl, dsl), (zh, dzh), (zl, dzl)]
        t = np.minimum(0.99 * _max_step(steps, n), 1.0)
        a, u, y = a + t * da, u + t * du, y + t * dy
        za, zu = za + t * dza, zu + t * dzu
        sh, sl, zh, zl = sh + t * dsh, sl + t * dsl, zh + t * dzh, zl + t * dzl

    return _QPResult(out_a, out_u, out_obj, out_gap, best)


# --- per-keyframe QP data and the feasibility logic ------------------------------------------------


@dataclasses.dataclass
class _KeyframeData:
    """Per keyframe and candidate: the QP data, torque rows scaled by 1 / object_radius."""

    G: np.ndarray  # (T, C, 2, 2): candidate rays as columns (rows x, y)
    tq: np.ndarray  # (T, C, 2): scaled torque of each ray
    Ae: np.ndarray  # (T, 3, R): ground-ray wrench columns (R = 2 E), scaled torque row
    ce: np.ndarray  # (T, R): 1 on the rays of empty slots (drives them to 0), else 0
    w: np.ndarray  # (T, 3): required wrench, scaled torque
    scale: float


def _keyframe_data(task: Task, cands: ContactCandidates, config: SceneConfig) -> _KeyframeData:
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
    Ae = np.concatenate([er[..., 0].reshape(T, 1, -1), er[..., 1].reshape(T, 1, -1), etq.reshape(T, 1, -1)], axis=1)
    empty = np.abs(er).sum(-1).reshape(T, -1) == 0
    w = required_wrench(task.polygon, traj, config).copy()
    w[:, 2] /= rho
    return _KeyframeData(np.swapaxes(rays, -1, -2), tq, Ae, empty.astype(np.float64), w, rho)


_ELASTIC_PENALTY = 1e6
"""N^-1 price of a unit wrench residual in the elastic QP (exact once above the multipliers)."""


def _det3(A: np.ndarray, i: int, j: int, k: int) -> np.ndarray:
    """Determinant of columns i, j, k of ``A (3, n, B)``."""
    a, b, c = A[:, i], A[:, j], A[:, k]
    return (
        a[0] * (b[1] * c[2] - b[2] * c[1])
        - b[0] * (a[1] * c[2] - a[2] * c[1])
        + c[0] * (a[1] * b[2] - a[2] * b[1])
    )


def _two_fingers_airborne(
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
    x0 = (A * _solve3(np.where(good, AAt, np.eye(3)[:, :, None]), w)[:, None]).sum(0)  # (4, B)
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


def _clarabel_keyframe_qp(
    data: _KeyframeData, combo: np.ndarray, t: int, *, q: float, F: float
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """One keyframe QP with Clarabel: ``(a (N, 2), beta (R,))``, or ``(None, None)`` if infeasible.

    The fallback for the few problems the batched method leaves undecided.
    Clarabel detects infeasibility with a certificate; a solve that ends in
    any other failure is also reported as infeasible, so a doubtful contact
    pair is dropped rather than planned with.
    """
    import clarabel
    import scipy.sparse as sp

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
    # Rows: equality (zero cone), -x <= 0 and +-G a <= F (nonnegative cone).
    A = np.vstack([Aeq, -np.eye(n), box, -box])
    b = np.concatenate([data.w[t], np.zeros(n), np.full(4 * N, F)])
    cost = np.concatenate([np.zeros(2 * N), data.ce[t]])
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = 1e-10
    settings.tol_feas = 1e-10
    solver = clarabel.DefaultSolver(
        sp.csc_matrix(np.triu(P)),
        cost,
        sp.csc_matrix(A),
        b,
        [clarabel.ZeroConeT(3), clarabel.NonnegativeConeT(n + 4 * N)],
        settings,
    )
    sol = solver.solve()
    if sol.status not in (clarabel.SolverStatus.Solved, clarabel.SolverStatus.AlmostSolved):
        return None, None
    x = np.maximum(np.asarray(sol.x), 0.0)
    if np.abs(Aeq @ x - data.w[t]).max() > FEASIBILITY_TOLERANCE:
        return None, None
    return x[: 2 * N].reshape(N, 2), x[2 * N :]


def _solve_keyframe_qps(
    data: _KeyframeData,
    combos: np.ndarray,
    keyframes: np.ndarray,
    config: SceneConfig,
    q: float,
    *,
    closed_form: bool = True,
) -> tuple[np.ndarray, np.ndarray, _QPResult]:
    """Force cost and feasibility of each (contact combination, keyframe) QP.

    Args:
        combos: ``(B, N)`` candidate indices per problem.
        keyframes: ``(B,)`` keyframe per problem.
        closed_form: solve two-finger problems without ground contact in
            closed form (:func:`_two_fingers_airborne`); False sends every
            problem to the interior-point method (used by the tests).

    Returns ``(cost (B,), feasible (B,), raw result)`` with cost = inf where infeasible.

    In the interior-point path feasibility is decided exactly (up to
    :data:`FEASIBILITY_TOLERANCE`): the QP is first solved in elastic form,
    with nonnegative slacks ``s+ - s-`` on the wrench equality priced at
    P = :data:`_ELASTIC_PENALTY` per newton. A feasible problem with optimal
    cost C* has an elastic optimum of at most C*, hence slacks summing to at
    most C* / P <= C_max / P, where C_max = 2 N q F^2 bounds any force cost
    under the box. So at a converged elastic optimum a residual above
    C_max / P proves infeasibility, and a residual within tolerance proves
    feasibility (and then, the penalty being exact, optimality). The few
    problems in between, and the rare ones (about 0.1 %) where the
    interior-point method did not converge, are handed one by one to
    Clarabel (:func:`_clarabel_keyframe_qp`), which certifies infeasibility
    itself.
    """
    N = combos.shape[1]
    F = config.force_limit
    B = combos.shape[0]
    R = data.Ae.shape[2]

    def build(sel: np.ndarray, penalty: float) -> tuple:
        c, t = combos[sel], keyframes[sel]
        G = np.ascontiguousarray(np.moveaxis(data.G[t[:, None], c], 0, -1))  # (N, 2, 2, B)
        tq = np.ascontiguousarray(np.moveaxis(data.tq[t[:, None], c], 0, -1))  # (N, 2, B)
        b = t.size
        eye = np.broadcast_to(np.eye(3)[:, :, None], (3, 3, b))
        Au = np.concatenate([np.moveaxis(data.Ae[t], 0, -1), eye, -eye], axis=1)
        cu = np.concatenate([data.ce[t].T, np.full((6, b), penalty)], axis=0)
        w = np.ascontiguousarray(data.w[t].T)
        return G, tq, Au, cu, w

    res = _QPResult(np.zeros((N, 2, B)), np.zeros((R + 6, B)), np.zeros(B), np.zeros(B), np.zeros(B))
    residual = np.zeros(B)
    todo = np.arange(B)
    with np.errstate(all="ignore"):
        if closed_form and N == 2:
            air = np.flatnonzero(data.ce[keyframes].all(axis=1))
            if air.size:
                G, tq, _, _, w = build(air, 0.0)
                a, feas, good = _two_fingers_airborne(G, tq, w, q=q, F=F)
                done = air[good]
                res.a[..., done] = a[..., good]
                residual[done] = np.where(feas[good], 0.0, np.inf)
                todo = np.setdiff1d(todo, done, assume_unique=True)
        if todo.size:
            sub = _ipm(*build(todo, _ELASTIC_PENALTY), q=q, F=F)
            sub_res = sub.u[R:].sum(0)
            c_max = 2.0 * N * q * F * F
            unsure = (sub_res > FEASIBILITY_TOLERANCE) & (sub_res <= c_max / _ELASTIC_PENALTY)
            for k in np.flatnonzero(unsure | (sub.measure > _IPM_ACCEPT)):
                b = todo[k]
                a, beta = _clarabel_keyframe_qp(data, combos[b], int(keyframes[b]), q=q, F=F)
                if a is None:
                    sub_res[k] = np.inf
                else:
                    sub.a[..., k], sub.u[:R, k], sub.u[R:, k], sub_res[k] = a, beta, 0.0, 0.0
                    sub.gap[k] = sub.measure[k] = 0.0
            res.a[..., todo], res.u[:, todo] = sub.a, sub.u
            res.objective[todo], res.gap[todo], res.measure[todo] = sub.objective, sub.gap, sub.measure
            residual[todo] = sub_res
    feasible = residual <= FEASIBILITY_TOLERANCE
    f = (np.moveaxis(data.G[keyframes[:, None], combos], 0, -1) * res.a[:, None]).sum(2)
    cost = np.where(feasible, q * (f * f).sum((0, 1)), np.inf)
    return cost, feasible, res


# --- backends -------------------------------------------------------------------------


@dataclasses.dataclass
class _Choice:
    """A backend's answer before it becomes an OraclePlan."""

    status: OracleStatus
    combo: np.ndarray | None = None  # (N,) candidate indices, increasing
    finger_forces: np.ndarray | None = None  # (T, N, 2)
    env_forces: np.ndarray | None = None  # (T, E, 2)
    force_cost: float = float("inf")
    gap: float = float("inf")
    message: str = ""


def _keyframe_order(data: _KeyframeData) -> np.ndarray:
    """Keyframes to solve first: those that prune most, i.e. without ground support, then the largest wrench."""
    airborne = data.ce.all(axis=1)
    size = np.linalg.norm(data.w, axis=1)
    return np.lexsort((-size, ~airborne))


def _forces_from(res: _QPResult, data: _KeyframeData, combo: np.ndarray, T: int, E: int) -> tuple:
    """Finger and ground forces ``(T, N, 2)``, ``(T, E, 2)`` of a combination's per-keyframe QP solutions."""
    G = data.G[np.arange(T)[:, None], combo[None, :]]  # (T, N, 2, 2)
    fingers = np.einsum("tcij,cjt->tci", G, res.a)
    R = 2 * E
    beta = res.u[:R].T.reshape(T, E, 2)  # (T, E, ray)
    rays = np.stack([data.Ae[:, 0, :R], data.Ae[:, 1, :R]], axis=-1).reshape(T, E, 2, 2)  # (T, E, ray, xy)
    ground = np.einsum("tek,teki->tei", beta, rays)
    return fingers, ground


def _solve_enum(
    task: Task,
    cands: ContactCandidates,
    config: SceneConfig,
    q_lambda: float,
    q_p: float,
    time_limit: float,
    rel_gap: float,
    start: float,
) -> _Choice:
    N, T, E = config.num_fingers, task.horizon, NUM_ENV_CONTACTS
    valid = np.flatnonzero(cands.valid)
    if valid.size < N:
        return _Choice(OracleStatus.INFEASIBLE, message=f"only {valid.size} candidate contact points clear the ground")
    combos = np.array(list(itertools.combinations(valid, N)), dtype=np.int64)  # increasing indices
    data = _keyframe_data(task, cands, config)
    order = _keyframe_order(data)
    bound = q_p * cands.accel_sq[combos].sum(axis=1)  # lower bound, grows to the full cost
    alive = np.ones(len(combos), dtype=bool)
    done = np.zeros((len(combos), T), dtype=bool)
    # Relative slack on pruning: the QPs are solved to ~1e-9, so only clearly worse pairs go.
    margin = 1e-7

    def run(sel: np.ndarray, keyframes: np.ndarray) -> None:
        cost, feasible, _ = _solve_keyframe_qps(data, combos[sel], keyframes, config, q_lambda)
        np.add.at(bound, sel, np.where(feasible, cost, 0.0))
        alive[sel[~feasible]] = False
        done[sel, keyframes] = True

    def out_of_time() -> bool:
        return time.perf_counter() - start > time_limit

    # Stage 1: every pair at the keyframe most likely to rule pairs out.
    everyone = np.arange(len(combos))
    run(everyone, np.full(len(combos), order[0]))
    incumbent = np.inf
    # Stage 2: finish a few promising pairs for an incumbent to prune against.
    live = np.flatnonzero(alive)
    if live.size:
        few = live[np.argsort(bound[live])[:8]]
        rest = order[1:]
        run(np.repeat(few, rest.size), np.tile(rest, few.size))
        full = few[alive[few]]
        if full.size:
            incumbent = bound[full].min()
    # Stage 3: the remaining keyframes, pruning by the partial cost.
    timed_out = False
    for t in order[1:]:
        if out_of_time():
            timed_out = True
            break
        alive &= bound <= incumbent * (1 + margin) + 1e-9
        sel = np.flatnonzero(alive & ~done[:, t])
        if sel.size:
            run(sel, np.full(sel.size, t))
        finished = alive & done.all(axis=1)
        if finished.any():
            incumbent = min(incumbent, bound[finished].min())
    finished = np.flatnonzero(alive & done.all(axis=1))
    if finished.size == 0:
        if timed_out:
            return _Choice(OracleStatus.TIME_LIMIT, message=f"no feasible pair found within {time_limit:g} s")
        return _Choice(
            OracleStatus.INFEASIBLE,
            message=f"none of the {len(combos)} contact combinations over {valid.size} candidates is feasible",
        )
    best = finished[np.argmin(bound[finished])]
    combo = combos[best]
    # Re-solve the winner's keyframes to read off its forces.
    cost, feasible, res = _solve_keyframe_qps(data, np.repeat(combo[None], T, 0), np.arange(T), config, q_lambda)
    if not feasible.all():  # the same QPs were feasible a moment ago; never hand out a broken plan
        raise RuntimeError(f"oracle: contact pair {combo.tolist()} changed feasibility on re-solve")
    fingers, ground = _forces_from(res, data, combo, T, E)
    force_cost = float(cost.sum())
    gap = float(res.gap.sum() / max(force_cost, 1e-12))
    status = OracleStatus.OPTIMAL
    message = f"best of {len(combos)} contact combinations"
    if timed_out:
        unexplored = alive & ~done.all(axis=1)
        lower = bound[unexplored].min() if unexplored.any() else np.inf
        total = force_cost + q_p * cands.accel_sq[combo].sum()
        gap = max(gap, float((total - lower) / max(total, 1e-12))) if np.isfinite(lower) else gap
        status = OracleStatus.FEASIBLE_WITH_GAP if gap > rel_gap else OracleStatus.OPTIMAL
        message += f"; time limit reached with {int(unexplored.sum())} combinations unexplored"
    return _Choice(status, combo, fingers, ground, force_cost, max(gap, 0.0), message)


def _solve_scip(
    task: Task,
    cands: ContactCandidates,
    config: SceneConfig,
    q_lambda: float,
    q_p: float,
    time_limit: float,
    rel_gap: float,
    verbose: bool,
) -> _Choice:
    import pyscipopt

    N, T, E = config.num_fingers, task.horizon, NUM_ENV_CONTACTS
    valid = np.flatnonzero(cands.valid)
    if valid.size < N:
        return _Choice(OracleStatus.INFEASIBLE, message=f"only {valid.size} candidate contact points clear the ground")
    data = _keyframe_data(task, cands, config)
    F = config.force_limit
    big_a = np.sqrt(2.0 * (1.0 + config.finger_friction**2)) * F
    m = pyscipopt.Model("dlm_oracle")
    if not verbose:
        m.hideOutput()
    m.setParam("limits/time", max(float(time_limit), 0.01))
    m.setParam("limits/gap", float(rel_gap))

    x = {i: m.addVar(vtype="B", name=f"x_{i}", obj=q_p * float(cands.accel_sq[i])) for i in valid}
    m.addCons(pyscipopt.quicksum(x.values()) == N, name="one_candidate_per_finger")
    lam: dict[tuple[int, int], list] = {}
    for t in range(T):
        wr = data.w[t]
        terms = [[], [], []]
        for i in valid:
            a1 = m.addVar(lb=0.0, name=f"a_{i}_{t}_1")
            a2 = m.addVar(lb=0.0, name=f"a_{i}_{t}_2")
            G, tq = data.G[t, i], data.tq[t, i]
            lx = m.addVar(lb=-F, ub=F, name=f"lx_{i}_{t}")
            ly = m.addVar(lb=-F, ub=F, name=f"ly_{i}_{t}")
            m.addCons(lx == G[0, 0] * a1 + G[0, 1] * a2)
            m.addCons(ly == G[1, 0] * a1 + G[1, 1] * a2)
            m.addCons(a1 + a2 <= big_a * x[i])
            for comp in (lx, ly):
                m.addCons(comp <= F * x[i])
                m.addCons(comp >= -F * x[i])
            # Epigraph of q_lambda ||lambda_i(t)||^2: SCIP wants a linear objective.
            e = m.addVar(lb=0.0, obj=q_lambda, name=f"e_{i}_{t}")
            m.addCons(lx * lx + ly * ly <= e)
            lam[(i, t)] = [lx, ly]
            terms[0].append(lx)
            terms[1].append(ly)
            terms[2].append(tq[0] * a1 + tq[1] * a2)
        betas = []
        for r in range(data.Ae.shape[2]):
            if data.ce[t, r] > 0:  # empty slot: no force
                betas.append(None)
                continue
            b = m.addVar(lb=0.0, name=f"b_{t}_{r}")
            betas.append(b)
            for k in range(3):
                terms[k].append(data.Ae[t, k, r] * b)
        lam[(-1, t)] = betas
        for k in range(3):
            m.addCons(pyscipopt.quicksum(terms[k]) == wr[k], name=f"wrench_{t}_{k}")
    m.optimize()
    scip_status = m.getStatus()
    if scip_status == "infeasible":
        return _Choice(OracleStatus.INFEASIBLE, message="SCIP proved the MIQP infeasible")
    if m.getNSols() == 0:
        if scip_status in ("timelimit", "userinterrupt", "memlimit", "nodelimit"):
            return _Choice(OracleStatus.TIME_LIMIT, message=f"SCIP stopped ({scip_status}) without a solution")
        return _Choice(OracleStatus.INFEASIBLE, message=f"SCIP ended with status {scip_status} and no solution")
    sol = m.getBestSol()
    combo = np.array(sorted(i for i in valid if m.getSolVal(sol, x[i]) > 0.5), dtype=np.int64)
    fingers = np.array([[[m.getSolVal(sol, v) for v in lam[(i, t)]] for i in combo] for t in range(T)])
    R = data.Ae.shape[2]
    beta = np.array(
        [[0.0 if b is None else max(m.getSolVal(sol, b), 0.0) for b in lam[(-1, t)]] for t in range(T)]
    ).reshape(T, E, 2)
    rays = np.stack([data.Ae[:, 0, :R], data.Ae[:, 1, :R]], axis=-1).reshape(T, E, 2, 2)
    ground = np.einsum("tek,teki->tei", beta, rays)
    gap = float(m.getGap())
    status = OracleStatus.OPTIMAL if scip_status == "optimal" or gap <= rel_gap else OracleStatus.FEASIBLE_WITH_GAP
    force_cost = float(q_lambda * (fingers**2).sum())
    return _Choice(status, combo, fingers, ground, force_cost, gap, f"SCIP status {scip_status}")


def _empty_plan(task: Task, config: SceneConfig, choice: _Choice, backend: str, elapsed: float) -> OraclePlan:
    T, N, E = task.horizon, config.num_fingers, NUM_ENV_CONTACTS
    return OraclePlan(
        status=choice.status,
        cost=float("inf"),
        gap=float("inf"),
        solve_time_s=elapsed,
        facets=np.full(N, -1, dtype=np.int64),
        fractions=np.full(N, np.nan),
        finger_positions=np.full((T, N, 2), np.nan),
        finger_forces=np.full((T, N, 2), np.nan),
        env_forces=np.full((T, E, 2), np.nan),
        params=None,
        backend=backend,
        message=choice.message,
    )


def solve_oracle(
    task: Task,
    config: SceneConfig = DEFAULT_CONFIG,
    *,
    backend: Backend = "enum",
    time_limit: float = 60.0,
    candidates_per_facet: int = DEFAULT_CANDIDATES_PER_FACET,
    rel_gap: float = 1e-4,
    q_lambda: float = Q_LAMBDA,
    q_p: float = Q_P,
    verbose: bool = False,
) -> OraclePlan:
    """Solve the contact-trajectory MIQP (eq. 11-12) for a task; see the module docstring.

    Args:
        task: the object and its target motion.
        config: scene constants (mass, friction, force limit, finger count, timing).
        backend: ``"enum"`` (exact enumeration with batched interior-point QPs;
            the fast default) or ``"scip"`` (the MIQP in PySCIPOpt).
        time_limit: seconds; past it the best plan so far comes back with
            ``FEASIBLE_WITH_GAP`` (or ``TIME_LIMIT`` without one).
        candidates_per_facet: K, contact candidates per facet.
        rel_gap: relative optimality gap SCIP must close; the enumeration is
            exact to its QP tolerance (about 1e-9) unless stopped by the time
            limit, when it reports ``FEASIBLE_WITH_GAP`` above this gap.
        q_lambda: force weight (N^-2).
        q_p: finger-acceleration weight (s^4 m^-2).
        verbose: print the SCIP log.

    Returns:
        An :class:`OraclePlan`; check :attr:`OraclePlan.ok` (or call
        :meth:`OraclePlan.raise_if_not_ok`) before using it. An infeasible task
        always comes back as ``INFEASIBLE``, never as a plan.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if task.horizon != config.horizon:
        raise ValueError(f"task has T = {task.horizon} keyframes but config.horizon = {config.horizon}")
    start = time.perf_counter()
    cands = contact_candidates(task, config, candidates_per_facet)
    if backend == "enum":
        choice = _solve_enum(task, cands, config, q_lambda, q_p, time_limit, rel_gap, start)
    else:
        choice = _solve_scip(task, cands, config, q_lambda, q_p, time_limit - (time.perf_counter() - start), rel_gap, verbose)
    if choice.combo is None:
        return _empty_plan(task, config, choice, backend, time.perf_counter() - start)
    facets = cands.facets[choice.combo]
    fractions = cands.fractions[choice.combo]
    params = mechanical_parameters(task, facets, fractions, config)
    accel_cost = float(q_p * cands.accel_sq[choice.combo].sum())
    return OraclePlan(
        status=choice.status,
        cost=choice.force_cost + accel_cost,
        gap=choice.gap,
        solve_time_s=time.perf_counter() - start,
        facets=facets.astype(np.int64),
        fractions=fractions,
        finger_positions=params.finger_positions.copy(),
        finger_forces=choice.finger_forces,
        env_forces=choice.env_forces,
        params=params,
        backend=backend,
        force_cost=choice.force_cost,
        accel_cost=accel_cost,
        message=choice.message,
    )
