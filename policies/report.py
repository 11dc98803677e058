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
