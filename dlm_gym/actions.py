"""The mapping between normalised actions and physical finger commands.

An action is a ``(N, 4)`` array in ``[-1, 1]``: per finger ``(x, y, f_x, f_y)``.

- ``x`` and ``y`` map linearly onto the camera's view, ``config.view_x`` and
  ``config.view_y`` (by default x in [-0.4, 0.4] m and y in [-0.05, 0.75] m):
  -1 is the left/bottom edge, +1 the right/top edge.
- ``f_x`` and ``f_y`` map linearly onto ``[-force_limit, force_limit]``
  newtons (40 N by default): the force the finger applies **on the object**.

A command is the same ``(N, 4)`` array in metres and newtons. Planners think in
commands (contact points ``p_c(t)`` and forces ``lambda_c(t)``); the
environment takes actions; these two functions translate.
"""

from __future__ import annotations

import numpy as np

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig

__all__ = ["action_to_command", "command_to_action", "validate_action", "as_executed"]


def _scale_offset(config: SceneConfig) -> tuple[np.ndarray, np.ndarray]:
    (x0, x1), (y0, y1), f = config.view_x, config.view_y, config.force_limit
    scale = np.array([(x1 - x0) / 2, (y1 - y0) / 2, f, f])
    offset = np.array([(x1 + x0) / 2, (y1 + y0) / 2, 0.0, 0.0])
    return scale, offset


def action_to_command(action: np.ndarray, config: SceneConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Normalised action ``(..., N, 4)`` -> command in metres and newtons (no clipping)."""
    scale, offset = _scale_offset(config)
    return np.asarray(action, dtype=np.float64) * scale + offset


def command_to_action(command: np.ndarray, config: SceneConfig = DEFAULT_CONFIG, *, clip: bool = True) -> np.ndarray:
    """Command in metres and newtons ``(..., N, 4)`` -> normalised float32 action (clipped to [-1, 1] by default)."""
    scale, offset = _scale_offset(config)
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
        raise ValueError(
            f"action must have shape {expected} (per finger: x, y, f_x, f_y in [-1, 1]), got {a.shape}"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError("action contains NaN or inf; every entry must be a finite number in [-1, 1]")
    return np.clip(a, -1.0, 1.0)


def as_executed(command: np.ndarray, config: SceneConfig = DEFAULT_CONFIG) -> np.ndarray:
    """The commands the env executes when these are handed to it as (float32, clipped) actions.

    Stored oracle losses are measured on these, so that they equal what the
    ``miqp`` policy scores through the env to the last bit.
    """
    return action_to_command(command_to_action(command, config), config)
