"""The learning curve of an SB3 training run, in the zoo's one log format (:mod:`policies.common.curves`).

:class:`LearningCurveCallback` writes one row per rollout: stage ``RL``, step =
environment steps so far, objective = the mean object-trajectory loss of the
training episodes that ended since the previous row (stochastic policy), and
``executed_validation`` (with its std) = the deterministic policy's mean loss
on held-out generated tasks, every ``eval_every`` rollouts and first and last.
The validation plays the in-training model through the zoo's one rollout loop
(:func:`policies.common.rollout.evaluate`), wrapped as a zoo policy
(:class:`~policies.rl.agent.SB3Agent`), so it measures exactly what
``examples/evaluate.py`` measures.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from tqdm.auto import tqdm

from dlm_gym.task import Task, sample_task
from policies.common.curves import CurveLog
from policies.common.rollout import evaluate
from policies.rl.agent import SB3Agent

__all__ = [
    "STAGE",
    "VALIDATION_SPLIT",
    "VALIDATION_SEED0",
    "validation_tasks",
    "LearningCurveCallback",
]

STAGE = "RL"
"""The ``stage`` column of every row (:mod:`policies.common.curves`)."""
VALIDATION_SPLIT = "validation"
"""The split name of the held-out tasks: the log's ``executed_validation`` columns."""
VALIDATION_SEED0 = 800_000
"""Seed of the first validation task: far from the evaluation seeds of the zoo."""


def validation_tasks(n: int) -> list[Task]:
    """``n`` held-out tasks from the training distribution (4-6 facets), seeds from :data:`VALIDATION_SEED0`."""
    return [sample_task(VALIDATION_SEED0 + i, n_facets=(4, 6), name=f"{VALIDATION_SPLIT}/{i}") for i in range(n)]


class LearningCurveCallback(BaseCallback):
    """tqdm progress and a learning-curve log: one row per rollout, validation every ``eval_every`` rollouts.

    The log is written to ``<log_path>.partial``; :meth:`publish` renames it
    over ``log_path`` once the checkpoint is saved, so an interrupted run never
    truncates the previous log.
    """

    def __init__(
        self,
        log_path: str | os.PathLike,
        total_timesteps: int,
        *,
        val_tasks: list[Task],
        eval_every: int,
        progress: bool,
    ) -> None:
        super().__init__()
        self.log_path = Path(log_path)
        self.total = total_timesteps
        self.val_tasks = val_tasks
        self.eval_every = max(1, eval_every)
        self.progress = progress
        self._losses: list[float] = []
        self._rollouts = 0
        self._log: CurveLog | None = None
        self._bar: tqdm | None = None
        self._agent: SB3Agent | None = None
        self._start = 0.0
        self._last_val = float("nan")

    def publish(self) -> Path:
        """Rename the finished curve over ``log_path``; returns ``log_path``."""
        if self._log is None:
            raise RuntimeError("publish() before training started: there is no curve")
        return self._log.publish()

    def close(self) -> None:
        """Close the log and the progress bar (an interrupted run keeps ``<log_path>.partial``)."""
        if self._bar is not None:
            self._bar.close()
        if self._log is not None:
            self._log.close()

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()
        self._log = CurveLog(self.log_path, [VALIDATION_SPLIT])
        self._agent = SB3Agent(self.model)
        # disable=None: tqdm turns itself off when stderr is not a terminal
        self._bar = tqdm(
            total=self.total, desc="ppo", unit="step", disable=None if self.progress else True, smoothing=0.1
        )
        self._write_row(validate=True)

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"]):
            if done and "object_trajectory_loss" in info:
                self._losses.append(float(info["object_trajectory_loss"]))
        if self._bar is not None:
            self._bar.update(self.training_env.num_envs)
        return True

    def _on_rollout_end(self) -> None:
        self._rollouts += 1

    def _on_rollout_start(self) -> None:
        # SB3 updates the model after on_rollout_end: a row written when the next rollout starts
        # describes the model that the updates so far made, which is what its validation plays
        if self._rollouts:
            self._write_row(validate=self._rollouts % self.eval_every == 0)

    def _on_training_end(self) -> None:
        # the final model (after the last update) is validated, and no training episode goes unlogged
        self._write_row(validate=True)
        self.close()

    def _write_row(self, validate: bool) -> None:
        assert self._log is not None and self._agent is not None and self._bar is not None, "training has not started"
        losses, self._losses = self._losses, []
        executed = {}
        if validate and self.val_tasks:
            results = evaluate(self._agent, self.val_tasks, progress=False)
            val = np.array([r.loss for r in results])
            executed[VALIDATION_SPLIT] = (float(val.mean()), float(val.std()))
            self._last_val = float(val.mean())
        objective = float(np.mean(losses)) if losses else None
        self._log.write(STAGE, self.num_timesteps, time.perf_counter() - self._start, objective, executed)
        if losses:
            self._bar.set_postfix(train_loss=f"{objective:.1f}", val_loss=f"{self._last_val:.1f}")
