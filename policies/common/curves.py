"""The one learning-curve log format of the zoo: a CSV that every trainer writes and every figure reads.

Columns (one row per evaluation point)::

    stage, step, seconds, objective, executed_<split>, executed_<split>_std, ...

- ``stage``: the training stage, ``L_P``, ``L_QP``, ``L_NN``, ``L_sim`` (the
  learned policies, paper Section 5) or ``RL`` (stable-baselines3 agents);
- ``step``: optimiser iterations within the stage (learned policies) or
  environment steps since the start (RL);
- ``seconds``: wall time since training started;
- ``objective``: the quantity the stage minimises at this step (its training
  loss; for RL the mean object-trajectory loss of the training episodes since
  the last row), empty where none was measured;
- ``executed_<split>``: the mean object-trajectory loss (cm^2) of the policy
  executed in the env on that split, and ``executed_<split>_std`` its standard
  deviation over the split's tasks; empty where not evaluated at this step.

The log is written to ``<path>.partial`` and renamed over ``<path>`` by
:meth:`CurveLog.publish` once the checkpoint is saved, so an interrupted run
never truncates the previous log.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["FIELDS", "CurveLog", "read_curve", "executed_columns"]

FIELDS = ("stage", "step", "seconds", "objective")
"""The fixed leading columns; ``executed_<split>`` and ``executed_<split>_std`` follow, per split."""


def executed_columns(splits: Sequence[str]) -> list[str]:
    """The executed-loss columns of ``splits``, in order: mean, then std, per split."""
    return [c for s in splits for c in (f"executed_{s}", f"executed_{s}_std")]


def _cell(value) -> str | float | int:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


class CurveLog:
    """Writes one learning curve: ``log.write(stage, step, seconds, objective, executed={split: (mean, std)})``.

    Use as a context manager (closes the file); call :meth:`publish` after the
    checkpoint is saved to move the finished curve over ``path``.
    """

    def __init__(self, path: str | os.PathLike, splits: Sequence[str]) -> None:
        self.path = Path(path)
        self.splits = list(dict.fromkeys(splits))
        self.partial_path = self.path.with_name(self.path.name + ".partial")
        self.partial_path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.partial_path.open("w", newline="")
        self._writer = csv.DictWriter(self._handle, fieldnames=[*FIELDS, *executed_columns(self.splits)])
        self._writer.writeheader()

    def write(
        self,
        stage: str,
        step: int,
        seconds: float,
        objective: float | None = None,
        executed: Mapping[str, float | tuple[float, float]] | None = None,
    ) -> None:
        """Append a row; ``executed`` maps a split to its mean loss or ``(mean, std)``."""
        row: dict[str, object] = {
            "stage": stage,
            "step": int(step),
            "seconds": float(seconds),
            "objective": _cell(objective),
        }
        for split, value in (executed or {}).items():
            if split not in self.splits:
                raise ValueError(f"split {split!r} is not a column of this log (columns: {self.splits})")
            mean, std = value if isinstance(value, tuple) else (value, None)
            row[f"executed_{split}"] = _cell(mean)
            row[f"executed_{split}_std"] = _cell(std)
        self._writer.writerow(row)
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def publish(self) -> Path:
        """Close the log and rename ``<path>.partial`` over ``<path>``; returns ``path``."""
        self.close()
        os.replace(self.partial_path, self.path)
        return self.path

    def __enter__(self) -> CurveLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_curve(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a learning-curve CSV; ValueError naming the file if it is empty or not in this format."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        header = reader.fieldnames or []
    missing = [f for f in FIELDS if f not in header]
    if missing:
        raise ValueError(
            f"{path} is not a learning-curve log (no {', '.join(missing)} column); logs are written by "
            "`python examples/train.py` (format: policies.common.curves)"
        )
    if not rows:
        raise ValueError(f"{path} is empty")
    return rows
