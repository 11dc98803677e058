"""Comparisons of zoo policies over task sets: the rows behind Table 1."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.datasets import SEED_RANGES, available_splits, load_split
from dlm_gym.task import Task, sample_task
from policies.common.registry import make_policy_or_spec
from policies.common.rollout import EpisodeResult, evaluate, summarize
from policies.common.statistics import mean_ci, paired_difference

__all__ = ["task_sets", "compare", "results_metadata", "neighbour_differences", "format_table", "FLOOR", "CEILING"]


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
        first = SEED_RANGES["generated"][0] + seed * 100_003  # a range no split or training run draws from
        sets["generated"] = [sample_task(first + i, config=config, name=f"generated/{i}") for i in range(generated)]
    return sets


FLOOR = "oracle (floor)"
"""The row of the split's stored oracle losses (the MIQP plan executed in the env): what any policy can reach."""
CEILING = "noop"
"""The do-nothing policy: its row is the ceiling of every comparison."""


def _evaluate_chunk(args) -> list[EpisodeResult]:
    name, kwargs, tasks = args
    import torch

    torch.set_num_threads(1)  # one worker per core
    return evaluate(make_policy_or_spec(name, **kwargs), tasks, progress=False)


def _evaluate(name: str, kwargs: dict, tasks: list[Task], *, workers: int, progress: bool, record: bool, desc: str):
    """One policy on one task list, serially or split into ``workers`` contiguous chunks (same results)."""
    if workers <= 1 or record or len(tasks) < 2 * workers:
        return evaluate(make_policy_or_spec(name, **kwargs), tasks, record=record, progress=progress, desc=desc)
    import concurrent.futures
    import multiprocessing

    size = -(-len(tasks) // workers)
    chunks = [(name, kwargs, tasks[i : i + size]) for i in range(0, len(tasks), size)]
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        return [r for part in pool.map(_evaluate_chunk, chunks) for r in part]


def results_metadata(sets: dict[str, list[Task]], *, generated_seed: int | None = None) -> dict:
    """What makes a results file reproducible: versions, the code's commit, split checksums, seeds, bootstrap."""
    import hashlib
    import subprocess

    import dlm_gym
    from dlm_gym.datasets import split_path
    from policies.common.paths import REPO_ROOT
    from policies.common.statistics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE

    root = REPO_ROOT
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    splits = {}
    for name, tasks in sets.items():
        entry = {"tasks": len(tasks), "seeds": [t.seed for t in tasks][:1] + [t.seed for t in tasks][-1:]}
        path = split_path(name)
        if path.exists():
            entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        splits[name] = entry
    return {
        "dlm_gym_version": dlm_gym.__version__,
        "env_id": "VideoPlanarManip-v0",
        "physics_version": dlm_gym.PHYSICS_VERSION,
        "commit": commit,
        "uncommitted_changes": dirty,
        "splits": splits,
        "generated_seed": generated_seed,
        "bootstrap": {
            "method": "percentile",
            "resamples": BOOTSTRAP_RESAMPLES,
            "seed": BOOTSTRAP_SEED,
            "confidence": CONFIDENCE,
        },
    }


def _stored_floor(split: str, tasks: list[Task]) -> np.ndarray | None:
    """The stored oracle losses of ``tasks`` when they are tasks of the stored split ``split``, else None."""
    try:
        stored = load_split(split)
    except Exception:  # not a stored split (e.g. generated tasks): the floor is a live miqp run
        return None
    index = {t.name: i for i, t in enumerate(stored.tasks)}
    found = [index.get(t.name) for t in tasks]
    rows = [i for i in found if i is not None]
    if len(rows) != len(tasks) or any(stored.tasks[i] != t for i, t in zip(rows, tasks)):
        return None
    return np.asarray(stored.oracle_loss, dtype=np.float64)[rows]


def compare(
    policy_names: Sequence[str],
    sets: dict[str, list[Task]],
    *,
    progress: bool = True,
    record: bool = False,
    workers: int = 1,
    policy_kwargs: dict[str, dict] | None = None,
) -> tuple[list[dict], dict[tuple[str, str], list[EpisodeResult]]]:
    """Evaluate each policy on each task set, always beside the oracle floor and the do-nothing ceiling.

    ``policy_names`` are zoo names or user policy specs, ``package.module:Class`` or
    ``path/to/file.py:Class`` (:func:`policies.common.registry.load_policy_spec`; its rows carry the spec as
    their name). ``policy_kwargs`` maps a name to keyword arguments of :func:`make_policy` (a
    ``checkpoint``, say) or of the spec's class.

    The floor of a stored split is its stored oracle losses (the MIQP plan run
    in the env when the split was made; row :data:`FLOOR`); of any other task
    set, a live ``miqp`` run. The ceiling is ``noop``, evaluated when not
    chosen. Each row holds the summary (:func:`policies.common.rollout.summarize`:
    mean with a 95 % bootstrap interval, std, median, success rate, forward
    time), the per-task losses and, for every policy but noop, the paired
    difference to noop with its interval.

    Returns:
        The rows and the raw episode results per ``(policy, split)``.
    """
    names = list(dict.fromkeys(policy_names))
    if CEILING not in names:
        names.append(CEILING)
    rows, raw = [], {}
    for split, tasks in sets.items():
        floor = _stored_floor(split, tasks)
        todo = names + (["miqp"] if floor is None and "miqp" not in names else [])
        for name in todo:
            results = _evaluate(
                name,
                (policy_kwargs or {}).get(name, {}),
                tasks,
                workers=workers,
                progress=progress,
                record=record,
                desc=f"{name} on {split}",
            )
            raw[(name, split)] = results
            rows.append(
                {
                    "policy": name,
                    "split": split,
                    **summarize(results),
                    "losses": [r.loss for r in results],
                    "max_projection_m": [r.max_projection_m for r in results],
                }
            )
        if floor is not None:
            ci = mean_ci(floor)
            rows.append(
                {
                    "policy": FLOOR,
                    "split": split,
                    "n": len(floor),
                    "loss_mean": ci.mean,
                    "loss_ci_low": ci.low,
                    "loss_ci_high": ci.high,
                    "loss_std": float(floor.std()),
                    "loss_median": float(np.median(floor)),
                    "success_rate": float(np.mean(floor <= DEFAULT_CONFIG.success_threshold)),
                    "forward_s": None,
                    "losses": floor.tolist(),
                }
            )
        noop = next(r for r in rows if r["split"] == split and r["policy"] == CEILING)["losses"]
        for r in rows:
            if r["split"] == split and r["policy"] != CEILING:
                r["vs_noop"] = paired_difference(r["losses"], noop).to_json()
    return rows, raw


def neighbour_differences(rows: list[dict], split: str) -> list[dict]:
    """Paired differences ``worse - better`` between policies adjacent in the split's ranking by mean loss
    (positive: how much more loss the lower-ranked one has; resolved when its interval excludes zero)."""
    ranked = sorted((r for r in rows if r["split"] == split), key=lambda r: r["loss_mean"])
    out = []
    for better, worse in zip(ranked, ranked[1:]):
        d = paired_difference(worse["losses"], better["losses"])
        out.append(
            {
                "split": split,
                "better": better["policy"],
                "worse": worse["policy"],
                **d.to_json(),
                "resolved": d.resolved,
            }
        )
    return out


def _interval(row: dict) -> str:
    return f"{row['loss_mean']:.2f} [{row['loss_ci_low']:.2f}, {row['loss_ci_high']:.2f}]"


def _diff(d: dict | None) -> str:
    if d is None:
        return ""
    mark = "" if d["ci_low"] <= 0.0 <= d["ci_high"] else " *"
    return f"{d['mean']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]{mark}"


def format_table(rows: list[dict], *, markdown: bool = False) -> str:
    """One table per split, policies ranked by mean loss, with the unit, the floor and the ceiling.

    Columns: mean loss in cm^2 with its 95 % bootstrap interval, median,
    success rate, the paired difference to noop and to the next-better
    policy (``*``: the interval excludes zero, the difference is resolved),
    and the forward time per datapoint.
    """
    splits = list(dict.fromkeys(r["split"] for r in rows))
    blocks = []
    for split in splits:
        ranked = sorted((r for r in rows if r["split"] == split), key=lambda r: r["loss_mean"])
        steps = {d["worse"]: d for d in neighbour_differences(rows, split)}
        header = ["policy", "loss cm^2: mean [95% CI]", "median", "success", "vs noop", "vs next better", "forward (s)"]
        lines = []
        for r in ranked:
            label = r["policy"] + (" (ceiling)" if r["policy"] == CEILING else "")
            fwd = "-" if r.get("forward_s") is None else f"{r['forward_s']:.1e}"
            lines.append(
                [
                    label,
                    _interval(r),
                    f"{r['loss_median']:.2f}",
                    f"{r['success_rate']:.0%}",
                    _diff(r.get("vs_noop")),
                    _diff(steps.get(r["policy"])),
                    fwd,
                ]
            )
        n = ranked[0]["n"]
        title = f"{split} ({n} tasks): object-trajectory loss in cm^2, lower is better; * = resolved at 95 %"
        if markdown:
            out = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(line) + " |" for line in lines]
        else:
            widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
            fmt = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths))  # noqa: E731,B023
            out = [title, fmt(header), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines]
        blocks.append("\n".join(out))
    return "\n\n".join(blocks)
