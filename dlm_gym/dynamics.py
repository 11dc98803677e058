"""The keyframe dynamics model shared by the scene, the oracle and the QP.

Between keyframes ``k - 1`` and ``k`` the fingers' servo targets sweep
linearly from one keyframe command to the next, so the contact wrenches are
(to first order) linear in time over each interval. With the object starting
at rest, its keyframe poses then obey, per coordinate of ``r = (x, y, theta)``::

    v(k) = v(k-1) + dt * (a(k-1) + a(k)) / 2
    r(k) = r(k-1) + dt * v(k-1) + dt^2 * (a(k-1) / 3 + a(k) / 6),   v(0) = 0

where ``a(k) = r''(k)`` is the acceleration at keyframe k. These T - 1
equations leave one degree of freedom per coordinate among the T
accelerations; we take the smoothest solution, the one whose consecutive
accelerations differ least (so a constant force is recovered exactly). It is a
fixed linear map of the trajectory (:func:`keyframe_accelerations`). The wrench the contacts must then
supply at keyframe k is ``M r''(k) + G`` (paper eq. 2, :func:`required_wrench`).
"""

from __future__ import annotations

import functools

import numpy as np

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.geometry import polar_moment

__all__ = [
    "acceleration_operator",
    "keyframe_accelerations",
    "keyframe_velocities",
    "wrench",
    "required_wrench",
]


@functools.lru_cache(maxsize=16)
def _operators(horizon: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Matrices ``B (T-1, T)`` with ``r[1:] - r[0] = B a`` and ``V (T, T)`` with ``v = V a``."""
    T = horizon
    V = np.zeros((T, T))  # v(k) as a combination of the accelerations
    B = np.zeros((T - 1, T))
    pos = np.zeros(T)
    for k in range(1, T):
        step = np.zeros(T)
        step[k - 1], step[k] = dt * dt / 3.0, dt * dt / 6.0
        pos = pos + dt * V[k - 1] + step
        B[k - 1] = pos
        V[k] = V[k - 1]
        V[k, k - 1] += dt / 2.0
        V[k, k] += dt / 2.0
    return B, V


@functools.lru_cache(maxsize=16)
def acceleration_operator(horizon: int, dt: float) -> np.ndarray:
    """``A (T, T)`` such that ``r''(t) = A @ r(t)`` column-wise (the smoothest consistent accelerations)."""
    B, _ = _operators(horizon, dt)
    _, _, vt = np.linalg.svd(B)
    null = vt[-1]  # B has full row rank T - 1: one null direction
    D = np.diff(np.eye(horizon), axis=0)  # consecutive differences of the accelerations
    Dn = D @ null
    # a = a_p + s * null with s minimising |D a|^2: a projection along the null direction.
    smooth = np.eye(horizon) - np.outer(null, Dn @ D) / (Dn @ Dn)
    pinv = smooth @ np.linalg.pinv(B)  # (T, T-1)
    A = np.zeros((horizon, horizon))
    A[:, 1:] = pinv
    A[:, 0] = -pinv.sum(axis=1)
    A.setflags(write=False)
    return A


def keyframe_accelerations(trajectory: np.ndarray, config: SceneConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Accelerations ``r''(t)``, shape ``(..., T, 3)``, of a trajectory ``(..., T, 3)`` started at rest."""
    traj = np.asarray(trajectory, dtype=np.float64)
    A = acceleration_operator(traj.shape[-2], config.dt)
    return np.einsum("st,...tc->...sc", A, traj)


def keyframe_velocities(trajectory: np.ndarray, config: SceneConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Velocities ``r'(t)`` ``(..., T, 3)`` implied by :func:`keyframe_accelerations`."""
    traj = np.asarray(trajectory, dtype=np.float64)
    _, V = _operators(traj.shape[-2], config.dt)
    return np.einsum("st,...tc->...sc", V, keyframe_accelerations(traj, config))


def wrench(accelerations, inertia, config: SceneConfig = DEFAULT_CONFIG):
    """``M r'' + G`` ``(..., T, 3)`` from accelerations ``(..., T, 3)`` and the moment of inertia ``I``.

    ``M = diag(m, m, I)``, ``G = (0, m g, 0)``. NumPy (``I`` a number) or torch
    (``I`` a tensor ``(B,)`` for a batch ``(B, T, 3)``, e.g. DLM's decoded inertia); the type is kept.
    """
    m, weight = config.mass, config.mass * config.gravity
    if isinstance(accelerations, np.ndarray):
        return accelerations * np.array([m, m, inertia]) + np.array([0.0, weight, 0.0])
    import torch

    mass = torch.full_like(inertia, m)
    M = torch.stack([mass, mass, inertia], dim=-1)[..., None, :]
    return accelerations * M + accelerations.new_tensor([0.0, weight, 0.0])


def required_wrench(polygon: np.ndarray, trajectory: np.ndarray, config: SceneConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Net contact wrench ``(T, 3)`` = ``M r''(t) + G``: force x, force y, torque about the centroid.

    ``M = diag(m, m, I)`` with ``I`` the polygon's moment about its centroid,
    ``G = (0, m g, 0)``. The finger and ground forces must sum to this.
    """
    return wrench(keyframe_accelerations(trajectory, config), polar_moment(polygon, config.mass), config)
