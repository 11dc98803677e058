"""Wrappers that adapt ``VideoPlanarManip-v0`` to other libraries and to learning agents.

They are wrappers, never a change to the env: the env, its observations and its
rewards stay what the benchmark defines, and a result obtained through a
wrapper is scored by the same env.

- :class:`StackVideoChannels`: the pixel observation as one image stack for SB3.
- :class:`MarkovState`: ``obs_type="state"`` plus the object's velocity and the
  previous action, so that the observation is (closer to) a Markov state.
- :class:`RelativeContacts`: the fingers' contact points as offsets from the
  current keyframe's target centroid instead of absolute positions in the view.

Stack them as ``RelativeContacts(MarkovState(env))``: ``MarkovState`` innermost
records the absolute action the env executes.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dlm_gym.actions import action_to_command, command_to_action, validate_action
from dlm_gym.envs.video_planar_manip import STATE_BOUND, VideoPlanarManipEnv

__all__ = ["StackVideoChannels", "MarkovState", "RelativeContacts", "RELATIVE_CONTACT_RANGE"]

RELATIVE_CONTACT_RANGE = 0.25
"""Metres: :class:`RelativeContacts` maps a finger's ``x`` or ``y`` action of +-1 to an offset of +-0.25 m from
the target centroid, more than the generated objects' 0.2 m circumradius, so every surface point is reachable."""


def _planar_env(env: gym.Env, wrapper: str) -> VideoPlanarManipEnv:
    base = env.unwrapped
    if not isinstance(base, VideoPlanarManipEnv):
        raise ValueError(f"{wrapper} wraps VideoPlanarManip-v0, got {type(base).__name__}")
    return base


def _require_state(env: gym.Env, wrapper: str, keys: tuple[str, ...]) -> spaces.Dict:
    space = env.observation_space
    if not isinstance(space, spaces.Dict) or not set(keys) <= set(space.spaces):
        raise ValueError(
            f"{wrapper} needs the state observations of VideoPlanarManip-v0 (a Dict with {', '.join(keys)}); "
            "make the env with obs_type='state'"
        )
    return space


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


class MarkovState(gym.Wrapper):
    """Add the object's velocity and the previous action to the ``obs_type="state"`` observation.

    The state observation holds the object's pose but not its velocity, and not
    the command of the previous keyframe, from which the next interval sweeps
    the fingers (see the env's "Episode and timing"): two facts that decide what
    an action does. This wrapper adds them to the observation ``Dict``; the
    env's own keys, its rewards, its ``info`` and its dynamics are unchanged.

    - ``velocity``: ``(3,)`` float64, the object's velocity ``(dx/dt, dy/dt, dtheta/dt)`` (m/s, rad/s) at the
      current keyframe, as pymunk holds it at the end of the last interval (zero at reset: the object
      starts at rest; zero after step 0 too, which places the fingers without letting time pass). It is
      read from the env's scene, ``env.unwrapped._scene.object_velocity``: a **private** attribute of
      :class:`~dlm_gym.envs.VideoPlanarManipEnv`, as the env exposes no public velocity. Clipped to
      +-:data:`~dlm_gym.envs.video_planar_manip.STATE_BOUND` so that it always lies in its box.
    - ``previous_action``: ``(N, 4)`` float32, the action handed to the env at the previous step, clipped to
      ``[-1, 1]`` as the env clips it (so, the normalised command it executed); zeros at reset.

    Put it directly around the env (innermost), so that ``previous_action`` is the absolute action the env
    executed, whatever action wrappers (:class:`RelativeContacts`) sit outside it.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = _require_state(env, "MarkovState", ("pose", "step"))
        self._base = _planar_env(env, "MarkovState")
        self._config = self._base.config
        box = env.action_space
        assert isinstance(box, spaces.Box)
        self._action_shape = box.shape
        self.observation_space = spaces.Dict(
            {
                **space.spaces,
                "velocity": spaces.Box(-STATE_BOUND, STATE_BOUND, (3,), np.float64),
                "previous_action": spaces.Box(-1.0, 1.0, box.shape, np.float32),
            }
        )
        self._previous = np.zeros(box.shape, np.float32)

    def _velocity(self) -> np.ndarray:
        scene = self._base._scene  # private: the env has no public velocity (see the class docstring)
        return np.clip(np.asarray(scene.object_velocity, dtype=np.float64), -STATE_BOUND, STATE_BOUND)

    def _augment(self, obs: dict[str, Any]) -> dict[str, Any]:
        return {**obs, "velocity": self._velocity(), "previous_action": self._previous.copy()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._previous = np.zeros(self._action_shape, np.float32)
        return self._augment(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        # the env accepted it, so it is valid: keep it as the env executed it (clipped to the box)
        self._previous = validate_action(action, self._config).astype(np.float32)
        return self._augment(obs), reward, terminated, truncated, info


class RelativeContacts(gym.ActionWrapper):
    """Read each finger's ``(x, y)`` action as an offset from the current keyframe's target centroid.

    The env's action places contact points anywhere in the camera's 0.8 m x 0.8 m
    view, most of it far from the object. With this wrapper an agent acts in the
    object's neighbourhood instead: per finger ``(dx, dy, f_x, f_y)`` in
    ``[-1, 1]``, where the contact point is ``c_k + RELATIVE_CONTACT_RANGE * (dx, dy)``,
    ``c_k`` the centroid ``(x, y)`` of the target pose of the keyframe being
    commanded (row ``step`` of the observation's ``targets``), offsets along
    the world axes (not rotated with the object), +-:data:`RELATIVE_CONTACT_RANGE`
    = 0.25 m at +-1. The forces ``f_x, f_y`` are passed through unchanged. The
    contact point is converted to the env's absolute normalised action with
    :func:`dlm_gym.actions.command_to_action` and clipped to the box, so a
    point beyond the view lands on its edge. A zero offset is the target
    centroid, inside the object: the env moves such a point onto the surface
    (``info["projection_distance"]``).

    It needs ``obs_type="state"`` (it reads ``targets`` and ``step`` from the
    last observation it passed on). Observations, rewards and ``info`` are unchanged.
    """

    def __init__(self, env: gym.Env, scale: float = RELATIVE_CONTACT_RANGE) -> None:
        super().__init__(env)
        _require_state(env, "RelativeContacts", ("targets", "step"))
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number of metres, got {scale!r}")
        self.scale = float(scale)
        self._config = _planar_env(env, "RelativeContacts").config
        self._obs: dict[str, Any] | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs = obs
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(self.action(action))
        self._obs = obs
        return obs, reward, terminated, truncated, info

    def action(self, action) -> np.ndarray:
        """The env's absolute action ``(N, 4)`` float32 for a relative ``action`` at the current observation."""
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        return relative_to_absolute(action, self._obs["targets"], self._obs["step"], self.scale, self._config)


def relative_to_absolute(action, targets, step: int, scale: float = RELATIVE_CONTACT_RANGE, config=None) -> np.ndarray:
    """:class:`RelativeContacts`' mapping: relative ``action`` at keyframe ``step`` -> the env's absolute action.

    ``targets`` is the ``(T, 3)`` target trajectory; the offsets are measured from ``targets[step, :2]``
    (the last row once the episode is over). NaN/inf or a wrong shape raise ``ValueError`` as the env does.
    """
    from dlm_gym.config import DEFAULT_CONFIG

    config = config or DEFAULT_CONFIG
    a = validate_action(action, config)  # float64 (N, 4), clipped to [-1, 1]
    targets = np.asarray(targets, dtype=np.float64)
    k = min(int(step), len(targets) - 1)
    command = action_to_command(a, config)
    command[:, :2] = targets[k, :2] + scale * a[:, :2]
    absolute = command_to_action(command, config)  # clipped to the box
    absolute[:, 2:] = a[:, 2:]  # the forces, exactly as given
    return absolute
