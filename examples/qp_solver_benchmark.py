r"""Benchmark the oracle's keyframe QPs: the hand-written batched interior-point method against maintained solvers.

It runs the oracle's enumeration backend on the first ``--tasks`` tasks of a
split and records every batch of keyframe QPs it solves (one call of
:func:`dlm_gym.oracle.solve_keyframe_qps`: one QP per contact combination and
keyframe), then solves each recorded batch again with every method:

``oracle``
    :func:`~dlm_gym.oracle.solve_keyframe_qps` exactly as the oracle calls
    it: closed form for two fingers without ground contact, the batched
    interior-point method (elastic form) for the rest, Clarabel for the few
    it leaves undecided.
``ipm``
    the same with ``closed_form=False``: every QP through the batched
    interior-point kernel (:mod:`dlm_gym.oracle.ipm`).
``clarabel``
    one Clarabel solve per QP (the QP of
    :func:`dlm_gym.oracle.dense_keyframe_qp`, tolerances 1e-10 as in the
    oracle's fallback). The reference for the agreement columns.
``closed+clarabel``
    the oracle's closed form, then one Clarabel solve for each QP it cannot
    take: what the oracle would be with Clarabel in place of the
    interior-point method.
``clarabel_update``, ``closed+clarabel_update``
    as ``clarabel`` and ``closed+clarabel``, but with one Clarabel solver per
    batch whose data is updated in place for each QP (no presolve), the
    least per-QP overhead Clarabel's Python interface allows.
``clarabel_block``
    one Clarabel solve per batch: the batch's elastic QPs (the interior-point
    method's form, so that infeasible QPs do not make the whole batch
    infeasible) as one block-diagonal problem.
``proxsuite``
    one proxsuite ProxQP dense solve per QP (``eps_abs`` 1e-9).
``closed+proxsuite``
    the closed form, then proxsuite for the rest.
``proxsuite_batch``
    proxsuite's ``BatchQP`` solved with ``solve_in_parallel`` on
    ``--threads`` threads.

Wall times include building each solver's problem from the oracle's data,
as the oracle would have to. The "general QPs" column counts the QPs a
method hands to a general solver (all of them, except where the closed form
takes its share). The report gives per QP, per batch ("oracle
call" of the QP solver) and per task (all batches of one ``solve_oracle``)
the median and 90th percentile, and agreement with ``clarabel``: QPs whose
feasibility verdict differs, and over QPs both call feasible the largest
absolute difference of the optimal force cost ``q_lambda ||lambda||^2`` and
of the solution (the finger-ray multipliers, unique because each finger's
2x2 ray matrix is invertible and the cost is strictly convex in the forces).

proxsuite is an optional dependency: ``pip install -e '.[bench]'``.

The README's figures came from these (on the 12-facet and smooth splits,
where far more QPs involve ground contact, the slowest methods are left out
and the rest timed fewer times)::

    python examples/qp_solver_benchmark.py --split family --tasks 20
    python examples/qp_solver_benchmark.py --split test --tasks 20 --repeats 2 \
        --methods oracle ipm clarabel closed+clarabel closed+clarabel_update closed+proxsuite
    python examples/qp_solver_benchmark.py --split smooth --tasks 20 --repeats 1 \
        --methods oracle clarabel closed+clarabel closed+clarabel_update closed+proxsuite
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

# Run from a checkout without installing.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlm_gym import cli
from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.datasets import load_split
from dlm_gym.oracle import (
    FEASIBILITY_TOLERANCE,
    Q_LAMBDA,
    Q_P,
    KeyframeData,
    contact_candidates,
    dense_keyframe_qp,
    solve_keyframe_qps,
)
from dlm_gym.oracle.backend_enum import solve_enum
from dlm_gym.oracle.keyframe_qp import (
    ELASTIC_PENALTY,
    elastic_qp_inputs,
    two_fingers_airborne,
)

METHODS = (
    "oracle",
    "ipm",
    "clarabel",
    "closed+clarabel",
    "clarabel_update",
    "closed+clarabel_update",
    "clarabel_block",
    "proxsuite",
    "closed+proxsuite",
    "proxsuite_batch",
)
REFERENCE = "clarabel"
METHOD_HELP = """methods (--methods):
  oracle                  solve_keyframe_qps as the oracle calls it: closed form for two fingers
                          off the ground, the batched interior-point method for the rest
  ipm                     the same without the closed form: every QP through the interior-point method
  clarabel                one Clarabel solve per QP (tolerances 1e-10); the reference for agreement
  closed+clarabel         the closed form, then one Clarabel solve per remaining QP
  clarabel_update         one Clarabel solver per batch, its data updated in place for each QP
  closed+clarabel_update  the closed form, then clarabel_update for the remaining QPs
  clarabel_block          one Clarabel solve per batch: its elastic QPs as one block-diagonal problem
  proxsuite               one proxsuite dense ProxQP solve per QP (eps_abs 1e-9; needs the bench extra)
  closed+proxsuite        the closed form, then proxsuite for the remaining QPs
  proxsuite_batch         proxsuite's BatchQP with solve_in_parallel on --threads threads

Times include building each solver's problem from the oracle's data. "own s" is the solvers' own timers
(plus the closed form), i.e. the time without that Python-side building."""


@dataclasses.dataclass
class Batch:
    """One call of the keyframe-QP solver during an oracle solve."""

    task: int
    data: KeyframeData
    combos: np.ndarray  # (B, N)
    keyframes: np.ndarray  # (B,)

    @property
    def size(self) -> int:
        return len(self.keyframes)


@dataclasses.dataclass
class Outcome:
    """One method's answer for one batch."""

    feasible: np.ndarray  # (B,) bool
    a: np.ndarray  # (B, N, 2) finger-ray multipliers (NaN where infeasible)
    wall_s: float  # the whole batch
    # (B,) per QP: measured one by one, or the batch time shared out
    qp_wall_s: np.ndarray
    undecided: int = 0  # QPs the method could not classify (counted as infeasible)
    general: int | None = None  # QPs sent to a general solver (None: all)
    # The batch time less the building of each solver's problem in Python: the solver's own
    # timers for one-by-one solves (None: not measured).
    internal_s: float | None = None


def collect_batches(split: str, n_tasks: int, config: SceneConfig) -> tuple[list[Batch], int]:
    """Run the enumeration backend on the split's first tasks and record the QP batches it solves."""
    tasks = load_split(split, config=config).tasks[:n_tasks]
    batches: list[Batch] = []
    for i, task in enumerate(tasks):

        def recording(data, combos, keyframes, cfg, q, _i=i, **kwargs):
            batches.append(Batch(_i, data, combos.copy(), keyframes.copy()))
            return solve_keyframe_qps(data, combos, keyframes, cfg, q, **kwargs)

        cands = contact_candidates(task, config)
        solve_enum(
            task,
            cands,
            config,
            Q_LAMBDA,
            Q_P,
            math.inf,
            1e-4,
            time.perf_counter(),
            keyframe_qps=recording,
        )
    return batches, len(tasks)


# ------------------------------------------------------------------ the methods


def run_oracle(batch: Batch, config: SceneConfig, *, closed_form: bool) -> Outcome:
    t0 = time.perf_counter()
    _, feasible, res = solve_keyframe_qps(
        batch.data,
        batch.combos,
        batch.keyframes,
        config,
        Q_LAMBDA,
        closed_form=closed_form,
    )
    wall = time.perf_counter() - t0
    a = np.moveaxis(res.a, -1, 0).copy()
    a[~feasible] = np.nan
    general = batch.size
    if closed_form and batch.combos.shape[1] == 2:  # count, untimed, what the closed form took
        air = np.flatnonzero(batch.data.ce[batch.keyframes].all(axis=1))
        G, tq, _, _, w = elastic_qp_inputs(batch.data, batch.combos[air], batch.keyframes[air], 0.0)
        with np.errstate(all="ignore"):
            good = two_fingers_airborne(G, tq, w, q=Q_LAMBDA, F=config.force_limit)[2]
        general -= int(good.sum())
    return Outcome(feasible, a, wall, np.full(batch.size, wall / batch.size), general=general)


def _clarabel_settings(clarabel):
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = 1e-10
    settings.tol_feas = 1e-10
    return settings


def _verdict(x: np.ndarray, Aeq: np.ndarray, beq: np.ndarray) -> bool:
    """The oracle's own test of a returned point: the wrench residual within tolerance."""
    return bool(np.abs(Aeq @ np.maximum(x, 0.0) - beq).max() <= FEASIBILITY_TOLERANCE)


def _one_clarabel(batch: Batch, b: int, F: float) -> tuple[bool, np.ndarray | None, bool, float]:
    """Solve QP ``b`` of a batch with Clarabel: ``(feasible, a (N, 2), undecided, Clarabel's own solve time)``."""
    import clarabel
    import scipy.sparse as sp

    N = batch.combos.shape[1]
    qp = dense_keyframe_qp(batch.data, batch.combos[b], int(batch.keyframes[b]), q=Q_LAMBDA, F=F)
    n = qp.P.shape[0]
    # Rows: the wrench (zero cone); -x <= 0 and +-G a <= F (nonnegative cone).
    A = np.vstack([qp.Aeq, -np.eye(n), qp.box, -qp.box])
    rhs = np.concatenate([qp.beq, np.zeros(n), np.full(4 * N, F)])
    cones = [clarabel.ZeroConeT(3), clarabel.NonnegativeConeT(n + 4 * N)]
    solver = clarabel.DefaultSolver(
        sp.csc_matrix(np.triu(qp.P)),
        qp.c,
        sp.csc_matrix(A),
        rhs,
        cones,
        _clarabel_settings(clarabel),
    )
    sol = solver.solve()
    x = np.asarray(sol.x)
    solved = sol.status in (
        clarabel.SolverStatus.Solved,
        clarabel.SolverStatus.AlmostSolved,
    )
    if solved and _verdict(x, qp.Aeq, qp.beq):
        return True, np.maximum(x[: 2 * N], 0.0).reshape(N, 2), False, sol.solve_time
    undecided = not solved and sol.status != clarabel.SolverStatus.PrimalInfeasible
    return False, None, undecided, sol.solve_time


class _ClarabelReuse:
    """Like :func:`_one_clarabel`, but one Clarabel solver per batch whose data is updated in place.

    All QPs of a batch share one sparsity pattern, so after the first the
    solver keeps its symbolic factorisation and allocations and only the
    numbers change (Clarabel's ``update``; presolve must be off for it). This
    is the least per-QP overhead Clarabel's Python interface offers. Its own
    time is not reported: Clarabel's ``solve_time`` keeps counting the first
    setup after an update.
    """

    def __init__(self) -> None:
        self.solver = None

    def _pattern(self, N: int, n: int) -> None:
        import scipy.sparse as sp

        blocks = np.kron(np.eye(N), np.ones((2, 2)))
        P = np.zeros((n, n))
        P[: 2 * N, : 2 * N] = np.triu(blocks)
        box = np.zeros((2 * N, n))
        box[:, : 2 * N] = blocks
        A = np.vstack([np.ones((3, n)), np.eye(n), box, box])
        self.P_at, self.A_at = (self._positions(sp.csc_matrix(m)) for m in (P, A))

    @staticmethod
    def _positions(m) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of each stored entry of a CSC matrix, in storage order."""
        return m.indices, np.repeat(np.arange(m.shape[1]), np.diff(m.indptr))

    def __call__(self, batch: Batch, b: int, F: float) -> tuple[bool, np.ndarray | None, bool, float]:
        import clarabel
        import scipy.sparse as sp

        N = batch.combos.shape[1]
        qp = dense_keyframe_qp(batch.data, batch.combos[b], int(batch.keyframes[b]), q=Q_LAMBDA, F=F)
        n = qp.P.shape[0]
        A = np.vstack([qp.Aeq, -np.eye(n), qp.box, -qp.box])
        rhs = np.concatenate([qp.beq, np.zeros(n), np.full(4 * N, F)])
        if self.solver is None:
            self._pattern(N, n)
            settings = _clarabel_settings(clarabel)
            settings.presolve_enable = False
            settings.input_sparse_dropzeros = False

            # Stored zeros stay: the pattern must be the same for every QP of the batch.
            P_csc = sp.csc_matrix((qp.P[self.P_at], self.P_at), shape=(n, n))
            A_csc = sp.csc_matrix((A[self.A_at], self.A_at), shape=A.shape)
            assert P_csc.nnz == len(self.P_at[0]) and A_csc.nnz == len(self.A_at[0])
            cones = [clarabel.ZeroConeT(3), clarabel.NonnegativeConeT(n + 4 * N)]
            self.solver = clarabel.DefaultSolver(P_csc, qp.c, A_csc, rhs, cones, settings)
        else:
            self.solver.update(P=qp.P[self.P_at], q=qp.c, A=A[self.A_at], b=rhs)
        sol = self.solver.solve()
        x = np.asarray(sol.x)
        solved = sol.status in (clarabel.SolverStatus.Solved, clarabel.SolverStatus.AlmostSolved)
        if solved and _verdict(x, qp.Aeq, qp.beq):
            return True, np.maximum(x[: 2 * N], 0.0).reshape(N, 2), False, math.nan
        undecided = not solved and sol.status != clarabel.SolverStatus.PrimalInfeasible
        return False, None, undecided, math.nan


def _import_proxsuite():
    try:
        from proxsuite import proxqp
    except ImportError:
        # An optional dependency: one line and exit code 2, like every other usage error of the examples.
        others = " ".join(m for m in METHODS if "proxsuite" not in m)
        message = f"the proxsuite methods need proxsuite: pip install -e '.[bench]' (or run --methods {others})"
        raise SystemExit(cli.fail(message)) from None
    return proxqp


def _proxsuite_settings(qp) -> None:
    qp.settings.eps_abs = 1e-9
    qp.settings.eps_rel = 0.0
    qp.settings.verbose = False


def _proxsuite_read(qp, Aeq: np.ndarray, beq: np.ndarray, N: int) -> tuple[bool, np.ndarray | None, bool]:
    """``(feasible, a, undecided)`` of a solved proxsuite QP; the oracle's residual test decides feasibility."""
    name = str(qp.results.info.status).rsplit(".", 1)[-1]
    x = np.asarray(qp.results.x)
    if name == "PROXQP_SOLVED" and _verdict(x, Aeq, beq):
        return True, np.maximum(x[: 2 * N], 0.0).reshape(N, 2), False
    return False, None, name not in ("PROXQP_SOLVED", "PROXQP_PRIMAL_INFEASIBLE")


def _one_proxsuite(batch: Batch, b: int, F: float) -> tuple[bool, np.ndarray | None, bool, float]:
    """Solve QP ``b`` of a batch with proxsuite's dense ProxQP: ``(feasible, a (N, 2), undecided, its own time)``."""
    proxqp = _import_proxsuite()
    N = batch.combos.shape[1]
    qp_data = dense_keyframe_qp(batch.data, batch.combos[b], int(batch.keyframes[b]), q=Q_LAMBDA, F=F)
    n = qp_data.P.shape[0]
    qp = proxqp.dense.QP(n, 3, 2 * N, True)  # its box constraints carry x >= 0
    _proxsuite_settings(qp)
    qp.settings.compute_timings = True
    bound = np.full(2 * N, F)
    qp.init(
        qp_data.P,
        qp_data.c,
        qp_data.Aeq,
        qp_data.beq,
        qp_data.box,
        -bound,
        bound,
        np.zeros(n),
        np.full(n, np.inf),
    )
    qp.solve()
    info = qp.results.info
    return (*_proxsuite_read(qp, qp_data.Aeq, qp_data.beq, N), (info.setup_time + info.solve_time) * 1e-6)


def run_one_by_one(batch: Batch, config: SceneConfig, one, *, closed_form: bool = False) -> Outcome:
    """Solve the batch's QPs one at a time with ``one`` (after the closed form, if ``closed_form``)."""
    F = config.force_limit
    N = batch.combos.shape[1]
    feasible = np.zeros(batch.size, dtype=bool)
    a = np.full((batch.size, N, 2), np.nan)
    times = np.zeros(batch.size)
    undecided, internal = 0, 0.0
    t_all = time.perf_counter()
    rest = np.arange(batch.size)
    if closed_form and N == 2:
        # The oracle's closed form, as in solve_keyframe_qps; only what it cannot take goes on.
        air = np.flatnonzero(batch.data.ce[batch.keyframes].all(axis=1))
        if air.size:
            G, tq, _, _, w = elastic_qp_inputs(batch.data, batch.combos[air], batch.keyframes[air], 0.0)
            with np.errstate(all="ignore"):
                a_air, feas, good = two_fingers_airborne(G, tq, w, q=Q_LAMBDA, F=F)
            done = air[good]
            feasible[done] = feas[good]
            a[done] = np.moveaxis(a_air, -1, 0)[good]
            times[done] = (time.perf_counter() - t_all) / max(done.size, 1)
            rest = np.setdiff1d(rest, done, assume_unique=True)
    for b in rest:
        t0 = time.perf_counter()
        ok, ab, unsure, own = one(batch, int(b), F)
        times[b] = time.perf_counter() - t0
        feasible[b], undecided, internal = ok, undecided + unsure, internal + own
        if ok:
            a[b] = ab
    a[~feasible] = np.nan
    wall = time.perf_counter() - t_all
    own = wall - times[rest].sum() + internal  # the closed form's share plus the solvers' own timers
    return Outcome(feasible, a, wall, times, undecided, general=rest.size, internal_s=own)


def _block_diagonal(blocks: np.ndarray):
    """A CSC matrix with the ``(B, r, c)`` dense blocks on its diagonal (explicit zeros dropped)."""
    import scipy.sparse as sp

    B = blocks.shape[0]
    m = sp.bsr_matrix(
        (blocks, np.arange(B), np.arange(B + 1)),
        shape=(B * blocks.shape[1], B * blocks.shape[2]),
    )
    m = m.tocsc()
    m.eliminate_zeros()
    return m


def run_clarabel_block(batch: Batch, config: SceneConfig) -> Outcome:
    import clarabel
    import scipy.sparse as sp

    F, q = config.force_limit, Q_LAMBDA
    t0 = time.perf_counter()
    G, tq, Au, cu, w = elastic_qp_inputs(batch.data, batch.combos, batch.keyframes, ELASTIC_PENALTY)
    N, _, _, B = G.shape
    m = Au.shape[1]
    nf = 2 * N
    n = nf + m
    Gb = np.moveaxis(G, -1, 0)  # (B, N, 2 comps, 2 rays)
    Ab = np.zeros((B, 3, n))
    Ab[:, :2, :nf] = np.moveaxis(Gb, 1, 2).reshape(B, 2, nf)
    Ab[:, 2, :nf] = np.moveaxis(tq, -1, 0).reshape(B, nf)
    Ab[:, :, nf:] = np.moveaxis(Au, -1, 0)
    box = np.zeros((B, nf, n))
    P = np.zeros((B, n, n))
    for c in range(N):
        cols = slice(2 * c, 2 * c + 2)
        box[:, cols, cols] = Gb[:, c]
        P[:, cols, cols] = 2.0 * q * np.einsum("bki,bkj->bij", Gb[:, c], Gb[:, c])
    ineq = np.concatenate([-np.broadcast_to(np.eye(n), (B, n, n)), box, -box], axis=1)
    A = sp.vstack([_block_diagonal(Ab), _block_diagonal(ineq)]).tocsc()
    rhs = np.concatenate([w.T.ravel(), np.tile(np.concatenate([np.zeros(n), np.full(2 * nf, F)]), B)])
    cost = np.concatenate([np.zeros((B, nf)), cu.T], axis=1).ravel()
    cones = [clarabel.ZeroConeT(3 * B), clarabel.NonnegativeConeT(B * (n + 2 * nf))]
    solver = clarabel.DefaultSolver(_block_diagonal(np.triu(P)), cost, A, rhs, cones, _clarabel_settings(clarabel))
    sol = solver.solve()
    wall = time.perf_counter() - t0
    x = np.asarray(sol.x).reshape(B, n)
    residual = x[:, n - 6 :].sum(axis=1)
    feasible = residual <= FEASIBILITY_TOLERANCE
    c_max = 2.0 * N * q * F * F
    # As in the oracle: a residual between the tolerance and C_max / P proves nothing either way.
    undecided = int(np.sum(~feasible & (residual <= c_max / ELASTIC_PENALTY)))
    if sol.status not in (
        clarabel.SolverStatus.Solved,
        clarabel.SolverStatus.AlmostSolved,
    ):
        undecided, feasible = B, np.zeros(B, dtype=bool)
    a = np.maximum(x[:, :nf], 0.0).reshape(B, N, 2)
    a[~feasible] = np.nan
    return Outcome(feasible, a, wall, np.full(B, wall / B), undecided)


def run_proxsuite_batch(batch: Batch, config: SceneConfig, threads: int) -> Outcome:
    proxqp = _import_proxsuite()
    F = config.force_limit
    N = batch.combos.shape[1]
    t0 = time.perf_counter()
    qps = proxqp.dense.BatchQP(batch.size)
    data = []
    for b in range(batch.size):
        qp_data = dense_keyframe_qp(batch.data, batch.combos[b], int(batch.keyframes[b]), q=Q_LAMBDA, F=F)
        n = qp_data.P.shape[0]
        # BatchQP's QPs have no box-constraint option: x >= 0 goes into the inequality rows.
        qp = qps.init_qp_in_place(n, 3, n + 2 * N)
        _proxsuite_settings(qp)
        C = np.vstack([np.eye(n), qp_data.box])
        lo = np.concatenate([np.zeros(n), np.full(2 * N, -F)])
        hi = np.concatenate([np.full(n, np.inf), np.full(2 * N, F)])
        qp.init(qp_data.P, qp_data.c, qp_data.Aeq, qp_data.beq, C, lo, hi)
        data.append(qp_data)
    proxqp.dense.solve_in_parallel(qps, threads)
    wall = time.perf_counter() - t0
    feasible = np.zeros(batch.size, dtype=bool)
    a = np.full((batch.size, N, 2), np.nan)
    undecided = 0
    for b, qp_data in enumerate(data):
        ok, ab, unsure = _proxsuite_read(qps.get(b), qp_data.Aeq, qp_data.beq, N)
        feasible[b], undecided = ok, undecided + unsure
        if ok:
            a[b] = ab
    return Outcome(feasible, a, wall, np.full(batch.size, wall / batch.size), undecided)


def run_method(name: str, batch: Batch, config: SceneConfig, threads: int) -> Outcome:
    if name == "oracle":
        return run_oracle(batch, config, closed_form=True)
    if name == "ipm":
        return run_oracle(batch, config, closed_form=False)
    if name == "clarabel":
        return run_one_by_one(batch, config, _one_clarabel)
    if name == "closed+clarabel":
        return run_one_by_one(batch, config, _one_clarabel, closed_form=True)
    if name == "clarabel_update":
        return run_one_by_one(batch, config, _ClarabelReuse())
    if name == "closed+clarabel_update":
        return run_one_by_one(batch, config, _ClarabelReuse(), closed_form=True)
    if name == "clarabel_block":
        return run_clarabel_block(batch, config)
    if name == "proxsuite":
        return run_one_by_one(batch, config, _one_proxsuite)
    if name == "closed+proxsuite":
        return run_one_by_one(batch, config, _one_proxsuite, closed_form=True)
    if name == "proxsuite_batch":
        return run_proxsuite_batch(batch, config, threads)
    raise ValueError(name)


def force_cost(batch: Batch, a: np.ndarray) -> np.ndarray:
    """``q_lambda sum_c ||G_c a_c||^2`` per QP (NaN where ``a`` is)."""
    G = batch.data.G[batch.keyframes[:, None], batch.combos]  # (B, N, 2, 2)
    f = np.einsum("bnij,bnj->bni", G, a)
    return Q_LAMBDA * (f * f).sum(axis=(1, 2))


# ------------------------------------------------------------------ the report


def summarise(batches: list[Batch], results: dict[str, list[Outcome]], n_tasks: int) -> dict:
    sizes = np.array([b.size for b in batches])
    out = {
        "tasks": n_tasks,
        "batches": len(batches),
        "qps": int(sizes.sum()),
        "batch_size": {
            "median": float(np.median(sizes)),
            "p90": float(np.quantile(sizes, 0.9)),
            "max": int(sizes.max()),
        },
        "methods": {},
    }
    ref = results.get(REFERENCE)
    for name, outs in results.items():
        per_qp = np.concatenate([o.qp_wall_s for o in outs])
        per_batch = np.array([o.wall_s for o in outs])
        per_task = np.bincount([b.task for b in batches], weights=per_batch, minlength=n_tasks)
        own = math.nan if any(o.internal_s is None for o in outs) else float(sum(o.internal_s for o in outs))
        row = {
            "qp_us": {
                "median": float(np.median(per_qp) * 1e6),
                "p90": float(np.quantile(per_qp, 0.9) * 1e6),
            },
            "batch_ms": {
                "median": float(np.median(per_batch) * 1e3),
                "p90": float(np.quantile(per_batch, 0.9) * 1e3),
            },
            "task_ms": {
                "median": float(np.median(per_task) * 1e3),
                "p90": float(np.quantile(per_task, 0.9) * 1e3),
            },
            "total_s": float(per_batch.sum()),
            "solver_own_total_s": None if not math.isfinite(own) else own,
            "general_qps": int(sum(b.size if o.general is None else o.general for b, o in zip(batches, outs))),
            "feasible": int(sum(o.feasible.sum() for o in outs)),
            "undecided": int(sum(o.undecided for o in outs)),
        }
        if ref is not None:
            disagree, dcost, da = 0, 0.0, 0.0
            for batch, o, r in zip(batches, outs, ref):
                disagree += int(np.sum(o.feasible != r.feasible))
                both = o.feasible & r.feasible
                if both.any():
                    dcost = max(
                        dcost,
                        float(np.abs(force_cost(batch, o.a) - force_cost(batch, r.a))[both].max()),
                    )
                    da = max(da, float(np.abs(o.a - r.a)[both].max()))
            row.update(
                verdicts_differ=disagree,
                max_abs_cost_diff=dcost,
                max_abs_solution_diff=da,
            )
        out["methods"][name] = row
    return out


def print_report(summary: dict, args) -> None:
    bs = summary["batch_size"]
    print(
        f"\n{summary['tasks']} tasks of {args.split!r}: {summary['batches']} QP batches, {summary['qps']} QPs "
        f"(batch size median {bs['median']:.0f}, p90 {bs['p90']:.0f}, max {bs['max']}); best of {args.repeats}, "
        f"proxsuite_batch on {args.threads} thread(s)"
    )
    header = (
        "method",
        "QP us med",
        "QP us p90",
        "batch ms med",
        "batch ms p90",
        "task ms med",
        "task ms p90",
        "total s",
        "own s",
        "general QPs",
        "feasible",
        "undecided",
        "verdicts differ",
        "max |d cost|",
        "max |d a|",
    )
    rows = []
    for name, r in summary["methods"].items():
        rows.append(
            (
                name,
                f"{r['qp_us']['median']:.1f}",
                f"{r['qp_us']['p90']:.1f}",
                f"{r['batch_ms']['median']:.2f}",
                f"{r['batch_ms']['p90']:.2f}",
                f"{r['task_ms']['median']:.1f}",
                f"{r['task_ms']['p90']:.1f}",
                f"{r['total_s']:.2f}",
                "-" if r["solver_own_total_s"] is None else f"{r['solver_own_total_s']:.2f}",
                r["general_qps"],
                r["feasible"],
                r["undecided"],
                r.get("verdicts_differ", "-"),
                f"{r['max_abs_cost_diff']:.1e}" if "max_abs_cost_diff" in r else "-",
                f"{r['max_abs_solution_diff']:.1e}" if "max_abs_solution_diff" in r else "-",
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print("| " + " | ".join(f"{h:>{w}}" for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(f"{x!s:>{w}}" for x, w in zip(row, widths)) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=METHOD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--split",
        type=cli.split_name_or_file,
        default="family",
        help="shipped split name or .npz file whose tasks the oracle solves (default: family)",
    )
    parser.add_argument(
        "--tasks",
        type=cli.positive_int,
        default=20,
        help="solve the first this many tasks of the split (default 20; fewer if the split is smaller)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=list(METHODS),
        metavar="METHOD",
        help=f"QP solvers to compare (default: all); agreement is measured against {REFERENCE!r}, if it runs",
    )
    parser.add_argument(
        "--repeats",
        type=cli.positive_int,
        default=3,
        help="time every batch this many times per method and keep the fastest (default 3)",
    )
    parser.add_argument(
        "--threads",
        type=cli.positive_int,
        default=1,
        help="threads of proxsuite_batch's solve_in_parallel (default 1; the other methods use one core)",
    )
    parser.add_argument(
        "--json",
        type=cli.output_file,
        default=None,
        help="also write the summary to this JSON file",
    )
    args = parser.parse_args(argv)
    if any("proxsuite" in name for name in args.methods):
        _import_proxsuite()
    config = DEFAULT_CONFIG
    try:
        batches, n_tasks = collect_batches(args.split, args.tasks, config)
    except cli.USER_ERRORS as exc:
        return cli.fail(exc)
    # Warm-up: imports and first-call costs are not what is measured.
    for name in args.methods:
        run_method(name, batches[0], config, args.threads)
    results: dict[str, list[Outcome]] = {name: [] for name in args.methods}
    for name in args.methods:
        for batch in batches:
            tries = [run_method(name, batch, config, args.threads) for _ in range(args.repeats)]
            results[name].append(min(tries, key=lambda o: o.wall_s))
    summary = summarise(batches, results, n_tasks)
    summary["command"] = " ".join(["python", "examples/qp_solver_benchmark.py", *(argv or sys.argv[1:])])
    print_report(summary, args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
