"""A stable-baselines3 model as a member of the zoo: the one way an RL agent acts in the rollout loop.

The zoo's policies see the env's raw observations; SB3 agents were trained on
:class:`dlm_gym.wrappers.StackVideoChannels`. :class:`SB3Agent` applies that
wrapper to each observation and asks the model for a deterministic action, so
that the loaded ``"ppo"`` policy and the learning curve's validation during
training (:mod:`policies.rl.callbacks`) act through the same code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.envs.video_planar_manip import VideoPlanarManipEnv
from dlm_gym.wrappers import StackVideoChannels
from policies.common.base import Policy

__all__ = ["SB3Agent"]


class SB3Agent(Policy):
    """Acts closed loop with ``model``: one SB3 action per ``StackVideoChannels``-wrapped observation."""

    name = "sb3"

    def __init__(
        self,
        model: BaseAlgorithm,
        config: SceneConfig = DEFAULT_CONFIG,
        deterministic: bool = True,
    ) -> None:
        super().__init__(config)
        self.model = model
        self.deterministic = deterministic
        # only its observation() is used: the rollout loop owns the env that is stepped
        self._wrapper = StackVideoChannels(VideoPlanarManipEnv(config=config))

    def reset(self, obs: dict[str, Any], info: dict[str, Any]) -> None:
        """Nothing to do: everything comes from each observation."""

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        """The model's action for ``obs``, ``(num_fingers, 4)`` float32."""
        wrapped = self._wrapper.observation(obs)
        with th.no_grad():
            action, _ = self.model.predict(wrapped, deterministic=self.deterministic)
        return np.asarray(action, dtype=np.float32).reshape(self.config.num_fingers, 4)
