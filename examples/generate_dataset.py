#!/usr/bin/env python
"""Generate the dataset splits: sample tasks (Appendix A), label them with the MIQP oracle, render their videos.

Each split is written to OUT/<name>.npz (see dlm_gym.datasets for the layout).
Tasks whose oracle problem is infeasible (or times out) are rejected and
resampled; the rejection rate is reported. The splits depend only on their
sizes and seeds, never on --workers.

Examples:
    python examples/generate_dataset.py                       # every split, shipped defaults
    python examples/generate_dataset.py --split train --size 200 --out /tmp/big
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from dlm_gym import cli
from dlm_gym.datasets import DATA_DIR, SPLIT_SPECS, generate_split


def main(argv=None) -> int:
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--split",
        nargs="+",
        default=list(SPLIT_SPECS),
        choices=list(SPLIT_SPECS),
        help="splits to generate (default: all of %(choices)s; the *_xl ones are the large held-out "
        "evaluation splits)",
    )
    p.add_argument(
        "--size", type=cli.positive_int, default=None, help="tasks per split (default: the paper's sizes: train 20, "
        "finetune 20, test 40, family 40; smooth 20; and family_xl 500, test_xl 500, smooth_xl 200)"
    )
    p.add_argument(
        "--seed-offset", type=int, default=0,
        help="added to every split's first task seed (default: 0, the shipped splits)",
    )
    p.add_argument("--workers", type=cli.positive_int, default=os.cpu_count() or 1,
                   help="oracle processes (default: all cores)")
    p.add_argument("--time-limit", type=cli.finite_positive_float, default=30.0,
                   help="oracle time limit per task, seconds (default: 30)")
    p.add_argument("--out", type=cli.output_dir, default=DATA_DIR, help=f"output directory (default: {DATA_DIR})")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = p.parse_args(argv)  # paths and numbers are checked here, before hours of oracle solves

    print(f"{'split':<10} {'tasks':>5} {'candidates':>10} {'rejected':>8} {'rate':>6}  oracle solve s (median / p90)")
    for name in args.split:
        spec = SPLIT_SPECS[name]
        spec = dataclasses.replace(
            spec, size=args.size or spec.size, seed=spec.seed + args.seed_offset
        )
        try:
            path, stats = generate_split(
                name, spec, out_dir=args.out, workers=args.workers, time_limit=args.time_limit,
                progress=not args.no_progress,
            )
        except cli.USER_ERRORS as exc:
            return cli.fail(exc)
        print(
            f"{name:<10} {stats['size']:>5} {stats['candidates']:>10} {sum(stats['rejected'].values()):>8} "
            f"{stats['rejection_rate']:>6.1%}  {stats['solve_s_median']:.3f} / {stats['solve_s_p90']:.3f}"
            f"   -> {path}  {json.dumps(stats['rejected'])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
