"""The oracle's entry point, :func:`solve_oracle`, and the weights of its cost (eq. 11)."""

from __future__ import annotations

import time
from typing import Literal

import numpy as np

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.mechanics import NUM_ENV_CONTACTS, mechanical_parameters
from dlm_gym.oracle.backend_enum import solve_enum
from dlm_gym.oracle.backend_scip import solve_scip
from dlm_gym.oracle.candidates import DEFAULT_CANDIDATES_PER_FACET, contact_candidates
from dlm_gym.oracle.ipm import BatchedQPResult
from dlm_gym.oracle.keyframe_qp import keyframe_data, keyframe_forces, solve_keyframe_qps
from dlm_gym.oracle.types import BackendChoice, OraclePlan, OracleStatus
from dlm_gym.task import Task

__all__ = ["BACKENDS", "Q_LAMBDA", "Q_P", "Backend", "solve_oracle", "plan_combos"]

Q_LAMBDA = 1.0
"""q_lambda in N^-2: weight of the squared finger forces in eq. 11."""
Q_P = 0.1
"""q_p in s^4 m^-2: weight of the squared finger accelerations in eq. 11."""
BACKENDS = ("enum", "scip")
"""The values ``solve_oracle(backend=...)`` takes."""

Backend = Literal["enum", "scip"]


def _empty_plan(task: Task, config: SceneConfig, choice: BackendChoice, backend: str, elapsed: float) -> OraclePlan:
    """The plan of a backend answer without contacts: NaN arrays of the right shapes, so callers can index them."""
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


def _check_combos(combos, n_candidates: int, num_fingers: int, backend: str) -> np.ndarray:
    """Proposed combinations as ``(P, N)`` int64 rows of N distinct candidate indices, sorted; ValueError else."""
    if backend != "enum":
        raise ValueError(f"combos needs backend='enum', got {backend!r}")
    arr = np.asarray(combos)
    if arr.ndim != 2 or arr.shape[1] != num_fingers or arr.shape[0] == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"combos must be a non-empty (P, {num_fingers}) integer array, got {arr.dtype} {arr.shape}")
    if arr.min() < 0 or arr.max() >= n_candidates:
        raise ValueError(
            f"combos must index the task's {n_candidates} candidates, got indices {arr.min()}..{arr.max()}"
        )
    arr = np.sort(arr.astype(np.int64), axis=1)
    if (np.diff(arr, axis=1) == 0).any():
        raise ValueError("each row of combos must hold distinct candidates (two fingers cannot share a point)")
    return arr


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
    combos: np.ndarray | None = None,
) -> OraclePlan:
    """Solve the contact-trajectory MIQP (eq. 11-12) for a task; see :mod:`dlm_gym.oracle`.

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
        combos: ``(P, N)`` candidate indices (of :func:`~dlm_gym.oracle.contact_candidates` with this
            ``candidates_per_facet``): search only these contact combinations (``backend="enum"`` only).
            A learned contact-mode classifier proposes them; the plan is then the best of the
            proposals, not the global optimum. Each row must hold N distinct indices in range.

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
    if combos is not None:
        combos = _check_combos(combos, len(cands.facets), config.num_fingers, backend)
    if backend == "enum":
        choice = solve_enum(task, cands, config, q_lambda, q_p, time_limit, rel_gap, start, combos=combos)
    else:
        choice = solve_scip(
            task,
            cands,
            config,
            q_lambda,
            q_p,
            time_limit - (time.perf_counter() - start),
            rel_gap,
            verbose,
        )
    if choice.combo is None:
        return _empty_plan(task, config, choice, backend, time.perf_counter() - start)
    return _plan(task, config, cands, choice, backend, q_p, start)


def _plan(task: Task, config: SceneConfig, cands, choice: BackendChoice, backend: str, q_p: float, start: float):
    """The :class:`OraclePlan` of a backend's chosen combination."""
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


def plan_combos(
    task: Task,
    combos: np.ndarray,
    config: SceneConfig = DEFAULT_CONFIG,
    *,
    candidates_per_facet: int = DEFAULT_CANDIDATES_PER_FACET,
    q_lambda: float = Q_LAMBDA,
    q_p: float = Q_P,
) -> list[OraclePlan]:
    """The plan of each given contact combination on its own, without a search: one batched solve.

    Where :func:`solve_oracle` with ``combos`` keeps only the cheapest feasible combination, this returns
    every combination's plan (``OPTIMAL`` for its fixed contacts, or ``INFEASIBLE`` when a keyframe has no
    solution or a candidate is too close to the ground), in the given order. All ``P x T`` keyframe QPs
    go to :func:`~dlm_gym.oracle.solve_keyframe_qps` at once. A learned contact-mode classifier that
    ranks its proposals itself uses it (:mod:`policies.dlm.keypoint_dlm`).

    Raises:
        ValueError: for combinations that are not ``(P, N)`` distinct candidate indices.
    """
    start = time.perf_counter()
    cands = contact_candidates(task, config, candidates_per_facet)
    combos = _check_combos(combos, len(cands.facets), config.num_fingers, "enum")
    T, E = task.horizon, NUM_ENV_CONTACTS
    ok_rows = np.flatnonzero(cands.valid[combos].all(axis=1))
    plans: list[OraclePlan | None] = [None] * len(combos)
    if ok_rows.size:
        data = keyframe_data(task, cands, config)
        rows = np.repeat(combos[ok_rows], T, axis=0)
        cost, feasible, res = solve_keyframe_qps(data, rows, np.tile(np.arange(T), ok_rows.size), config, q_lambda)
        for n, r in enumerate(ok_rows):
            sl = slice(n * T, (n + 1) * T)
            if not feasible[sl].all():
                continue
            part = BatchedQPResult(res.a[..., sl], res.u[:, sl], res.objective[sl], res.gap[sl], res.measure[sl])
            fingers, ground = keyframe_forces(part, data, combos[r], T, E)
            force_cost = float(cost[sl].sum())
            choice = BackendChoice(
                OracleStatus.OPTIMAL, combos[r], fingers, ground, force_cost, 0.0, "given combination"
            )
            plans[r] = _plan(task, config, cands, choice, "enum", q_p, start)
    none = BackendChoice(OracleStatus.INFEASIBLE, message="this contact combination has no plan")
    return [p if p is not None else _empty_plan(task, config, none, "enum", time.perf_counter() - start) for p in plans]
