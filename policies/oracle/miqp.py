"""The MIQP contact-trajectory-optimisation oracle as a zoo policy (privileged, as in the paper).

It reads the ground-truth task from ``info["task"]``, which the rollout loop adds from
``env.unwrapped.task`` (shape and target
trajectory, which no other policy sees), solves the mixed-integer program of
:mod:`dlm_gym.oracle`, and plays the plan back through the same env step loop
as every other policy.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from dlm_gym.actions import noop_commands
from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.oracle import solve_oracle
from dlm_gym.task import Task
from policies.common.base import OpenLoopPolicy
from policies.common.registry import register_policy

__all__ = ["MIQPPolicy", "VisionMIQPPolicy"]


@register_policy("miqp")
class MIQPPolicy(OpenLoopPolicy):
    """Plans with the MIQP oracle on the privileged task.

    If the oracle finds no plan (infeasible or out of time) the policy warns
    and keeps the fingers clear (the do-nothing plan); ``last_plan.status``
    says what happened.
    """

    name = "miqp"
    privileged = True

    def __init__(self, config: SceneConfig = DEFAULT_CONFIG, time_limit: float = 30.0, **oracle_kwargs) -> None:
        super().__init__(config)
        self.time_limit = time_limit
        self.oracle_kwargs = oracle_kwargs
        self.last_plan: Any = None  # the last OraclePlan, for inspection

    def plan(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
        task = info.get("task")
        if task is None:
            raise ValueError(
                "the miqp oracle is privileged: it needs info['task'], which policies.rollout adds from "
                "env.unwrapped.task; outside the loop pass {**info, 'task': env.unwrapped.task} to reset()"
            )
        return self.plan_task(task, obs)

    def plan_task(self, task, obs: dict[str, Any]) -> np.ndarray:
        """The oracle's keyframe commands for ``task``, or the do-nothing plan (with a warning) if it has none."""
        self.last_plan = plan = solve_oracle(task, self.config, time_limit=self.time_limit, **self.oracle_kwargs)
        if plan.ok:
            return plan.commands()
        warnings.warn(
            f"{self.name}: no plan for {task!r} (status {plan.status.name}); keeping the fingers clear", stacklevel=3
        )
        return noop_commands(self.config)


@register_policy("vision_miqp")
class VisionMIQPPolicy(MIQPPolicy):
    """The MIQP oracle on the task estimated from the video alone (:mod:`policies.oracle.derender`): not privileged.

    The reference every learned policy is judged against: it knows what the
    video shows and how to plan, and nothing else. ``last_estimate`` is the
    estimated :class:`~dlm_gym.Task`; if the video cannot be derendered the
    policy warns and keeps the fingers clear.
    """

    name = "vision_miqp"
    privileged = False
    last_estimate: Task | None = None
    """The task estimated from the last video (None if the video showed no object)."""

    def plan(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
        from policies.common.errors import DerenderError
        from policies.oracle.derender import estimate_task

        try:
            self.last_estimate = estimate_task(obs["video"], self.config)
        except DerenderError as exc:
            self.last_estimate = None
            warnings.warn(f"vision_miqp: {exc}; keeping the fingers clear", stacklevel=2)
            return noop_commands(self.config)
        return self.plan_task(self.last_estimate, obs)
