#!/usr/bin/env python
"""Speed figures of dlm-gym, printed as a table and optionally written as JSON.

Each figure has a stable JSON key (documented in the README):

- ``env_episode_s``: median wall seconds of one full episode (reset with its
  5-frame target video, then T = 5 steps with their observation frames) on one core.
- ``env_steps_per_s``: environment steps per second over the same episodes,
  resets and rendering included.
- ``oracle_solve_s_median`` / ``oracle_solve_s_p90``: MIQP oracle solve time
  per task over the family split (the paper's Gurobi oracle: 0.57 s).
- ``oracle_floor_ratio_<split>``: median object-trajectory loss of the oracle
  plan executed in the env, divided by the do-nothing median, per split
  (the benchmark floor: at most 0.10 on family and test).
- ``qp_forward_s`` / ``qp_backward_s``: the QP layer (eq. 6), seconds per
  sample at batch 32, fastest backend (``qp_<backend>_*`` for each).
- ``sim_grad_fd_backward_s``: L_sim gradient by central finite differences
  over the pymunk scene, seconds per datapoint (batch 16, both cores).
- ``sim_grad_autodiff_backward_s``: the same through the smoothed-contact
  torch simulator (forward and backward), seconds per datapoint (batch 16).
- ``dlm_forward_s``: the DLM network, video to finger commands (encoder,
  decoder, QP), seconds per datapoint at batch 32.

Examples:
    python examples/benchmark.py
    python examples/benchmark.py --episodes 500 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from dlm_gym import cli
from dlm_gym.atomic import atomic_write


def bench_env(episodes: int, seed: int) -> dict[str, float]:
    """Time full episodes of VideoPlanarManip-v0 with random actions."""
    from dlm_gym.envs.video_planar_manip import VideoPlanarManipEnv

    env = VideoPlanarManipEnv()
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(env.config.horizon)]
    env.reset(seed=seed)  # warm-up: imports, first render surface
    durations, steps = [], 0
    for i in range(episodes):
        start = time.perf_counter()
        env.reset(seed=seed + i)
        for a in actions:
            env.step(a)
        durations.append(time.perf_counter() - start)
        steps += len(actions)
    return {"env_episode_s": float(np.median(durations)), "env_steps_per_s": steps / float(np.sum(durations))}


def bench_oracle(repeats: int = 1) -> dict[str, float]:
    """Oracle solve times on the family split and the executed-plan floor on every shipped split."""
    import policies
    from dlm_gym.datasets import available_splits, load_split
    from dlm_gym.oracle import solve_oracle

    family = load_split("family")
    times = []
    for task in family.tasks:
        best = min(solve_oracle(task).solve_time_s for _ in range(repeats))
        times.append(best)
    out = {"oracle_solve_s_median": float(np.median(times)), "oracle_solve_s_p90": float(np.percentile(times, 90))}
    noop = policies.make_policy("noop")
    for name in available_splits():
        split = load_split(name)
        ceiling = np.median([r.loss for r in policies.evaluate(noop, split.tasks, progress=False)])
        out[f"oracle_floor_ratio_{name}"] = float(np.median(split.oracle_loss) / ceiling)
    return out


def bench_learning(batch: int = 32) -> dict[str, float]:
    """QP layer, simulator gradients and the DLM forward pass."""
    import torch

    from policies.diffsim import bench_autodiff
    from policies.models import DLMNet
    from policies.qp import bench_qp
    from policies.simgrad import bench_fd

    out = {}
    qp = bench_qp(batch, backends=("torch", "cvxpylayers"))
    for key, value in qp.items():
        if key.endswith(("_forward_s", "_backward_s")):
            out[key if key.startswith("qp_") else f"qp_{key}"] = float(value)
    out.update(bench_fd(16))
    out.update(bench_autodiff(16))
    model = DLMNet().eval()  # timing does not depend on the weights
    video = torch.rand(batch, model.config.horizon, 3, model.config.frame_size, model.config.frame_size)
    with torch.no_grad():
        model.commands(video)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            model.commands(video)
            times.append((time.perf_counter() - start) / batch)
    out["dlm_forward_s"] = float(np.median(times))
    return out


SECTIONS = {"env": lambda args: bench_env(args.episodes, args.seed), "oracle": lambda args: bench_oracle(),
            "learning": lambda args: bench_learning()}


def main(argv=None) -> int:
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=cli.positive_int, default=200,
                   help="episodes timed for the env figures (default: 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the tasks and actions (default: 0)")
    p.add_argument(
        "--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS),
        help="sections to run (default: all of %(choices)s)",
    )
    p.add_argument("--json", type=cli.output_file, default=None, metavar="PATH",
                   help="also write the figures as JSON to PATH (checked before the run starts)")
    args = p.parse_args(argv)
    figures: dict[str, float] = {}
    for name in args.only:
        figures.update(SECTIONS[name](args))

    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key.ljust(width)}  {value:.6g}")
    if args.json is not None:
        try:
            _write_atomically(args.json, json.dumps(figures, indent=2, sort_keys=True))
        except OSError as exc:  # the path was checked up front; this is the disk or a folder changed meanwhile
            return cli.fail(f"could not write {args.json}: {exc}")
        print(f"wrote {args.json}")
    return 0


def _write_atomically(path: Path, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)



if __name__ == "__main__":
    sys.exit(main())
