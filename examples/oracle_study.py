"""Benchmark the MIQP oracle's backends on sampled tasks.

For each facet group it samples tasks with :func:`dlm_gym.sample_task`
(seeds ``seed, seed + 1, ...``), solves each with every backend and prints:

* per group and backend: feasibility rate, statuses, median / p90 / max solve time;
* per group: agreement of the backends (same status, same contacts, largest
  relative difference of the optimal costs).

Example (the numbers in the oracle's report came from this)::

    python examples/oracle_study.py --tasks 30 --scip-tasks 10

Pass ``--backends enum`` to skip SCIP, which takes seconds (4-6 facets) to
tens of seconds (12 facets) per task against tenths of a second for the
enumeration.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dlm_gym.oracle import BACKENDS, DEFAULT_CANDIDATES_PER_FACET, OracleStatus, solve_oracle  # noqa: E402
from dlm_gym.task import sample_task  # noqa: E402


def parse_group(text: str) -> tuple[int, int]:
    """'4-6' -> (4, 6); '12' -> (12, 12)."""
    lo, _, hi = text.partition("-")
    return int(lo), int(hi or lo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=30, help="tasks per facet group (default 30)")
    parser.add_argument(
        "--scip-tasks",
        type=int,
        default=None,
        help="solve only the first this many tasks of each group with SCIP (default: all; SCIP is slow)",
    )
    parser.add_argument("--groups", nargs="+", default=["4-6", "12"], help="facet counts or ranges (default: 4-6 12)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS, help="backends to run")
    parser.add_argument("--seed", type=int, default=0, help="first task seed (default 0)")
    parser.add_argument(
        "--candidates-per-facet",
        "-k",
        type=int,
        default=DEFAULT_CANDIDATES_PER_FACET,
        help=f"K, candidate contact points per facet (default {DEFAULT_CANDIDATES_PER_FACET})",
    )
    parser.add_argument(
        "--time-limit", type=float, default=60.0, help="enumeration time limit per task, s (default 60)"
    )
    parser.add_argument(
        "--scip-time-limit", type=float, default=300.0, help="SCIP time limit per task, s (default 300)"
    )
    parser.add_argument("--rel-gap", type=float, default=1e-4, help="SCIP relative gap (default 1e-4)")
    args = parser.parse_args(argv)

    # Warm-up, so the first timed solve does not pay for imports and caches.
    solve_oracle(sample_task(10**6), candidates_per_facet=args.candidates_per_facet)

    rows = []
    agreements = []
    for group in args.groups:
        lo, hi = parse_group(group)
        seeds = [args.seed + i for i in range(args.tasks)]
        results: dict[str, dict[int, object]] = {b: {} for b in args.backends}
        jobs = [
            (b, s)
            for s in seeds
            for b in args.backends
            if not (b == "scip" and args.scip_tasks is not None and s - args.seed >= args.scip_tasks)
        ]
        for backend, seed in tqdm(jobs, desc=f"{group} facets", unit="solve", disable=None):  # off unless a terminal
            task = sample_task(seed, n_facets=(lo, hi))
            limit = args.scip_time_limit if backend == "scip" else args.time_limit
            t0 = time.perf_counter()
            plan = solve_oracle(
                task,
                backend=backend,
                candidates_per_facet=args.candidates_per_facet,
                time_limit=limit,
                rel_gap=args.rel_gap,
            )
            plan.solve_time_s = time.perf_counter() - t0  # wall time including model building
            results[backend][seed] = plan
        for backend in args.backends:
            plans = list(results[backend].values())
            if not plans:
                continue
            times = np.array([p.solve_time_s for p in plans])
            count = {s: sum(p.status is s for p in plans) for s in OracleStatus}
            rows.append(
                (
                    group,
                    backend,
                    len(plans),
                    f"{sum(p.ok for p in plans) / len(plans):.0%}",
                    count[OracleStatus.OPTIMAL],
                    count[OracleStatus.FEASIBLE_WITH_GAP],
                    count[OracleStatus.INFEASIBLE],
                    count[OracleStatus.TIME_LIMIT],
                    f"{np.median(times):.3f}",
                    f"{np.quantile(times, 0.9):.3f}",
                    f"{times.max():.3f}",
                )
            )
        if len(args.backends) == 2:
            a, b = args.backends
            common = sorted(set(results[a]) & set(results[b]))
            same_status = sum(results[a][s].status is results[b][s].status for s in common)
            both = [s for s in common if results[a][s].ok and results[b][s].ok]
            rel = [abs(results[a][s].cost - results[b][s].cost) / max(abs(results[b][s].cost), 1e-12) for s in both]
            same_contacts = sum(
                np.array_equal(results[a][s].facets, results[b][s].facets)
                and np.allclose(results[a][s].fractions, results[b][s].fractions)
                for s in both
            )
            agreements.append(
                (group, len(common), same_status, len(both), same_contacts, f"{max(rel):.1e}" if rel else "-")
            )

    header = (
        "facets",
        "backend",
        "tasks",
        "feasible",
        "optimal",
        "gap",
        "infeas",
        "timeout",
        "median s",
        "p90 s",
        "max s",
    )
    print(f"\nK = {args.candidates_per_facet} candidates per facet, seeds from {args.seed}")
    print_table(header, rows)
    if agreements:
        print()
        print_table(
            ("facets", "compared", "same status", "both feasible", "same contacts", "max rel cost diff"), agreements
        )
    return 0


def print_table(header: tuple, rows: list[tuple]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = "  ".join(f"{h:>{w}}" for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(f"{str(x):>{w}}" for x, w in zip(row, widths)))


if __name__ == "__main__":
    raise SystemExit(main())
