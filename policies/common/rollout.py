"""The one rollout loop that judges every policy of the zoo.

It plays a policy on tasks in the real environment (pymunk), one episode per
task, and returns per-task results: the object-trajectory loss (paper units),
the return and the policy's compute time per datapoint. It uses a plain
single environment, so no vector-env autoreset detail can leak into results.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.envs.video_planar_manip import VideoPlanarManipEnv
from dlm_gym.task import Task

if TYPE_CHECKING:
    from dlm_gym.datasets import Split
from policies.common.base import Policy

__all__ = ["EpisodeResult", "rollout", "evaluate", "summarize", "policy_config", "policy_obs_type", "policy_name"]


# A policy here is any object with reset(obs, info) and act(obs) (duck typing: a user's class need not subclass
# Policy). What the loop reads beyond those has a default: config, obs_type, name, privileged.
def policy_config(policy) -> SceneConfig:
    """The policy's ``config`` (the env it is built for), or :data:`~dlm_gym.config.DEFAULT_CONFIG`."""
    return getattr(policy, "config", None) or DEFAULT_CONFIG


def policy_obs_type(policy) -> str:
    """The observation type the policy acts on (``obs_type``, default ``"pixels"``)."""
    return getattr(policy, "obs_type", "pixels")


def policy_name(policy) -> str:
    """The policy's ``name``, or its class name."""
    return getattr(policy, "name", None) or type(policy).__name__


def _make_env(policy, record: bool) -> VideoPlanarManipEnv:
    return VideoPlanarManipEnv(
        render_mode="rgb_array" if record else None, obs_type=policy_obs_type(policy), config=policy_config(policy)
    )


@dataclasses.dataclass
class EpisodeResult:
    """What one episode of a policy on a task produced."""

    task_name: str
    loss: float
    """Object-trajectory loss in cm^2 (docs/design.md section 5)."""
    episode_return: float
    forward_s: float
    """Seconds the policy spent computing (``reset`` plus every ``act``) for this datapoint."""
    simulated_trajectory: np.ndarray
    success: bool = False
    """``info["is_success"]`` at the end: the loss is at most ``config.success_threshold``."""
    max_projection_m: float = 0.0
    """The largest distance any commanded contact point was moved out of the object (a physics-cheat gauge)."""
    frames: list[np.ndarray] | None = None
    """``rgb_array`` views after reset and after each step, when recorded."""

    def to_json(self) -> dict:
        return {
            "task": self.task_name,
            "loss": self.loss,
            "return": self.episode_return,
            "forward_s": self.forward_s,
            "success": self.success,
            "max_projection_m": self.max_projection_m,
        }


def rollout(
    policy: Policy, task: Task, *, env: VideoPlanarManipEnv | None = None, record: bool = False
) -> EpisodeResult:
    """Play one episode of ``policy`` on ``task``.

    ``policy`` is any object with ``reset(obs, info)`` and ``act(obs)``; the env is built (unless a
    matching ``env`` is given) with its ``obs_type`` and ``config`` (defaults: ``"pixels"``, the default config).
    """
    if (
        env is None
        or (record and env.render_mode != "rgb_array")
        or getattr(env, "obs_type", "pixels") != policy_obs_type(policy)
    ):
        env = _make_env(policy, record)
    obs, info = env.reset(options={"task": task})
    frames: list[np.ndarray] = [env.render()] if record else []
    if getattr(policy, "privileged", False):  # the one way the ground truth reaches a planner
        info = {**info, "task": env.task}
    start = time.perf_counter()
    policy.reset(obs, info)
    compute = time.perf_counter() - start
    total, terminated, truncated, projection = 0.0, False, False, 0.0
    while not (terminated or truncated):
        start = time.perf_counter()
        action = policy.act(obs)
        compute += time.perf_counter() - start
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        projection = max(projection, float(info["projection_distance"].max()))
        if record:
            frames.append(env.render())
    return EpisodeResult(
        task_name=task.name or f"seed-{task.seed}",
        loss=float(info["object_trajectory_loss"]),
        episode_return=total,
        forward_s=compute,
        simulated_trajectory=env.simulated_trajectory,
        success=bool(info["is_success"]),
        max_projection_m=projection,
        frames=frames if record else None,
    )


def _resolve_tasks(tasks) -> list[Task]:
    """A split name, a :class:`~dlm_gym.datasets.Split` (or its items), a Task, or tasks -> a list of tasks."""
    if isinstance(tasks, (str, os.PathLike)):  # a split name or file
        from dlm_gym.datasets import load_split

        return list(load_split(tasks).tasks)
    if isinstance(tasks, Task):
        return [tasks]
    resolved = []
    for item in getattr(tasks, "tasks", tasks):  # a Split holds its tasks; its items hold one each
        task = getattr(item, "task", item)
        if not isinstance(task, Task):
            raise TypeError(
                f"evaluate() takes a split name, a Split, or dlm_gym.Task objects; got a {type(task).__name__}"
            )
        resolved.append(task)
    return resolved


def evaluate(
    policy: Policy,
    tasks: str | Split | Task | Iterable[Task],
    *,
    record: bool = False,
    progress: bool = True,
    desc: str | None = None,
) -> list[EpisodeResult]:
    """Run ``policy`` once on every task of ``tasks``: a split name, a ``Split``, a Task, or tasks.

    ``policy``: as for :func:`rollout`. ``progress`` shows a bar, and only where stderr is a terminal.
    """
    task_list = _resolve_tasks(tasks)
    env = _make_env(policy, record)
    label = desc or (str(tasks) if isinstance(tasks, (str, os.PathLike)) else policy_name(policy))
    results = []
    # disable=None: tqdm turns itself off when stderr is not a terminal (CI logs, files)
    for task in tqdm(task_list, desc=label, disable=None if progress else True, leave=False):
        results.append(rollout(policy, task, env=env, record=record))
    env.close()
    return results


def summarize(results: Sequence[EpisodeResult]) -> dict:
    """Mean loss with its 95 % bootstrap interval, std, median, success rate and mean forward time per datapoint."""
    from policies.common.statistics import mean_ci

    if not results:
        raise ValueError("no results to summarize")
    losses = np.array([r.loss for r in results])
    ci = mean_ci(losses)
    return {
        "n": len(results),
        "loss_mean": ci.mean,
        "loss_ci_low": ci.low,
        "loss_ci_high": ci.high,
        "loss_std": float(losses.std()),
        "loss_median": float(np.median(losses)),
        "success_rate": float(np.mean([r.success for r in results])),
        "forward_s": float(np.mean([r.forward_s for r in results])),
    }
