"""Comparisons of zoo policies over task sets: the rows behind Table 1."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.datasets import available_splits, load_split
from dlm_gym.task import Task, sample_task
from policies.registry import make_policy
from policies.rollout import EpisodeResult, evaluate, summarize

__all__ = ["task_sets", "compare", "format_table"]


def task_sets(
    splits: Sequence[str] | None = None,
    *,
    generated: int = 0,
    seed: int = 0,
    config: SceneConfig = DEFAULT_CONFIG,
) -> dict[str, list[Task]]:
    """Named task lists: the given (or all shipped) splits, plus ``generated`` fresh tasks from ``seed``."""
    names = list(available_splits()) if splits is None else list(splits)
    sets = {name: list(load_split(name).tasks) for name in names}
    if generated:
        # Seeds far from the shipped splits' so that fresh tasks are unseen ones.
        sets["generated"] = [
            sample_task(10_000_000 + seed * 100_003 + i, config=config, name=f"generated/{i}")
            for i in range(generated)
        ]
    return sets


def compare(
    policy_names: Sequence[str],
    sets: dict[str, list[Task]],
    *,
    progress: bool = True,
    record: bool = False,
) -> tuple[list[dict], dict[tuple[str, str], list[EpisodeResult]]]:
    """Evaluate each policy on each task set; returns summary rows and the raw results."""
    rows, raw = [], {}
    for name in policy_names:
        policy = make_policy(name)
        for split, tasks in sets.items():
            results = evaluate(policy, tasks, record=record, progress=progress, desc=f"{name} on {split}")
            raw[(name, split)] = results
            rows.append({"policy": name, "split": split, **summarize(results)})
    return rows, raw


def format_table(rows: list[dict]) -> str:
    """Policies as rows, splits as columns: ``mean +- std`` loss, and the mean forward time."""
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    splits = list(dict.fromkeys(r["split"] for r in rows))
    cell = {(r["policy"], r["split"]): r for r in rows}
    header = ["policy", *splits, "forward (s)"]
    lines = []
    for p in policies:
        line = [p]
        for s in splits:
            r = cell.get((p, s))
            line.append("-" if r is None else f"{r['loss_mean']:.2f} ± {r['loss_std']:.2f}")
        fwd = [cell[(p, s)]["forward_s"] for s in splits if (p, s) in cell]
        line.append(f"{np.mean(fwd):.2e}")
        lines.append(line)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths))  # noqa: E731
    out = [fmt(header), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines]
    return "\n".join(out)


def plot_learning_curves(logs: Sequence, out_path):
    """Draw training curves like the paper's Fig. 6 from learning-curve CSV logs; returns the PNG path.

    Two log formats are read: staged logs of :mod:`policies.training`
    (``stage, iteration, loss, executed_<split>...``; stages are laid end to
    end with their boundaries marked) and the PPO log (``timesteps,
    train_loss_mean, val_loss_mean``). Object-trajectory losses share a log
    scale so that the do-nothing level and the oracle's are comparable.
    """
    import csv
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = [Path(p) for p in logs]
    if not logs:
        raise ValueError("no learning-curve logs to plot; train a policy first (python examples/train.py)")
    cols = min(3, len(logs))
    rows_n = -(-len(logs) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 3.6 * rows_n), squeeze=False)
    for ax in axes.flat[len(logs):]:
        ax.set_visible(False)
    for ax, path in zip(axes.flat, logs):
        with path.open() as handle:
            rows = list(csv.DictReader(handle))
        if not rows:
            raise ValueError(f"{path} is empty")

        def series(key, x_key):
            pts = [(float(r[x_key]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
            return zip(*pts) if pts else ((), ())

        if "timesteps" in rows[0]:
            for key, label in (("train_loss_mean", "training episodes"), ("val_loss_mean", "held-out tasks")):
                ax.plot(*series(key, "timesteps"), label=label)
            ax.set_xlabel("environment steps")
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        else:
            # lay the stages end to end: each starts where the previous one ended
            stages = list(dict.fromkeys(r["stage"] for r in rows))
            length = {st: 1 + max(int(r["iteration"]) for r in rows if r["stage"] == st) for st in stages}
            start = dict(zip(stages, np.cumsum([0] + [length[st] for st in stages[:-1]])))
            for r in rows:
                r["_x"] = start[r["stage"]] + int(r["iteration"])
            for st in stages[1:]:
                ax.axvline(start[st], color="grey", lw=0.5)
            for key in rows[0]:
                if key.startswith("executed_"):
                    ax.plot(*series(key, "_x"), label=key.removeprefix("executed_"))
            ax.set_xlabel("iteration (" + " -> ".join(stages) + ")")
        ax.set_yscale("log")
        ax.set_ylabel("object-trajectory loss (cm$^2$)")
        ax.set_title(path.stem.removesuffix("_log"))
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
