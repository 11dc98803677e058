"""Reference baselines: the do-nothing ceiling and uniformly random actions."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from policies.base import Policy
from policies.registry import register_policy

__all__ = ["NoopPolicy", "RandomPolicy"]


@register_policy("noop")
class NoopPolicy(Policy):
    """Do nothing: the fingers wait in the top corners of the view with zero force.

    No generated object reaches those corners, so the object moves under
    gravity and the ground alone. Its loss is the ceiling of every comparison.
    """

    name = "noop"

    def __init__(self, config: SceneConfig = DEFAULT_CONFIG) -> None:
        super().__init__(config)
        n = config.num_fingers
        xs = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
        self._action = np.stack([xs, np.ones(n), np.zeros(n), np.zeros(n)], axis=1).astype(np.float32)

    def reset(self, obs: dict[str, Any], info: dict[str, Any]) -> None:
        pass

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        return self._action.copy()


@register_policy("random")
class RandomPolicy(Policy):
    """Uniformly random actions in ``[-1, 1]``, reproducible from ``seed`` and the task's video.

    Each episode draws from a stream seeded by ``seed`` and a checksum of the
    target video, so a task gets the same actions whatever was played before
    it (and whichever evaluation worker plays it).
    """

    name = "random"

    def __init__(self, config: SceneConfig = DEFAULT_CONFIG, seed: int = 0) -> None:
        super().__init__(config)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def reset(self, obs: dict[str, Any], info: dict[str, Any]) -> None:
        self._rng = np.random.default_rng([self.seed, zlib.crc32(np.ascontiguousarray(obs["video"]).tobytes())])

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        return self._rng.uniform(-1.0, 1.0, (self.config.num_fingers, 4)).astype(np.float32)
