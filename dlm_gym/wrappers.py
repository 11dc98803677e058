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
        space = env.observation_space
        if not isinstance(space, spaces.Dict) or "video" not in space.spaces:
            raise ValueError(
                "StackVideoChannels needs the pixel observations of VideoPlanarManip-v0 (a Dict with 'video'); "
                "make the env with obs_type='pixels' (the default)"
            )
        video = space["video"]
        T, H, W, C = video.shape or ()
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (H, W, C * (T + 1)), np.uint8),
                "step": space["step"],
            }
        )

    def observation(self, observation):
        video = observation["video"]  # (T, H, W, C)
        stacked = np.concatenate([*video, observation["frame"]], axis=-1)
        return {"image": np.ascontiguousarray(stacked), "step": observation["step"]}
