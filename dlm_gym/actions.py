"""The mapping between normalised actions and physical finger commands.

An action is a ``(N, 4)`` array in ``[-1, 1]``: per finger ``(x, y, f_x, f_y)``.

- ``x`` and ``y`` map linearly onto the camera's view, ``config.view_x`` and
  ``config.view_y`` (by default x in [-0.4, 0.4] m and y in [-0.05, 0.75] m):
  -1 is the left/bottom edge, +1 the right/top edge.
- ``f_x`` and ``f_y`` map linearly onto ``[-force_limit, force_limit]``
  newtons (40 N by default): the force the finger applies **on the object**.

A command is the same ``(N, 4)`` array in metres and newtons. Planners think in
commands (contact points ``p_c(t)`` and forces ``lambda_c(t)``); the
environment takes actions; these functions translate. This module is the one
definition of the action box: the conversions, :func:`command_bounds` and
:func:`clip_command` accept NumPy arrays or torch tensors and keep the type
(as :mod:`dlm_gym.metrics` does for the loss), so the env, the planners, the
networks' output layers and the simulators all share it.
"""

from __future__ import annotations

import numpy as np

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig

__all__ = [
    "action_scale_offset",
    "action_to_command",
    "command_to_action",
    "command_bounds",
    "clip_command",
    "validate_action",
    "as_executed",
    "noop_action",
    "noop_commands",
]


def action_scale_offset(config: SceneConfig = DEFAULT_CONFIG, like=None):
    """Per-coordinate ``(scale, offset)``, each ``(4,)``: ``command = action * scale + offset``.

    NumPy float64 arrays, or tensors of ``like``'s dtype and device when ``like`` is a torch tensor.
    """
    (x0, x1), (y0, y1), f = config.view_x, config.view_y, config.force_limit
    scale = np.array([(x1 - x0) / 2, (y1 - y0) / 2, f, f])
    offset = np.array([(x1 + x0) / 2, (y1 + y0) / 2, 0.0, 0.0])
    if like is None or isinstance(like, np.ndarray):
        return scale, offset
    return like.new_tensor(scale), like.new_tensor(offset)


def action_to_command(action, config: SceneConfig = DEFAULT_CONFIG):
    """Normalised action ``(..., N, 4)`` -> command in metres and newtons (no clipping).

    NumPy input gives float64; a torch tensor stays a tensor of its dtype.
    """
    if not isinstance(action, np.ndarray) and hasattr(action, "new_tensor"):
        scale, offset = action_scale_offset(config, like=action)
        return action * scale + offset
    scale, offset = action_scale_offset(config)
    return np.asarray(action, dtype=np.float64) * scale + offset


def command_to_action(command: np.ndarray, config: SceneConfig = DEFAULT_CONFIG, *, clip: bool = True) -> np.ndarray:
    """Command in metres and newtons ``(..., N, 4)`` -> normalised float32 action (clipped to [-1, 1] by default)."""
    scale, offset = action_scale_offset(config)
    action = (np.asarray(command, dtype=np.float64) - offset) / scale
    if clip:
        action = np.clip(action, -1.0, 1.0)
    return action.astype(np.float32)


def validate_action(action, config: SceneConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Check an action and return it as a float64 ``(N, 4)`` array clipped to ``[-1, 1]``.

    Integers and floats of any width are accepted. Complex, bool, string,
    date and object arrays are refused rather than cast: NumPy would drop an
    imaginary part with only a warning, read ``True`` as 1 and parse ``"0.5"``,
    so a bug in an agent would pass as a valid action.

    Raises:
        ValueError: if it is not an array of real numbers, has the wrong shape, or holds NaN or inf.
    """
    expected = (config.num_fingers, 4)
    wanted = f"a real numeric array (int or float dtype) of shape {expected}"
    try:
        raw = np.asarray(action)
    except (TypeError, ValueError) as exc:  # ragged nesting
        raise ValueError(f"action must be {wanted}: {exc}") from None
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"action must be {wanted}, got dtype {raw.dtype}")
    a = raw.astype(np.float64)
    if a.shape != expected:
        raise ValueError(f"action must have shape {expected} (per finger: x, y, f_x, f_y in [-1, 1]), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("action contains NaN or inf; every entry must be a finite number in [-1, 1]")
    return np.clip(a, -1.0, 1.0)


def as_executed(command: np.ndarray, config: SceneConfig = DEFAULT_CONFIG) -> np.ndarray:
    """The commands the env executes when these are handed to it as (float32, clipped) actions.

    Stored oracle losses are measured on these, so that they equal what the
    ``miqp`` policy scores through the env to the last bit.
    """
    return action_to_command(command_to_action(command, config), config)


def command_bounds(config: SceneConfig = DEFAULT_CONFIG, like=None):
    """Lower and upper command bounds ``(4,)``: what the actions -1 and +1 map to.

    The same arithmetic as :func:`action_to_command`, so values clipped here match the env's bit for bit.
    """
    scale, offset = action_scale_offset(config, like)
    return -1.0 * scale + offset, 1.0 * scale + offset


def clip_command(command, config: SceneConfig = DEFAULT_CONFIG):
    """Clip commands ``(..., 4)`` into the action box (NumPy or torch; torch keeps the gradient inside it)."""
    if not isinstance(command, np.ndarray) and hasattr(command, "new_tensor"):
        import torch

        lo, hi = command_bounds(config, like=command)
        return torch.maximum(torch.minimum(command, hi), lo)
    lo, hi = command_bounds(config)
    return np.minimum(np.maximum(command, lo), hi)


def noop_action(config: SceneConfig = DEFAULT_CONFIG) -> np.ndarray:
    """The do-nothing action ``(N, 4)`` (float32): fingers in the top corners of the view, no force.

    No generated object reaches those corners, so the object moves under
    gravity and the ground alone: the ``noop`` policy's action, the ceiling of every comparison.
    """
    n = config.num_fingers
    xs = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
    return np.stack([xs, np.ones(n), np.zeros(n), np.zeros(n)], axis=1).astype(np.float32)


def noop_commands(config: SceneConfig = DEFAULT_CONFIG) -> np.ndarray:
    """The do-nothing commands ``(T, N, 4)`` in metres and newtons: :func:`noop_action` at every keyframe."""
    return np.repeat(action_to_command(noop_action(config), config)[None], config.horizon, axis=0)
