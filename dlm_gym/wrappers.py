"""Wrappers that adapt ``VideoPlanarManip-v0`` to other libraries."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["StackVideoChannels"]


class StackVideoChannels(gym.ObservationWrapper):
    """Make the observation acceptable to stable-baselines3's image pipeline.

    SB3 wants image observations as 3-D uint8 arrays. This wrapper returns a
    ``Dict`` with

    - ``image``: ``(50, 50, 3 * (T + 1))`` uint8, the T target-video frames
      followed by the current frame, stacked on the channel axis
      (channel-last, so SB3's ``VecTransposeImage`` moves it to channel-first);
    - ``step``: the keyframe index, unchanged.

    Use it with ``MultiInputPolicy``: ``PPO("MultiInputPolicy", StackVideoChannels(env))``.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        video = env.observation_space["video"]
        T, H, W, C = video.shape
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (H, W, C * (T + 1)), np.uint8),
                "step": env.observation_space["step"],
            }
        )

    def observation(self, observation):
        video = observation["video"]  # (T, H, W, C)
        stacked = np.concatenate([*video, observation["frame"]], axis=-1)
        return {"image": np.ascontiguousarray(stacked), "step": observation["step"]}
