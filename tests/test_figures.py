"""The paper's figures: the Fig. 7 comparison grid and the Fig. 6 learning curves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import policies
from dlm_gym.datasets import load_split
from policies.common.figures import (
    GRID_CELL_PX,
    GRID_HEADER_PX,
    GRID_LABEL_PX,
    compare_grid,
    plot_learning_curves,
)

ROOT = Path(__file__).resolve().parents[1]


def _png(path):
    import imageio.v3 as iio

    return np.asarray(iio.imread(path))


def test_compare_grid_has_a_row_per_policy_and_a_column_per_keyframe(tmp_path):
    task = load_split("family").tasks[0]
    episodes = {name: policies.rollout(policies.make_policy(name), task, record=True) for name in ("random", "noop")}
    out = compare_grid(episodes, tmp_path / "grid.png")
    image = _png(out)
    columns = task.horizon
    assert image.shape[:2] == (GRID_HEADER_PX + 2 * GRID_CELL_PX, GRID_LABEL_PX + columns * GRID_CELL_PX)
    cells = image[GRID_HEADER_PX:, GRID_LABEL_PX:, :3].astype(float)
    assert cells.std() > 20  # drawn scenes, not a blank page
    rows = np.split(cells, 2, axis=0)
    assert not np.array_equal(rows[0], rows[1])  # the policies' rows differ


def test_compare_grid_refuses_unrecorded_or_mixed_episodes(tmp_path):
    split = load_split("family")
    noop = policies.make_policy("noop")
    with pytest.raises(ValueError, match="record=True"):
        compare_grid({"noop": policies.rollout(noop, split.tasks[0])}, tmp_path / "x.png")
    mixed = {
        "a": policies.rollout(noop, split.tasks[0], record=True),
        "b": policies.rollout(noop, split.tasks[1], record=True),
    }
    with pytest.raises(ValueError, match="one task"):
        compare_grid(mixed, tmp_path / "x.png")


def run_cli(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "evaluate.py"), *args], capture_output=True, text=True, cwd=ROOT
    )


@pytest.mark.slow
def test_evaluate_cli_compare_writes_the_grid(tmp_path):
    out = run_cli(
        "--policy",
        "random",
        "--split",
        "family",
        "--compare",
        str(tmp_path / "fig7.png"),
        "--compare-task",
        "3",
        "--no-progress",
    )
    assert out.returncode == 0, out.stderr
    image = _png(tmp_path / "fig7.png")
    assert image.shape[0] == GRID_HEADER_PX + 2 * GRID_CELL_PX  # random and noop
    out = run_cli(
        "--policy", "random", "--split", "family", "--compare", str(tmp_path / "no.png"), "--compare-task", "999"
    )
    assert out.returncode == 2 and "--compare-task 999 is out of range" in out.stderr


def test_learning_curves_share_axes_per_stage_with_reference_lines(tmp_path):
    import matplotlib.pyplot as plt

    from policies.common.paths import CHECKPOINT_DIR

    logs = [CHECKPOINT_DIR / f"{n}_paper_log.csv" for n in ("cvx", "nn", "dlm")]
    logs.append(CHECKPOINT_DIR / "ppo_scratch_log.csv")
    references = {"train": {"oracle": 1.5, "noop": 47.0}, "finetune": {"oracle": 1.3, "noop": 33.0}}
    captured = {}
    original = plt.close
    plt.close = lambda fig=None: captured.setdefault("fig", fig)  # keep the figure to look at it
    try:
        out = plot_learning_curves(logs, tmp_path / "fig6.png", references=references)
    finally:
        plt.close = original
    assert _png(out).shape[0] > 300
    supervised, sim, ppo = captured["fig"].axes
    assert "L_QP" in supervised.get_title() and "L_NN" in supervised.get_title() and "L_sim" in sim.get_title()
    assert supervised.get_shared_y_axes().joined(supervised, sim)
    for ax in (supervised, sim):
        styles = {(tuple(line.get_ydata()), line.get_linestyle()) for line in ax.get_lines()}
        for split, level in references.items():
            style = "-" if split == "train" else "--"
            assert ((level["oracle"], level["oracle"]), style) in styles
            assert ((level["noop"], level["noop"]), style) in styles
    curves = [line for line in supervised.get_lines() if len(line.get_xdata()) > 2]
    assert len(curves) == 4  # cvx and nn, train (solid) and finetune (dashed)
    assert {line.get_linestyle() for line in curves} == {"-", "--"}
    assert ppo.get_xlabel() == "environment steps"
    labels = [t.get_text() for t in captured["fig"].legends[0].get_texts()]
    assert "finetune (held out from L_P/L_QP/L_NN)" in labels and "cvx_paper" in labels
    original(captured["fig"])


def test_a_warm_started_rl_log_is_one_panel_against_environment_steps(tmp_path):
    import matplotlib.pyplot as plt

    from policies.common.curves import CurveLog

    log = tmp_path / "ppo_log.csv"
    curve = CurveLog(log, ["validation"])
    curve.write("nn", 0, 1.0, None, {"validation": (14.0, 3.0)})
    curve.write("critic", 1024, 2.0, 20.0, {"validation": (14.0, 3.0)})
    curve.write("RL", 2048, 3.0, 19.0, {"validation": (12.0, 3.0)})
    curve.publish()
    captured = {}
    original = plt.close
    plt.close = lambda fig=None: captured.setdefault("fig", fig)
    try:
        plot_learning_curves([log], tmp_path / "rl.png", references={})
    finally:
        plt.close = original
    (ax,) = captured["fig"].axes
    assert ax.get_xlabel() == "environment steps" and "nn, critic, RL" in ax.get_title()
    ((xs, ys),) = [(list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()]
    assert xs == [0, 1024, 2048] and ys == [14.0, 14.0, 12.0]
    original(captured["fig"])
