#!/usr/bin/env python
"""The RL study's learning curves and table: executed validation loss against env steps, with noop and the oracle.

Reads finished runs of ``examples/rl_study.py`` (from scratch, state
observations; ``curve.csv`` + ``summary.json``) and of
``examples/rl_finetune.py`` (pixel PPO started from ``nn``; ``ppo_log.csv`` +
``summary.json``) and draws one panel for each family (their validation tasks
differ: seeds from 850,000 for the study, from 800,000 for the fine-tuning,
both our own). Each panel has the ``noop`` level and the privileged oracle's
(``miqp``, evaluated here on the same tasks) as horizontal lines; the fine-tuning
panel marks where ``nn``'s critic warm-up ends and PPO starts.

It prints the study's table (markdown): algorithm, observation,
initialisation, env steps, wall time, steps per second, the final validation
loss with its 95 % interval and the paired difference against ``noop`` (and
against ``nn`` for the fine-tuned runs).

Example (the README's figure and table)::

    python examples/rl_curves.py --scratch runs/rl_state_seeds/seed0 runs/rl_state_seeds/seed1 \\
        runs/rl_state_seeds/seed2 runs/rl_study/ppo_markov_rel runs/rl_study/sac_markov_rel \\
        --finetune runs/rl_finetune/seed0 runs/rl_finetune/seed1 runs/rl_finetune/seed2 \\
        --figure docs/figures/rl_curves.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dlm_gym import cli


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--scratch", nargs="*", type=cli.existing_dir, default=[], metavar="DIR", help="rl_study.py run folders"
    )
    p.add_argument(
        "--finetune", nargs="*", type=cli.existing_dir, default=[], metavar="DIR", help="rl_finetune.py run folders"
    )
    p.add_argument("--figure", type=cli.output_file, default=None, help="write the figure (PNG) here")
    return p


def _read_run(folder: Path, curve_name: str) -> tuple[dict, list[dict]]:
    from policies.common.curves import read_curve

    summary_path, curve_path = folder / "summary.json", folder / curve_name
    for path in (summary_path, curve_path):
        if not path.is_file():
            raise ValueError(f"{folder} is not a finished run: it has no {path.name}")
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{summary_path} is not JSON ({exc.msg})") from None
    return summary, read_curve(curve_path)


def _validated(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    kept = [r for r in rows if r.get("executed_validation") not in ("", None)]
    return np.array([int(r["step"]) for r in kept]), np.array([float(r["executed_validation"]) for r in kept])


def _fmt(interval: dict) -> str:
    return f"{interval['mean']:.2f} [{interval['ci_low']:.2f}, {interval['ci_high']:.2f}]"


def scratch_row(folder: Path) -> tuple[str, dict, list[dict]]:
    summary, rows = _read_run(folder, "curve.csv")
    obs = "state + " + " + ".join(summary["wrappers"]) if summary["wrappers"] else "state"
    seed = summary.get("config", {}).get("seed", "?")
    line = (
        f"| {summary['algo'].upper()} | {obs} | scratch (seed {seed}) | {summary['steps']:,} | "
        f"{summary['wall_seconds'] / 60:.0f} min | {summary['steps_per_second']:.0f} | "
        f"{_fmt(summary['final_validation'])} | {_fmt(summary['difference_vs_noop'])} | – |"
    )
    return line, summary, rows


def finetune_row(folder: Path) -> tuple[str, dict, list[dict]]:
    summary, rows = _read_run(folder, "ppo_log.csv")
    cfg, rl = summary["config"], summary["stages"]["RL"]
    steps = summary["stages"]["critic"]["steps"] + rl["steps"]
    line = (
        f"| PPO | pixels (StackVideoChannels) | nn, critic warm-up (seed {cfg['seed']}) | "
        f"{summary['stages']['critic']['steps']:,} + {rl['steps']:,} | {summary['wall_seconds'] / 60:.0f} min | "
        f"{steps / summary['wall_seconds']:.0f} | {_fmt(summary['ppo_validation'])} | "
        f"{_fmt(summary['ppo_minus_noop'])} | {_fmt(summary['ppo_minus_nn'])} |"
    )
    return line, summary, rows


def oracle_level(first_seed: int, n: int) -> float:
    """``miqp``'s mean loss on the ``n`` validation tasks the runs used (their seeds from ``first_seed``)."""
    import policies
    from dlm_gym.task import sample_task

    if first_seed == 800_000:
        from policies.rl.callbacks import validation_tasks

        tasks = validation_tasks(n)
    else:  # rl_study's: the first n seeds from first_seed that make a task
        from dlm_gym.geometry import InvalidPolygonError

        tasks, seed = [], first_seed
        while len(tasks) < n:
            try:
                tasks.append(sample_task(seed, n_facets=(4, 6)))
            except (ValueError, InvalidPolygonError):
                pass
            seed += 1
    return float(np.mean([r.loss for r in policies.evaluate(policies.make_policy("miqp"), tasks, progress=False)]))


def plot(scratch: list, finetune: list, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(name, runs) for name, runs in (("from scratch", scratch), ("from nn", finetune)) if runs]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    for ax, (name, runs) in zip(axes[0], panels):
        summary0 = runs[0][1]
        n = summary0["validation_tasks"]
        first = summary0["validation_seeds"][0] if "validation_seeds" in summary0 else 800_000
        noop = summary0["noop_validation"]["mean"]
        ax.axhline(noop, color="0.4", ls="--", lw=1.2, label=f"noop {noop:.1f}")
        oracle = oracle_level(first, n)
        ax.axhline(oracle, color="0.4", ls=":", lw=1.2, label=f"oracle (miqp) {oracle:.2f}")
        for _, summary, rows in runs:
            steps, losses = _validated(rows)
            if name == "from scratch":
                wrappers = "+".join(summary["wrappers"]) or "state"
                label = f"{summary['algo'].upper()} {wrappers} s{summary['config']['seed']}"
            else:
                label = f"PPO from nn s{summary['config']['seed']}"
                ax.axvline(summary["stages"]["critic"]["steps"], color="0.8", lw=0.8)
            ax.plot(steps, losses, marker=".", lw=1.2, label=label)
        ax.set_title(f"{name}: {n} validation tasks, seeds from {first:,}", fontsize=10)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("executed validation loss (cm$^2$)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("RL on VideoPlanarManip-v0: deterministic policy on held-out validation tasks", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        read = [(f, scratch_row(f)) for f in args.scratch] + [(f, finetune_row(f)) for f in args.finetune]
    except KeyError as exc:
        return cli.fail(
            f"a run's summary.json has no {exc}: give rl_study.py runs to --scratch, rl_finetune.py runs to --finetune"
        )
    except (ValueError, OSError) as exc:
        return cli.fail(exc)
    lines = [line for _, (line, _, _) in read]
    runs = [(f, summary, rows) for f, (_, summary, rows) in read]
    scratch, finetune = runs[: len(args.scratch)], runs[len(args.scratch) :]
    header = ("algorithm", "observation", "initialisation", "env steps", "wall", "steps/s", "validation")
    print("| " + " | ".join(header) + " | minus noop | minus nn |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(lines))
    if args.figure is not None:
        print(f"wrote {plot(scratch, finetune, args.figure)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
