#!/usr/bin/env python
"""How far the smoothed torch simulator (policies.dlm.diffsim) is from pymunk, and how fast it is.

For sampled tasks of three shape families, rolls out squeeze-and-carry and
do-nothing commands in both simulators and prints the largest position and
angle gap of each rollout (median and 90th percentile), the loss between the
two trajectories, and the L_sim each simulator gives; then times the autodiff
L_sim backward. These are the figures quoted in policies/dlm/diffsim.py.

Examples:
    python examples/diffsim_study.py                  # 64 tasks per family, then the timings
    python examples/diffsim_study.py --tasks 16 --no-bench
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from dlm_gym import cli


def draw(n: int, first: int, **kwargs) -> list:
    """``n`` sampled tasks from seed ``first`` on, skipping seeds the generator gives up on."""
    from dlm_gym.task import sample_task

    tasks, seed = [], first
    while len(tasks) < n:
        try:
            tasks.append(sample_task(seed, **kwargs))
        except RuntimeError:
            pass
        seed += 1
    return tasks


def main(argv=None) -> int:
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=cli.positive_int, default=64, help="sampled tasks per shape family (default: 64)")
    p.add_argument("--no-bench", action="store_true", help="skip the autodiff timings")
    args = p.parse_args(argv)

    from benchmark import bench_autodiff  # examples/benchmark.py, beside this script

    from dlm_gym.actions import noop_commands
    from policies.baselines import squeeze_commands
    from policies.dlm.diffsim import discrepancy

    n = args.tasks
    sets = {
        "4-6 facets": draw(n, 1000),
        "12 facets": draw(n, 2000, n_facets=12),
        "smooth": draw(n, 3000, shape="smooth"),
    }
    print(f"torch model vs pymunk, {n} sampled tasks per set (errors: max over the T keyframes of a rollout)")
    for name, tasks in sets.items():
        for kind, cmds in (
            ("squeeze", np.stack([squeeze_commands(t) for t in tasks])),
            ("do-nothing", np.stack([noop_commands()] * len(tasks))),
        ):
            d = discrepancy(tasks, cmds)
            pos, ang, tl = d["position_mm"], d["angle_deg"], d["traj_loss"]
            print(
                f"{name:>10} {kind:>10}: position mm median {np.median(pos):5.2f} p90 {np.percentile(pos, 90):6.2f} "
                f"max {pos.max():6.1f} | angle deg median {np.median(ang):4.2f} p90 {np.percentile(ang, 90):5.2f} | "
                f"L(torch, pymunk) cm^2 median {np.median(tl):.4f} mean {tl.mean():.3f} | "
                f"L_sim mean pymunk {d['loss_pymunk'].mean():.3f} torch {d['loss_torch'].mean():.3f}"
            )
    if not args.no_bench:
        print(bench_autodiff(16), "(eager, batch 16)")
        print(bench_autodiff(64, repeats=2), "(eager, batch 64)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
