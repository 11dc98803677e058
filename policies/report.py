"""Comparisons of zoo policies over task sets: the rows behind Table 1."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.datasets import SEED_RANGES, available_splits, load_split
from dlm_gym.task import Task, sample_task
from policies.registry import make_policy_or_spec
from policies.rollout import EpisodeResult, evaluate, summarize
from policies.statistics import mean_ci, paired_difference

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
        sets["generated"] = [
            sample_task(first + i, config=config, name=f"generated/{i}")
            for i in range(generated)
        ]
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
    from pathlib import Path

    import dlm_gym
    from dlm_gym.datasets import split_path
    from policies.statistics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
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
        "bootstrap": {"method": "percentile", "resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED,
                      "confidence": CONFIDENCE},
    }


def _stored_floor(split: str, tasks: list[Task]) -> np.ndarray | None:
    """The stored oracle losses of ``tasks`` when they are tasks of the stored split ``split``, else None."""
    try:
        stored = load_split(split)
    except Exception:  # not a stored split (e.g. generated tasks): the floor is a live miqp run
        return None
    index = {t.name: i for i, t in enumerate(stored.tasks)}
    rows = [index.get(t.name) for t in tasks]
    if any(i is None or stored.tasks[i] != t for i, t in zip(rows, tasks)):
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
    ``path/to/file.py:Class`` (:func:`policies.registry.load_policy_spec`; its rows carry the spec as
    their name). ``policy_kwargs`` maps a name to keyword arguments of :func:`make_policy` (a
    ``checkpoint``, say) or of the spec's class.

    The floor of a stored split is its stored oracle losses (the MIQP plan run
    in the env when the split was made; row :data:`FLOOR`); of any other task
    set, a live ``miqp`` run. The ceiling is ``noop``, evaluated when not
    chosen. Each row holds the summary (:func:`policies.rollout.summarize`:
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
            results = _evaluate(name, (policy_kwargs or {}).get(name, {}), tasks, workers=workers,
                                progress=progress, record=record, desc=f"{name} on {split}")
            raw[(name, split)] = results
            rows.append({"policy": name, "split": split, **summarize(results),
                         "losses": [r.loss for r in results],
                         "max_projection_m": [r.max_projection_m for r in results]})
        if floor is not None:
            ci = mean_ci(floor)
            rows.append({"policy": FLOOR, "split": split, "n": len(floor), "loss_mean": ci.mean,
                         "loss_ci_low": ci.low, "loss_ci_high": ci.high, "loss_std": float(floor.std()),
                         "loss_median": float(np.median(floor)), "success_rate": float(np.mean(floor <= DEFAULT_CONFIG.success_threshold)),
                         "forward_s": None, "losses": floor.tolist()})
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
        out.append({"split": split, "better": better["policy"], "worse": worse["policy"], **d.to_json(),
                    "resolved": d.resolved})
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
        header = ["policy", "loss cm^2: mean [95% CI]", "median", "success", "vs noop", "vs next better",
                  "forward (s)"]
        lines = []
        for r in ranked:
            label = r["policy"] + (" (ceiling)" if r["policy"] == CEILING else "")
            fwd = "-" if r.get("forward_s") is None else f"{r['forward_s']:.1e}"
            lines.append([label, _interval(r), f"{r['loss_median']:.2f}", f"{r['success_rate']:.0%}",
                          _diff(r.get("vs_noop")), _diff(steps.get(r["policy"])), fwd])
        n = ranked[0]["n"]
        title = f"{split} ({n} tasks): object-trajectory loss in cm^2, lower is better; * = resolved at 95 %"
        if markdown:
            out = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(line) + " |" for line in lines]
        else:
            widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
            fmt = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths))  # noqa: E731
            out = [title, fmt(header), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines]
        blocks.append("\n".join(out))
    return "\n\n".join(blocks)


#: Stages of the staged logs drawn in one panel of :func:`plot_learning_curves`: the supervised losses
#: share a panel (their iterations are alike), the simulation loss gets its own.
SUPERVISED_STAGES = ("L_P", "L_QP", "L_NN")
HELD_OUT_LABELS = {"finetune": "finetune (held out from L_P/L_QP/L_NN)"}
"""Legend labels of the held-out curves of the staged logs (``executed_<split>``); other splits keep their name."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def reference_levels(splits: Sequence[str], *, progress: bool = False) -> dict[str, dict[str, float]]:
    """Per stored split: the mean stored oracle loss (``"oracle"``) and the mean ``noop`` loss (``"noop"``).

    The horizontal lines of :func:`plot_learning_curves`: the floor any policy can reach and the
    do-nothing level. Splits that are not stored are left out.
    """
    from policies.registry import make_policy

    levels = {}
    for name in splits:
        try:
            stored = load_split(name)
        except Exception:  # noqa: BLE001  (not a stored split: no stored floor)
            continue
        noop = evaluate(make_policy(CEILING), name, progress=progress)
        levels[name] = {"oracle": float(np.mean(stored.oracle_loss)), "noop": float(np.mean([r.loss for r in noop]))}
    return levels


def _read_log(path) -> list[dict]:
    import csv

    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{path} is empty")
    return rows


def _points(rows: list[dict], x_key: str, key: str) -> tuple[list[float], list[float]]:
    pts = [(float(r[x_key]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
    return ([p[0] for p in pts], [p[1] for p in pts]) if pts else ([], [])


def plot_learning_curves(logs: Sequence, out_path, *, references: dict[str, dict[str, float]] | None = None):
    """Draw the paper's Fig. 6 from learning-curve CSV logs; returns the PNG path.

    Staged logs of :mod:`policies.training` (``stage, iteration, loss, seconds,
    executed_<split>...``): the object-trajectory loss of the model executed in
    the simulator against the iteration, one panel per kind of stage with
    shared axes (the supervised stages :data:`SUPERVISED_STAGES` in one, ``L_sim``
    in another), one colour per policy, ``train`` solid and the held-out split
    dashed. Horizontal lines mark each split's oracle floor (mean stored oracle
    loss, black) and the do-nothing level (mean ``noop`` loss, grey), in the
    split's line style. ``references`` maps a split to ``{"oracle": .., "noop": ..}``;
    by default :func:`reference_levels` computes them for the logged splits
    (pass ``{}`` for none).

    The PPO log (``timesteps, train_loss_mean, val_loss_mean, ...``) gets its own
    panel against environment steps (its held-out tasks are generated ones, so no
    split's lines apply). The loss axes are logarithmic.
    """
    from pathlib import Path

    from matplotlib.lines import Line2D

    plt = _pyplot()
    logs = [Path(p) for p in logs]
    if not logs:
        raise ValueError("no learning-curve logs to plot; train a policy first (python examples/train.py)")
    staged, ppo = [], []
    for path in logs:
        rows = _read_log(path)
        if "timesteps" in rows[0]:
            ppo.append((path, rows))
        elif {"stage", "iteration"} <= set(rows[0]):
            staged.append((path, rows))
        else:
            raise ValueError(f"{path} is not a learning-curve log: columns {sorted(rows[0])}")

    # panels: supervised stages, then every other stage in order of appearance, then PPO
    groups: dict[str, list[tuple[str, list[dict]]]] = {}
    for path, rows in staged:
        for stage in dict.fromkeys(r["stage"] for r in rows):
            group = "supervised" if stage in SUPERVISED_STAGES else stage
            groups.setdefault(group, []).append((path, [r for r in rows if r["stage"] == stage]))
    order = sorted(groups, key=lambda g: g != "supervised")
    splits = list(dict.fromkeys(k.removeprefix("executed_") for _, rows in staged for k in rows[0]
                                if k.startswith("executed_")))
    if references is None:
        references = reference_levels(splits) if splits else {}
    styles = {split: ("-" if split == "train" else "--") for split in splits}
    names = list(dict.fromkeys(p.stem.removesuffix("_log") for p, _ in staged))
    colours = {n: plt.cm.tab10(i % 10) for i, n in enumerate(names)}

    n_panels = len(order) + len(ppo)
    fig, axes = plt.subplots(1, n_panels, figsize=(max(5.6 * n_panels, 8.0), 4.8), squeeze=False)
    axes = list(axes[0])
    stage_axes = axes[: len(order)]
    for ax in stage_axes[1:]:
        ax.sharey(stage_axes[0])  # one loss axis for every stage panel: levels compare across panels
    for ax, group in zip(stage_axes, order):
        stages = list(dict.fromkeys(r["stage"] for _, rows in groups[group] for r in rows))
        stages.sort(key=lambda st: SUPERVISED_STAGES.index(st) if st in SUPERVISED_STAGES else len(SUPERVISED_STAGES))
        for path, rows in groups[group]:
            name = path.stem.removesuffix("_log")
            for split in splits:
                xs, ys = _points(rows, "iteration", f"executed_{split}")
                if xs:
                    ax.plot(xs, ys, styles[split], color=colours[name], lw=1.4, marker="." if len(xs) < 10 else None)
        for split in splits:
            level = references.get(split)
            if level:
                ax.axhline(level["oracle"], color="black", ls=styles[split], lw=1)
                ax.axhline(level["noop"], color="grey", ls=styles[split], lw=1)
        ax.set_xlabel("iteration")
        ax.set_title(("supervised stages: " if group == "supervised" else "stage ") + ", ".join(stages))
    if staged:  # one legend under the panels, clear of the curves
        handles = [Line2D([], [], color=colours[n], lw=2, label=n) for n in names]
        handles += [Line2D([], [], color="dimgrey", ls=styles[s], label=HELD_OUT_LABELS.get(s, s)) for s in splits]
        if any(references.get(s) for s in splits):
            handles += [Line2D([], [], color="black", lw=1, label="oracle floor (mean stored oracle loss)"),
                        Line2D([], [], color="grey", lw=1, label="noop (mean loss of doing nothing)")]
        fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=8, frameon=False)
    for ax, (path, rows) in zip(axes[len(order):], ppo):
        for key, label in (("train_loss_mean", "training episodes"), ("val_loss_mean", "held-out tasks")):
            ax.plot(*_points(rows, "timesteps", key), label=label)
        ax.set_xlabel("environment steps")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        ax.set_title(path.stem.removesuffix("_log"))
        ax.legend(fontsize=8)
    for ax in axes:
        ax.set_yscale("log")
        ax.set_ylabel("executed object-trajectory loss (cm$^2$)")
        ax.grid(True, which="major", alpha=0.3)
    legend_rows = -(-(len(names) + len(splits) + 2) // 4) if staged else 0
    fig.tight_layout(rect=(0, min(0.4, 0.06 * legend_rows), 1, 1))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


#: Layout of :func:`compare_grid` in pixels (at :data:`GRID_DPI`): square cells, a column of row
#: labels on the left and a row of keyframe headers on top. The image is
#: ``GRID_HEADER_PX + rows * GRID_CELL_PX`` high and ``GRID_LABEL_PX + columns * GRID_CELL_PX`` wide.
GRID_CELL_PX = 200
GRID_LABEL_PX = 160
GRID_HEADER_PX = 40
GRID_DPI = 100


def compare_grid(results_by_policy, out_path, *, title: str | None = None):
    """Draw a grid like the paper's Fig. 7 from recorded episodes of one task; returns the PNG path.

    Rows are policies (in the mapping's order), columns the T keyframes. Each
    cell is the env's annotated ``rgb_array`` view after that keyframe's step
    (the object's simulated pose, every target pose as a ghost with the
    keyframe's own drawn bold, and the fingers). Row labels give the policy and
    the episode's loss.

    Args:
        results_by_policy: policy name -> :class:`EpisodeResult` recorded with
            ``record=True`` (``policies.rollout(policy, task, record=True)``), all on the same task.
        out_path: the PNG to write (parent folders are made).
        title: a line above the grid; default names the task.
    """
    from pathlib import Path

    results = dict(results_by_policy)
    if not results:
        raise ValueError("compare_grid needs at least one policy's episode")
    for name, r in results.items():
        if not r.frames:
            raise ValueError(f"the episode of {name} has no frames; roll it out with record=True")
    tasks = {r.task_name for r in results.values()}
    if len(tasks) > 1:
        raise ValueError(f"compare_grid compares policies on one task, got episodes of {sorted(tasks)}")
    counts = {len(r.frames) for r in results.values()}
    if len(counts) > 1:
        raise ValueError(f"the episodes have different numbers of frames: {sorted(counts)}")
    cols = counts.pop() - 1  # frame 0 is the scene after reset; frame k + 1 the scene at keyframe k
    if cols < 1:
        raise ValueError("the episodes have no step frames (only the frame after reset)")
    plt = _pyplot()
    rows = len(results)
    width = GRID_LABEL_PX + cols * GRID_CELL_PX
    height = GRID_HEADER_PX + rows * GRID_CELL_PX
    fig = plt.figure(figsize=(width / GRID_DPI, height / GRID_DPI), dpi=GRID_DPI)
    fig.text(2 / width, 1 - 4 / height, title if title is not None else f"task {tasks.pop()}",
             ha="left", va="top", fontsize=9, fontweight="bold")
    for c in range(cols):
        x = (GRID_LABEL_PX + (c + 0.5) * GRID_CELL_PX) / width
        fig.text(x, 1 - (GRID_HEADER_PX - 4) / height, f"keyframe {c}", ha="center", va="bottom", fontsize=10)
    for r, (name, result) in enumerate(results.items()):
        bottom = 1 - (GRID_HEADER_PX + (r + 1) * GRID_CELL_PX) / height
        fig.text(6 / width, bottom + 0.5 * GRID_CELL_PX / height, f"{name}\nloss {result.loss:.3g} cm$^2$",
                 ha="left", va="center", fontsize=10)
        for c, frame in enumerate(result.frames[1:]):
            ax = fig.add_axes([(GRID_LABEL_PX + c * GRID_CELL_PX) / width, bottom,
                               GRID_CELL_PX / width, GRID_CELL_PX / height])
            ax.imshow(np.asarray(frame), interpolation="antialiased")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("lightgrey")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=GRID_DPI)
    plt.close(fig)
    return out
