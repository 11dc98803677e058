"""The object-trajectory loss, in the paper's units (docs/design.md section 5).

The paper's code compares the simulated and target trajectories as ``3 x T``
matrices of ``(x, y, rho * sin(theta))`` with ``rho = 0.03 m``, scaled by 100
(to centimetres), and takes the mean squared error. Table 1 is in this unit.

The functions accept NumPy arrays or torch tensors (and keep the type), so
that the environment's reward, the evaluation loop and the training losses
share one definition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

from dlm_gym.config import DEFAULT_CONFIG

__all__ = ["pose_features", "keyframe_errors", "object_trajectory_loss"]

if TYPE_CHECKING:
    import torch

Array = TypeVar("Array", np.ndarray, "torch.Tensor")
_CM = 100.0


def _sin(x):
    return np.sin(x) if isinstance(x, np.ndarray) else x.sin()


def pose_features(trajectory: Array, rho: float = DEFAULT_CONFIG.loss_rho) -> Array:
    """``(..., T, 3)`` poses -> ``(..., T, 3)`` features ``(x, y, rho sin theta)`` in centimetres."""
    xy = trajectory[..., :2]
    ang = rho * _sin(trajectory[..., 2:3])
    if isinstance(trajectory, np.ndarray):
        return _CM * np.concatenate([xy, ang], axis=-1)
    import torch

    return _CM * torch.cat([xy, ang], dim=-1)


def keyframe_errors(simulated: Array, target: Array, rho: float = DEFAULT_CONFIG.loss_rho) -> Array:
    """Per-keyframe share ``(..., T)`` of the loss: their sum over keyframes is :func:`object_trajectory_loss`."""
    diff = pose_features(simulated, rho) - pose_features(target, rho)
    sq = diff * diff
    return sq.sum(-1) / (3 * simulated.shape[-2])


def object_trajectory_loss(simulated: Array, target: Array, rho: float = DEFAULT_CONFIG.loss_rho) -> Array:
    """Mean squared error, in cm^2, between ``(..., T, 3)`` simulated and target trajectories."""
    return keyframe_errors(simulated, target, rho).sum(-1)
