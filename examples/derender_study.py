#!/usr/bin/env python
"""How well does the video alone pin down the task? Derendering accuracy and vision_miqp's loss on a split.

For each task of a split: the task estimated from its video
(``policies.oracle.derender.estimate_task``) against the true one (positions,
rotations relative to the first frame, the outline), and the executed loss
of ``vision_miqp`` beside the stored oracle floor. Tune on splits of your own
seeds only, e.g. made by::

    python examples/generate_dataset.py --split family --size 100 --seed-offset 500000 --out /tmp/val

Examples:
    python examples/derender_study.py --split /tmp/val/family.npz
    python examples/derender_study.py --split family --tasks 20 --no-loss
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np

from dlm_gym import cli


def main(argv=None) -> int:
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", type=cli.split_name_or_file, required=True, help="a split name or .npz file")
    p.add_argument("--tasks", type=cli.positive_int, default=None, help="only its first N tasks (default: all)")
    p.add_argument("--no-loss", action="store_true", help="measure the estimates only, do not play vision_miqp")
    args = p.parse_args(argv)

    import policies
    from dlm_gym.datasets import DatasetError, load_split
    from policies import DerenderError
    from policies.common.statistics import mean_ci
    from policies.oracle.derender import estimate_task, outline_error, pose_errors

    try:
        split = load_split(str(args.split))
    except DatasetError as exc:
        return cli.fail(exc)
    n = len(split) if args.tasks is None else min(args.tasks, len(split))
    position, rotation, outline, failed = [], [], [], 0
    for i in range(n):
        try:
            estimate = estimate_task(split.videos[i])
        except DerenderError:
            failed += 1
            continue
        errors = pose_errors(estimate, split.tasks[i])
        position.append(errors["position_m"].max())
        rotation.append(np.degrees(errors["rotation_rad"].max()))
        outline.append(outline_error(estimate, split.tasks[i]))
    print(f"{split.name}: {n} tasks, {failed} not derendered; median over tasks of the largest error over keyframes")
    print(f"  position  {1e3 * np.median(position):6.2f} mm   (p90 {1e3 * np.percentile(position, 90):.2f})")
    print(f"  rotation  {np.median(rotation):6.2f} deg  (p90 {np.percentile(rotation, 90):.2f}), relative to frame 0")
    print(f"  outline   {1e3 * np.median(outline):6.2f} mm   (p90 {1e3 * np.percentile(outline, 90):.2f}), frame 0")
    if not args.no_loss:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a task the oracle finds infeasible: the policy keeps clear
            results = policies.evaluate(policies.make_policy("vision_miqp"), split.tasks[:n], progress=False)
        print(f"  vision_miqp {mean_ci([r.loss for r in results])} cm^2, oracle floor {mean_ci(split.oracle_loss[:n])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
