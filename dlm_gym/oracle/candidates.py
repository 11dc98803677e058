"""The oracle's contact candidates: K body-fixed points per facet and their geometry over the horizon.

Fixing the contact point per finger for the whole horizon is what makes the
torque linear in the forces (no McCormick envelope, see :mod:`dlm_gym.oracle`),
and it matches the simulated fingers, which grip by static friction and cannot
slide along a facet faithfully.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.dynamics import acceleration_operator
from dlm_gym.mechanics import finger_geometry
from dlm_gym.task import Task

__all__ = [
    "CANDIDATE_GROUND_MARGIN",
    "DEFAULT_CANDIDATES_PER_FACET",
    "ContactCandidates",
    "contact_candidates",
]

DEFAULT_CANDIDATES_PER_FACET = 6
"""K, candidate contact points per facet."""
CANDIDATE_GROUND_MARGIN = 0.002
"""Metres of clearance a finger must keep from the ground."""


@dataclasses.dataclass
class ContactCandidates:
    """The K candidate contact points per facet of a task and their geometry.

    Attributes:
        facets: ``(C,)`` facet of each candidate (C = N_F K).
        fractions: ``(C,)`` fraction along the facet.
        positions: ``(T, C, 2)`` world contact points.
        cones: ``(T, C, 2, 2)`` world friction-cone rays (pointing into the object).
        valid: ``(C,)`` False for candidates too close to the ground at some keyframe.
        accel_sq: ``(C,)`` ``sum_t ||p''(t)||^2`` of the candidate's world trajectory.
    """

    facets: np.ndarray
    fractions: np.ndarray
    positions: np.ndarray
    cones: np.ndarray
    valid: np.ndarray
    accel_sq: np.ndarray


def contact_candidates(
    task: Task,
    config: SceneConfig = DEFAULT_CONFIG,
    candidates_per_facet: int = DEFAULT_CANDIDATES_PER_FACET,
    *,
    ground_margin: float = CANDIDATE_GROUND_MARGIN,
) -> ContactCandidates:
    """Candidate contact points at fractions ``(k + 0.5) / K`` of every facet, with their geometry.

    A candidate is invalid when at some keyframe its point lies below
    ``finger_radius + ground_margin`` or the finger disc touching it from
    outside dips within ``ground_margin`` of the ground: no finger fits under
    an object lying on the ground.

    ``accel_sq`` is ``sum_t ||p_c''(t)||^2`` (eq. 11's acceleration term before
    ``q_p``). With exactly one candidate per finger it is a constant per
    candidate, so it enters the MIQP linearly in the binaries.
    """
    K = int(candidates_per_facet)
    if K < 1:
        raise ValueError(f"candidates_per_facet must be >= 1, got {candidates_per_facet}")
    facets = np.repeat(np.arange(task.n_facets), K)
    fractions = np.tile((np.arange(K) + 0.5) / K, task.n_facets)
    geo = finger_geometry(task, facets, fractions, config)
    rf = config.finger_radius
    disc_bottom = geo.positions[..., 1] + rf * geo.normals[..., 1] - rf
    clear = (geo.positions[..., 1] >= rf + ground_margin) & (disc_bottom >= ground_margin)
    valid = clear.all(axis=0)
    A = acceleration_operator(task.horizon, config.dt)
    acc = np.einsum("st,tci->sci", A, geo.positions)
    return ContactCandidates(
        facets=facets,
        fractions=fractions,
        positions=geo.positions,
        cones=geo.cones,
        valid=valid,
        accel_sq=(acc**2).sum(axis=(0, 2)),
    )
