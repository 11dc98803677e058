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
- ``dlm_forward_s``: the shipped ``dlm`` (large-data KeypointDLM), video to
  finger commands (learned poses, outline, contact-mode classifier, the QP on
  its proposals, command head), seconds per datapoint at batch 32 of family
  videos; ``dlm_network_s`` its neural part alone (pose network and
  classifier on the derendered batch); ``dlm_paper_forward_s`` the paper's
  DLMNet (encoder, decoder, QP layer).

Examples:
    python examples/benchmark.py
    python examples/benchmark.py --episodes 500 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlm_gym import cli
from dlm_gym.atomic import atomic_write
from dlm_gym.config import DEFAULT_CONFIG


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


# ------------------------------------------------------------------ the learning pieces, one function each
def _time_backend(layer, problem: dict, repeats: int, warmup: int) -> tuple[float, float]:
    """Median forward and backward seconds (whole batch) with gradients w.r.t. every input."""
    import torch

    gen = torch.Generator().manual_seed(0)
    fwd, bwd = [], []
    for i in range(warmup + repeats):
        inputs = {k: v.detach().clone().requires_grad_(True) for k, v in problem.items()}
        t0 = time.perf_counter()
        sol = layer(**inputs)
        t1 = time.perf_counter()
        loss = sum((x * torch.randn(x.shape, generator=gen, dtype=x.dtype)).sum() for x in sol)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        if i >= warmup:
            fwd.append(t1 - t0)
            bwd.append(t3 - t2)
    return float(np.median(fwd)), float(np.median(bwd))


def bench_qp(
    batch: int,
    *,
    backends: Sequence[str] = ("torch", "cvxpylayers", "cvxpylayers:Clarabel"),
    horizon: int = DEFAULT_CONFIG.horizon,
    repeats: int | None = None,
    dtype=None,
    seed: int = 0,
) -> dict:
    """Time the QP layer: forward and backward seconds per sample (a sample is T keyframes).

    ``backends`` are backend names, optionally ``"cvxpylayers:<solver>"``.
    Returns ``{"qp_forward_s", "qp_backward_s"}`` for the fastest one (by forward
    + backward), ``"qp_fastest_backend"``, and per backend ``"<name>_forward_s"``
    / ``"<name>_backward_s"`` (``name`` with ``:`` replaced by ``_``, lower case).
    Inputs are :func:`random_qp_problem` in ``dtype`` with gradients w.r.t. all
    of them; the backward includes a random linear loss of every output. Medians
    over ``repeats`` (default 50 for torch, 3 for cvxpylayers) after warm-up.
    """
    import torch

    from policies.dlm.qp import InverseDynamicsQP, random_qp_problem

    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    problem = random_qp_problem(batch, horizon, seed=seed, dtype=dtype or torch.float32)
    out: dict[str, Any] = {"qp_batch": batch, "qp_horizon": horizon, "qp_threads": torch.get_num_threads()}
    best = None
    for spec in backends:
        backend, _, solver = spec.partition(":")
        layer = InverseDynamicsQP(backend, **({"solver": solver} if solver else {}))
        fast = backend == "torch"
        reps = repeats if repeats is not None else (50 if fast else 3)
        f, b = _time_backend(layer, problem, reps, warmup=5 if fast else 1)
        key = spec.replace(":", "_").lower()
        out[f"{key}_forward_s"] = f / batch
        out[f"{key}_backward_s"] = b / batch
        if best is None or f + b < best[1] + best[2]:
            best = (spec, f, b)
    if best is None:
        raise ValueError("bench_qp needs at least one backend")
    out["qp_fastest_backend"] = best[0]
    out["qp_forward_s"] = best[1] / batch
    out["qp_backward_s"] = best[2] / batch
    return out


def bench_fd(
    n: int = 16,
    *,
    seed: int = 0,
    repeats: int = 2,
    workers: int | None = None,
    chain: bool = False,
    commands: str = "squeeze",
) -> dict:
    """Seconds per datapoint of :func:`policies.dlm.simgrad.fd_gradient` (the backward of ``L_sim``), ``n`` tasks.

    The commands are :func:`policies.baselines.squeeze_commands` (both fingers in contact all the
    time: the costly case) or ``commands="noop"``. The pool is warmed up
    first; the best of ``repeats`` timed calls is reported.
    """
    from dlm_gym.actions import noop_commands
    from dlm_gym.task import sample_task
    from policies.baselines import squeeze_commands
    from policies.dlm.simgrad import fd_gradient

    tasks = [sample_task(seed + i) for i in range(n)]
    if commands == "squeeze":
        cmds = np.stack([squeeze_commands(t) for t in tasks])
    elif commands == "noop":
        cmds = np.stack([noop_commands()] * n)
    else:
        raise ValueError(f"commands must be 'squeeze' or 'noop', got {commands!r}")
    m = max(1, min(n, 2))
    fd_gradient(tasks[:m], cmds[:m], workers=workers, chain=chain)  # start the pool
    best = np.inf
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fd_gradient(tasks, cmds, workers=workers, chain=chain)
        best = min(best, time.perf_counter() - start)
    return {"sim_grad_fd_backward_s": best / n}


def bench_autodiff(n: int = 16, *, seed: int = 0, repeats: int = 3, dtype=None, compile: bool = False) -> dict:
    """Seconds per datapoint of the autodiff ``L_sim`` backward (forward + backward) at batch ``n``.

    Inputs are those of :func:`bench_fd` (sampled tasks,
    squeeze-and-carry commands). Eager by default; ``compile=True`` times the
    ``torch.compile`` path after a warm-up call that compiles it. The best of
    ``repeats`` timed calls.
    """
    import math

    import torch

    from dlm_gym.task import sample_task
    from policies.baselines import squeeze_commands
    from policies.dlm.diffsim import sim_loss_autodiff

    tasks = [sample_task(seed + i) for i in range(n)]
    cmds = torch.as_tensor(np.stack([squeeze_commands(t) for t in tasks]), dtype=dtype or torch.float32)
    if compile:
        sim_loss_autodiff(tasks, cmds.clone().requires_grad_(True), compile=True).sum().backward()
    best = math.inf
    for _ in range(max(1, repeats)):
        c = cmds.clone().requires_grad_(True)
        start = time.perf_counter()
        sim_loss_autodiff(tasks, c, compile=compile).sum().backward()
        best = min(best, time.perf_counter() - start)
    return {"sim_grad_autodiff_backward_s": best / n}


def bench_learning(batch: int = 32) -> dict[str, float]:
    """QP layer, simulator gradients and the DLM forward pass."""
    import torch

    from policies.dlm.models import DLMNet

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
    out["dlm_paper_forward_s"] = float(np.median(times))
    out.update(bench_dlm(batch))
    return out


def bench_dlm(batch: int = 32, repeats: int = 3) -> dict[str, float]:
    """The shipped large-data ``dlm`` on ``batch`` family videos: the whole plan, and its networks alone."""
    import torch

    from dlm_gym.datasets import load_split
    from policies.common.paths import CHECKPOINT_DIR
    from policies.dlm.models import load_checkpoint
    from policies.dlm.networks import video_to_tensor

    model, _ = load_checkpoint(CHECKPOINT_DIR / "dlm.pt")
    videos = np.asarray(load_split("family_xl").videos[:batch])
    whole, nets = [], []
    model.plan_videos(videos)
    for _ in range(repeats):
        start = time.perf_counter()
        model.plan_videos(videos)
        whole.append((time.perf_counter() - start) / batch)
        der = model.derender(videos)
        inputs = model.mode_inputs(der.tasks)
        start = time.perf_counter()
        with torch.no_grad():
            model.poses(video_to_tensor(videos))
            model.contact_mode(inputs.candidates, inputs.context, inputs.valid)
        nets.append((time.perf_counter() - start) / batch)
    return {"dlm_forward_s": float(np.median(whole)), "dlm_network_s": float(np.median(nets))}


SECTIONS = {
    "env": lambda args: bench_env(args.episodes, args.seed),
    "oracle": lambda args: bench_oracle(),
    "learning": lambda args: bench_learning(),
}


def main(argv=None) -> int:
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--episodes", type=cli.positive_int, default=200, help="episodes timed for the env figures (default: 200)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the tasks and actions (default: 0)")
    p.add_argument(
        "--only",
        nargs="+",
        choices=list(SECTIONS),
        default=list(SECTIONS),
        help="sections to run (default: all of %(choices)s)",
    )
    p.add_argument(
        "--json",
        type=cli.output_file,
        default=None,
        metavar="PATH",
        help="also write the figures as JSON to PATH (checked before the run starts)",
    )
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
