"""The default oracle backend: exact enumeration of the contact combinations.

Fingers are interchangeable, so the combinations are the N-subsets of the
valid candidates, each with increasing indices. For fixed contacts the MIQP
(eq. 11-12) separates per keyframe into the tiny convex QPs of
:mod:`dlm_gym.oracle.keyframe_qp`. The search is a branch and bound over
keyframes rather than over binaries:

1. every combination at the keyframe most likely to rule combinations out
   (:func:`keyframe_order`: no ground support first, then the largest wrench);
2. the 8 combinations with the smallest partial cost solved at all keyframes,
   for an incumbent;
3. the remaining keyframes one at a time, dropping combinations infeasible
   at a keyframe and pruning those whose partial cost exceeds the incumbent.

The partial cost (acceleration cost plus the force costs of the keyframes
solved so far) is a valid lower bound because every term of eq. 11 is
nonnegative; the pruning margin (relative 1e-7) stays well above the QPs'
accuracy (about 1e-9), so only clearly worse combinations go.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import numpy as np

from dlm_gym.config import SceneConfig
from dlm_gym.mechanics import NUM_ENV_CONTACTS
from dlm_gym.oracle.candidates import ContactCandidates
from dlm_gym.oracle.ipm import BatchedQPResult
from dlm_gym.oracle.keyframe_qp import (
    KeyframeData,
    keyframe_data,
    keyframe_forces,
    solve_keyframe_qps,
)
from dlm_gym.oracle.types import BackendChoice, OracleStatus
from dlm_gym.task import Task

__all__ = ["KeyframeQPSolver", "keyframe_order", "solve_enum"]

KeyframeQPSolver = Callable[
    [KeyframeData, np.ndarray, np.ndarray, SceneConfig, float],
    tuple[np.ndarray, np.ndarray, BatchedQPResult],
]
"""The signature of :func:`~dlm_gym.oracle.solve_keyframe_qps`: ``(data, combos, keyframes, config, q)``
to ``(cost, feasible, result)``."""


def keyframe_order(data: KeyframeData) -> np.ndarray:
    """Keyframes to solve first: those that prune most, i.e. without ground support, then the largest wrench."""
    airborne = data.ce.all(axis=1)
    size = np.linalg.norm(data.w, axis=1)
    return np.lexsort((-size, ~airborne))


def solve_enum(
    task: Task,
    cands: ContactCandidates,
    config: SceneConfig,
    q_lambda: float,
    q_p: float,
    time_limit: float,
    rel_gap: float,
    start: float,
    *,
    keyframe_qps: KeyframeQPSolver = solve_keyframe_qps,
    combos: np.ndarray | None = None,
) -> BackendChoice:
    """The exact enumeration backend (``backend="enum"``); see the module docstring.

    Args:
        task: the object and its target motion.
        cands: its contact candidates (:func:`~dlm_gym.oracle.contact_candidates`).
        config: scene constants.
        q_lambda: force weight of eq. 11 (N^-2).
        q_p: finger-acceleration weight of eq. 11 (s^4 m^-2).
        time_limit: seconds after ``start`` past which the search stops.
        rel_gap: gap above which a stopped search reports ``FEASIBLE_WITH_GAP``.
        start: ``time.perf_counter()`` at the start of the oracle call.
        keyframe_qps: the batch QP solver, called as
            :func:`~dlm_gym.oracle.solve_keyframe_qps` is; a wrapper can record
            the batches the search solves (``examples/qp_solver_benchmark.py``).
        combos: ``(P, N)`` the only contact combinations to search (increasing candidate indices), as a
            learned contact-mode proposal gives them (:mod:`policies.dlm.contact_mode`); None searches
            every N-subset of the valid candidates. Combinations with an invalid candidate are dropped.
    """
    N, T, E = config.num_fingers, task.horizon, NUM_ENV_CONTACTS
    valid = np.flatnonzero(cands.valid)
    if valid.size < N:
        return BackendChoice(
            OracleStatus.INFEASIBLE,
            message=f"only {valid.size} candidate contact points clear the ground",
        )
    if combos is None:
        combos = np.array(list(itertools.combinations(valid, N)), dtype=np.int64)  # increasing indices
    else:
        combos = combos[cands.valid[combos].all(axis=1)]
        if len(combos) == 0:
            return BackendChoice(OracleStatus.INFEASIBLE, message="none of the given contact combinations is valid")
    data = keyframe_data(task, cands, config)
    order = keyframe_order(data)
    bound = q_p * cands.accel_sq[combos].sum(axis=1)  # lower bound, grows to the full cost
    alive = np.ones(len(combos), dtype=bool)
    done = np.zeros((len(combos), T), dtype=bool)
    # Relative slack on pruning: the QPs are solved to ~1e-9, so only clearly worse pairs go.
    margin = 1e-7

    def run(sel: np.ndarray, keyframes: np.ndarray) -> None:
        cost, feasible, _ = keyframe_qps(data, combos[sel], keyframes, config, q_lambda)
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
            return BackendChoice(
                OracleStatus.TIME_LIMIT,
                message=f"no feasible pair found within {time_limit:g} s",
            )
        return BackendChoice(
            OracleStatus.INFEASIBLE,
            message=f"none of the {len(combos)} contact combinations over {valid.size} candidates is feasible",
        )
    best = finished[np.argmin(bound[finished])]
    combo = combos[best]
    # Re-solve the winner's keyframes to read off its forces.
    cost, feasible, res = keyframe_qps(data, np.repeat(combo[None], T, 0), np.arange(T), config, q_lambda)
    if not feasible.all():  # the same QPs were feasible a moment ago; never hand out a broken plan
        raise RuntimeError(f"oracle: contact pair {combo.tolist()} changed feasibility on re-solve")
    fingers, ground = keyframe_forces(res, data, combo, T, E)
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
    return BackendChoice(status, combo, fingers, ground, force_cost, max(gap, 0.0), message)
