"""The policy protocol every member of the zoo follows.

A policy is reset once per episode with the first observation and info, then
asked for one action per step::

    policy.reset(obs, info)
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy.act(obs))

Open-loop planners (DLM, NN, the MIQP oracle) compute their whole plan in
``reset`` from the video (or, for privileged ones, from ``info["task"]``, which
only :func:`policies.common.rollout` adds, from ``env.unwrapped.task``) and
play it back; closed-loop agents (PPO) act on each observation.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from dlm_gym.actions import command_to_action
from dlm_gym.config import DEFAULT_CONFIG, SceneConfig

__all__ = ["Policy", "OpenLoopPolicy"]


class Policy(abc.ABC):
    """Base class of the zoo: ``reset(obs, info)`` then ``act(obs) -> action`` each step."""

    #: registry name, e.g. ``"dlm"``
    name: str = "policy"
    #: True if the policy reads the ground-truth task: the rollout loop then adds ``info["task"]``
    privileged: bool = False
    #: the observation type it acts on, the env's ``obs_type``: ``"pixels"`` (video and frame) or ``"state"``
    #: (poses and polygon); the rollout loop builds the env to match
    obs_type: str = "pixels"

    def __init__(self, config: SceneConfig = DEFAULT_CONFIG) -> None:
        self.config = config

    @abc.abstractmethod
    def reset(self, obs: dict[str, Any], info: dict[str, Any]) -> None:
        """Start an episode from its first observation and info."""

    @abc.abstractmethod
    def act(self, obs: dict[str, Any]) -> np.ndarray:
        """The normalised action ``(N, 4)`` float32 for the current step."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class OpenLoopPolicy(Policy):
    """A policy that plans all T keyframe commands at reset and plays them back.

    Subclasses implement :meth:`plan`, returning commands ``(T, N, 4)`` in
    metres and newtons (contact point ``p_c(t)`` and force ``lambda_c(t)``).
    """

    def __init__(self, config: SceneConfig = DEFAULT_CONFIG) -> None:
        super().__init__(config)
        self._actions: np.ndarray | None = None

    @abc.abstractmethod
    def plan(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
        """Keyframe commands ``(T, N, 4)``: per finger (x, y) in metres and (f_x, f_y) in newtons."""

    def reset(self, obs: dict[str, Any], info: dict[str, Any]) -> None:
        commands = np.asarray(self.plan(obs, info), dtype=np.float64)
        expected = (self.config.horizon, self.config.num_fingers, 4)
        if commands.shape != expected:
            raise ValueError(f"{self.name}: plan() must return commands of shape {expected}, got {commands.shape}")
        self._actions = command_to_action(commands, self.config)

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        if self._actions is None:
            raise RuntimeError(f"{self.name}: call reset(obs, info) before act(obs)")
        k = int(obs["step"])
        return self._actions[min(k, len(self._actions) - 1)].copy()
