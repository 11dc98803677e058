"""Figures readers expect: the paper's Fig. 6 (learning curves) and Fig. 7 (rollouts side by side).

- :func:`plot_learning_curves` draws Fig. 6 from learning-curve logs
  (:mod:`policies.common.curves`), with the oracle floor and the noop level;
- :func:`compare_grid` draws Fig. 7 from episodes recorded by the rollout
  loop (``rollout(..., record=True)``): policies in rows, keyframes in columns,
  the target as a ghost.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dlm_gym.datasets import load_split
from policies.common.curves import read_curve
from policies.common.registry import make_policy
from policies.common.report import CEILING
from policies.common.rollout import evaluate

__all__ = ["plot_learning_curves", "reference_levels", "compare_grid", "SUPERVISED_STAGES"]


#: Stages drawn in one panel of :func:`plot_learning_curves`: the supervised losses share a panel
#: (their iterations are alike); L_sim and RL (environment steps) get their own.
SUPERVISED_STAGES = ("L_P", "L_QP", "L_NN")
RL_STAGE = "RL"
WARM_START_STAGES = ("nn", "critic")
"""Stages of ``examples/rl_finetune.py``'s log before PPO (the starting policy, the critic's warm-up): drawn in
the RL panel, against the same environment steps."""
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
    levels = {}
    for name in splits:
        try:
            stored = load_split(name)
        except Exception:  # noqa: BLE001  (not a stored split: no stored floor)
            continue
        noop = evaluate(make_policy(CEILING), name, progress=progress)
        levels[name] = {"oracle": float(np.mean(stored.oracle_loss)), "noop": float(np.mean([r.loss for r in noop]))}
    return levels


def _points(rows: list[dict], x_key: str, key: str) -> tuple[list[float], list[float]]:
    pts = [(float(r[x_key]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
    return ([p[0] for p in pts], [p[1] for p in pts]) if pts else ([], [])


def plot_learning_curves(logs: Sequence, out_path, *, references: dict[str, dict[str, float]] | None = None):
    """Draw the paper's Fig. 6 from learning-curve logs (:mod:`policies.common.curves`); returns the PNG path.

    The object-trajectory loss of the policy executed in the simulator against
    the step, one panel per kind of stage with shared axes (the supervised
    stages :data:`SUPERVISED_STAGES` in one, ``L_sim`` in another, ``RL``
    against environment steps in a third), one colour per policy, ``train``
    solid and every held-out split dashed. Horizontal lines mark each split's
    oracle floor (mean stored oracle loss, black) and the do-nothing level
    (mean ``noop`` loss, grey), in the split's line style. ``references`` maps a
    split to ``{"oracle": .., "noop": ..}``; by default
    :func:`reference_levels` computes them for the logged splits that are
    stored splits (pass ``{}`` for none). The loss axes are logarithmic.
    """
    from pathlib import Path

    from matplotlib.lines import Line2D

    plt = _pyplot()
    paths = [Path(p) for p in logs]
    if not paths:
        raise ValueError("no learning-curve logs to plot; train a policy first (python examples/train.py)")
    staged = [(path, read_curve(path)) for path in paths]

    # panels: supervised stages, then every other stage in order of appearance, then PPO
    groups: dict[str, list[tuple[Path, list[dict]]]] = {}
    for path, rows in staged:
        for stage in dict.fromkeys(r["stage"] for r in rows):
            group = "supervised" if stage in SUPERVISED_STAGES else RL_STAGE if stage in WARM_START_STAGES else stage
            entries = groups.setdefault(group, [])
            stage_rows = [r for r in rows if r["stage"] == stage]
            if group == RL_STAGE and entries and entries[-1][0] == path:
                entries[-1][1].extend(stage_rows)  # one curve per run across its warm start and PPO
            else:
                entries.append((path, stage_rows))
    order = sorted(groups, key=lambda g: g != "supervised")
    splits = list(
        dict.fromkeys(
            k.removeprefix("executed_")
            for _, rows in staged
            for k in rows[0]
            if k.startswith("executed_") and not k.endswith("_std")
        )
    )
    if references is None:
        references = reference_levels(splits) if splits else {}
    styles = {split: ("-" if split == "train" else "--") for split in splits}
    names = list(dict.fromkeys(p.stem.removesuffix("_log") for p, _ in staged))
    colours = {n: plt.cm.tab10(i % 10) for i, n in enumerate(names)}

    n_panels = len(order)
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
                xs, ys = _points(rows, "step", f"executed_{split}")
                if xs:
                    ax.plot(xs, ys, styles[split], color=colours[name], lw=1.4, marker="." if len(xs) < 10 else None)
        for split in splits:
            level = references.get(split)
            if level:
                ax.axhline(level["oracle"], color="black", ls=styles[split], lw=1)
                ax.axhline(level["noop"], color="grey", ls=styles[split], lw=1)
        if group == RL_STAGE:
            ax.set_xlabel("environment steps")
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        else:
            ax.set_xlabel("iteration")
        ax.set_title(("supervised stages: " if group == "supervised" else "stage ") + ", ".join(stages))
    if staged:  # one legend under the panels, clear of the curves
        handles = [Line2D([], [], color=colours[n], lw=2, label=n) for n in names]
        handles += [Line2D([], [], color="dimgrey", ls=styles[s], label=HELD_OUT_LABELS.get(s, s)) for s in splits]
        if any(references.get(s) for s in splits):
            handles += [
                Line2D([], [], color="black", lw=1, label="oracle floor (mean stored oracle loss)"),
                Line2D([], [], color="grey", lw=1, label="noop (mean loss of doing nothing)"),
            ]
        fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=8, frameon=False)
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
            ``record=True`` (``policies.common.rollout(policy, task, record=True)``), all on the same task.
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
    fig.text(
        2 / width,
        1 - 4 / height,
        title if title is not None else f"task {tasks.pop()}",
        ha="left",
        va="top",
        fontsize=9,
        fontweight="bold",
    )
    for c in range(cols):
        x = (GRID_LABEL_PX + (c + 0.5) * GRID_CELL_PX) / width
        fig.text(x, 1 - (GRID_HEADER_PX - 4) / height, f"keyframe {c}", ha="center", va="bottom", fontsize=10)
    for r, (name, result) in enumerate(results.items()):
        bottom = 1 - (GRID_HEADER_PX + (r + 1) * GRID_CELL_PX) / height
        fig.text(
            6 / width,
            bottom + 0.5 * GRID_CELL_PX / height,
            f"{name}\nloss {result.loss:.3g} cm$^2$",
            ha="left",
            va="center",
            fontsize=10,
        )
        for c, frame in enumerate(result.frames[1:]):
            ax = fig.add_axes(
                [(GRID_LABEL_PX + c * GRID_CELL_PX) / width, bottom, GRID_CELL_PX / width, GRID_CELL_PX / height]
            )
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
