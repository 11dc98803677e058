"""Reference baselines: the do-nothing ceiling, uniformly random actions, and a squeeze-and-carry heuristic."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from dlm_gym.actions import clip_command, noop_action
from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.dynamics import required_wrench
from dlm_gym.geometry import lowest_height, rotation
from dlm_gym.mechanics import facet_frames
from dlm_gym.task import Task
from policies.common.base import Policy
from policies.common.registry import register_policy

__all__ = ["NoopPolicy", "RandomPolicy", "squeeze_commands"]


@register_policy("noop")
class NoopPolicy(Policy):
    """Do nothing: the fingers wait in the top corners of the view with zero force.

    No generated object reaches those corners, so the object moves under
    gravity and the ground alone. Its loss is the ceiling of every comparison.
    """

    name = "noop"

    def __init__(self, config: SceneConfig = DEFAULT_CONFIG) -> None:
        super().__init__(config)
        self._action = noop_action(config)

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


def squeeze_commands(task: Task, squeeze: float = 15.0, config: SceneConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Plausible oracle-like commands ``(T, N, 4)`` for a task: a two-finger squeeze that carries the object.

    Two facets and points on them are chosen (in the object frame) so that the
    line between the points lies inside both friction cones with the most
    margin and passes as close to the centroid as possible. At each keyframe
    the points follow the target pose; each finger presses towards the other
    with ``squeeze`` newtons and adds half of the net force ``m r'' + m g``
    (:func:`dlm_gym.dynamics.required_wrench`) when the target is off the
    ground, or half of ``m r''`` when it rests on it. Not an optimal plan; a
    test and benchmark input. With N != 2 the extra fingers are parked at the
    top of the view.
    """
    v = np.asarray(task.polygon, dtype=np.float64)
    e = np.roll(v, -1, axis=0) - v
    _, n = facet_frames(v)
    mu = config.finger_friction
    s = np.linspace(0.2, 0.8, 7)
    best, best_score = None, -np.inf
    F = len(v)
    for a in range(F):
        for b in range(a + 1, F):
            pa = v[a] + s[:, None] * e[a]  # (7, 2)
            pb = v[b] + s[:, None] * e[b]
            u = pb[None, :, :] - pa[:, None, :]  # (7, 7, 2) from a to b
            dist = np.linalg.norm(u, axis=-1)
            u = u / np.maximum(dist, 1e-9)[..., None]
            # finger a pushes along u, which must point into the object (-n_a): cos vs inward normals
            cos_a = -(u @ n[a])
            cos_b = u @ n[b]
            cos = np.minimum(cos_a, cos_b)
            inside = cos > 1.0 / np.sqrt(1.0 + (0.8 * mu) ** 2)  # 80 % of the friction cone
            mid = np.linalg.norm((pa[:, None, :] + pb[None, :, :]) / 2, axis=-1)
            score = np.where(inside, cos - 2.0 * mid / config.object_radius, -np.inf)
            i, j = np.unravel_index(np.argmax(score), score.shape)
            if score[i, j] > best_score:
                best_score, best = score[i, j], (pa[i], pb[j])
    if best is None:  # no antipodal pair: opposite vertices' neighbourhood, squeezing through the centroid
        a = int(np.argmin(v[:, 0]))
        b = int(np.argmax(v[:, 0]))
        best = (0.9 * v[a], 0.9 * v[b])
    pa, pb = best
    T = config.horizon
    traj = task.trajectory
    R = rotation(traj[:, 2])  # (T, 2, 2)
    wa = np.einsum("tij,j->ti", R, pa) + traj[:, :2]
    wb = np.einsum("tij,j->ti", R, pb) + traj[:, :2]
    u = wb - wa
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    net = required_wrench(task.polygon, traj, config)[:, :2].copy()
    on_ground = lowest_height(task.polygon, traj) < 3e-3
    net[on_ground, 1] -= config.mass * config.gravity
    net[on_ground, 1] = np.maximum(net[on_ground, 1], 0.0)
    cmd = np.zeros((T, config.num_fingers, 4))
    cmd[:, 0, :2], cmd[:, 0, 2:] = wa, squeeze * u + net / 2
    if config.num_fingers >= 2:
        cmd[:, 1, :2], cmd[:, 1, 2:] = wb, -squeeze * u + net / 2
    for extra in range(2, config.num_fingers):
        cmd[:, extra, 0] = config.view_x[1]
        cmd[:, extra, 1] = config.view_y[1]
    return clip_command(cmd, config)
