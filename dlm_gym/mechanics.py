"""Mechanical parameters P(t) of a task and a contact choice (paper Section 4.1, Appendix A).

This module is the one owner of the contact geometry. The oracle writes the
parameters as labels, the MDR/CVX/DLM decoders regress them, the QP layer
consumes them. For a :class:`~dlm_gym.task.Task` (polygon in the object frame,
target poses ``r(t)``) and one contact per finger it computes, per keyframe::

    P(t) = { r(t), J(r)(t), F_c(t), FC_c(t), p_e(t), FC_e(t) }      (+ p_c(t))

Contacts
--------
Finger ``c`` touches facet ``f_c`` (the facet from vertex ``f_c`` to vertex
``f_c + 1``) at the fraction ``s_c`` in [0, 1] along it. The point is fixed in
the body frame over the whole horizon (sticking contact): the simulated
fingers grip by static friction and cannot slide along a facet faithfully.

The environment is the ground line y = 0 with E = 2 contact slots. At
keyframe t its contacts are the polygon vertices within
:data:`GROUND_CONTACT_TOLERANCE` of the ground at the target pose r(t): the
leftmost such vertex fills slot 0 and the rightmost slot 1 (a single touching
vertex fills slot 0 only). A contact is only usable if the object also rests
on the ground at the neighbouring keyframes: keyframe forces act linearly over
the adjacent intervals, and the ground cannot push an object that lifts off or
lands during one. An empty slot has ``p_e`` at the centroid and
**zero rays**, so the force ``a_1 gamma_1 + a_2 gamma_2`` with ``a >= 0`` it
can carry is zero.

Sign conventions
----------------
* Every force is a world-frame 2-vector acting **on the object**.
* Friction cones are two unit rays ``gamma_1, gamma_2``; the admissible forces
  are ``{a_1 gamma_1 + a_2 gamma_2 : a >= 0}``. A finger's rays are
  ``normalize(-n_out -+ mu_c t)`` with ``n_out`` the facet's outward normal and
  ``t`` its unit tangent (vertex f -> f + 1), so they point into the object.
  Ray 1 leans against the tangent, ray 2 along it. Ground rays are
  ``normalize((-+ mu_e, 1))``.
* ``J`` is the paper's ``J(r)^T``: a ``(3, 2 (N + E))`` matrix with
  ``wrench = J @ Lambda`` where ``Lambda = [lambda_1, ..., lambda_N,
  lambda_e1, lambda_e2]`` (x, y per contact) and the wrench is
  ``(f_x, f_y, torque about the centroid)``. The columns of contact k are
  ``[[1, 0], [0, 1], [-d_y, d_x]]`` with ``d = p_k - r_xy`` the lever arm.

Sliding ground contacts
-----------------------
If a ground contact's material point slides at keyframe t (its tangential
speed, translation plus ``omega x d``, from
:func:`dlm_gym.dynamics.keyframe_velocities`, exceeds
:data:`SLIDING_SPEED`), Coulomb's law fixes the friction at the kinetic value
opposing the slip: both rays equal the single cone edge
``normalize((-sign(v_t) mu_e, 1))``. The pymunk scene slides with full
kinetic friction, so a plan that assumed less friction (any force strictly
inside the cone) would not be executed faithfully.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.dynamics import keyframe_velocities
from dlm_gym.geometry import rotation, world_polygons
from dlm_gym.task import Task

__all__ = [
    "NUM_ENV_CONTACTS",
    "GROUND_CONTACT_TOLERANCE",
    "SLIDING_SPEED",
    "MechanicalParameters",
    "FingerGeometry",
    "EnvContacts",
    "facet_frames",
    "finger_geometry",
    "env_contacts_for",
    "contact_jacobian",
    "mechanical_parameters",
    "contact_wrench",
    "vector_layout",
    "vector_dim",
    "to_vector",
    "from_vector",
    "contact_points_from_jacobian",
]

NUM_ENV_CONTACTS = 2
"""E, the number of environment (ground) contact slots."""
GROUND_CONTACT_TOLERANCE = 1e-3
"""Metres above y = 0 within which a vertex counts as touching the ground."""
SLIDING_SPEED = 0.02
"""m/s of tangential speed above which a ground contact is taken as sliding."""


@dataclasses.dataclass
class MechanicalParameters:
    """The mechanical parameters P(t) for T keyframes (all float64, keyframe axis first).

    N = ``config.num_fingers`` fingers, E = :data:`NUM_ENV_CONTACTS` ground slots.
    Arrays may carry extra leading batch axes (as from :func:`from_vector`).

    Attributes:
        trajectory: ``(T, 3)`` target poses r(t) = (x, y, theta).
        jacobian: ``(T, 3, 2 (N + E))`` the paper's J(r)^T: wrench = J @ Lambda.
        finger_facets: ``(T, N, 2, 2)`` world vertices (phi_1, phi_2) of each finger's facet F_c(t).
        finger_cones: ``(T, N, 2, 2)`` unit rays (gamma_1, gamma_2) of FC_c(t), pointing into the object.
        finger_positions: ``(T, N, 2)`` world contact points p_c(t).
        env_contacts: ``(T, E, 2)`` ground contact points p_e(t) (centroid for an empty slot).
        env_cones: ``(T, E, 2, 2)`` ground rays FC_e(t) (zero for an empty slot).
    """

    trajectory: np.ndarray
    jacobian: np.ndarray
    finger_facets: np.ndarray
    finger_cones: np.ndarray
    finger_positions: np.ndarray
    env_contacts: np.ndarray
    env_cones: np.ndarray

    @property
    def horizon(self) -> int:
        return int(self.trajectory.shape[-2])

    @property
    def num_fingers(self) -> int:
        return int(self.finger_positions.shape[-2])

    def as_dict(self) -> dict[str, np.ndarray]:
        """Field name -> array (the ``param/<name>`` entries of a dataset split)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, np.ndarray]) -> MechanicalParameters:
        """Inverse of :meth:`as_dict` (extra keys are ignored)."""
        return cls(**{f.name: np.asarray(data[f.name], dtype=np.float64) for f in dataclasses.fields(cls)})


class FingerGeometry(NamedTuple):
    """World geometry of M body-fixed contact points over T keyframes."""

    positions: np.ndarray
    """``(T, M, 2)`` contact points p_c(t)."""
    facets: np.ndarray
    """``(T, M, 2, 2)`` facet vertices (phi_1, phi_2)."""
    cones: np.ndarray
    """``(T, M, 2, 2)`` unit friction-cone rays pointing into the object."""
    normals: np.ndarray
    """``(T, M, 2)`` outward unit normals of the facets."""


class EnvContacts(NamedTuple):
    """Ground contacts over T keyframes."""

    points: np.ndarray
    """``(T, E, 2)`` contact points p_e(t)."""
    cones: np.ndarray
    """``(T, E, 2, 2)`` friction-cone rays (zero rows for an empty slot)."""
    active: np.ndarray
    """``(T, E)`` bool, whether the slot holds a contact."""
    sliding: np.ndarray
    """``(T, E)`` bool, whether the contact slides (kinetic friction)."""


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def facet_frames(polygon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Body-frame unit tangents and outward normals ``(N_F, 2)`` of a CCW polygon's facets.

    For a counter-clockwise polygon the outside lies to the right of each
    directed facet, so ``n_out = (t_y, -t_x)``.
    """
    edges = np.roll(polygon, -1, axis=0) - polygon
    tangents = _normalize(edges)
    normals = np.stack([tangents[:, 1], -tangents[:, 0]], axis=-1)
    return tangents, normals


def finger_geometry(
    task: Task,
    facets,
    fractions,
    config: SceneConfig = DEFAULT_CONFIG,
) -> FingerGeometry:
    """World geometry of body-fixed contacts at ``fractions`` along ``facets``.

    Args:
        task: the task (polygon and target poses r(t)).
        facets: ``(M,)`` facet indices (any M: the oracle passes every candidate at once).
        fractions: ``(M,)`` positions in [0, 1] along each facet, from vertex f to f + 1.
        config: supplies the finger friction ``mu_c``.
    """
    poly = task.polygon
    nf = poly.shape[0]
    f = np.asarray(facets, dtype=np.int64).reshape(-1)
    s = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if f.shape != s.shape:
        raise ValueError(f"facets {f.shape} and fractions {s.shape} must have the same length")
    if np.any((f < 0) | (f >= nf)):
        raise ValueError(f"facet indices must lie in [0, {nf}), got {f.tolist()}")
    if np.any(~np.isfinite(s)) or np.any((s < 0) | (s > 1)):
        raise ValueError(f"fractions must lie in [0, 1], got {s.tolist()}")
    a, b = poly[f], poly[(f + 1) % nf]
    body_points = a + s[:, None] * (b - a)
    tangents, normals = facet_frames(poly)
    t_b, n_b = tangents[f], normals[f]
    mu = config.finger_friction
    # Ray 1 leans against the facet direction, ray 2 along it.
    rays_b = _normalize(np.stack([-n_b - mu * t_b, -n_b + mu * t_b], axis=1))  # (M, 2, 2)

    traj = task.trajectory
    rot = rotation(traj[:, 2])  # (T, 2, 2)
    shift = traj[:, None, :2]
    positions = np.einsum("tij,mj->tmi", rot, body_points) + shift
    facet_pts = np.einsum("tij,mkj->tmki", rot, np.stack([a, b], axis=1)) + shift[:, :, None, :]
    cones = np.einsum("tij,mkj->tmki", rot, rays_b)
    world_normals = np.einsum("tij,mj->tmi", rot, n_b)
    return FingerGeometry(positions, facet_pts, cones, world_normals)


def env_contacts_for(task: Task, config: SceneConfig = DEFAULT_CONFIG) -> EnvContacts:
    """Ground contacts p_e(t) and cones FC_e(t) of a task (see the module docstring)."""
    traj = task.trajectory
    T = traj.shape[0]
    E = NUM_ENV_CONTACTS
    world = world_polygons(task.polygon, traj)  # (T, N_F, 2)
    vel = keyframe_velocities(traj, config)  # (T, 3): v_x, v_y, omega
    mu = config.ground_friction
    stick = _normalize(np.array([[-mu, 1.0], [mu, 1.0]]))
    points = np.repeat(traj[:, None, :2], E, axis=1).copy()
    cones = np.zeros((T, E, 2, 2))
    active = np.zeros((T, E), dtype=bool)
    sliding = np.zeros((T, E), dtype=bool)
    on_ground = world[..., 1].min(axis=1) <= GROUND_CONTACT_TOLERANCE  # (T,)
    for t in range(T):
        # The force at keyframe t acts (linearly fading) over both neighbouring
        # intervals. A ground cannot pull, nor push an object that is leaving or
        # has not yet landed, so the contact is usable only if the object rests
        # on the ground at t and at its neighbouring keyframes.
        if not on_ground[max(t - 1, 0) : t + 2].all():
            continue
        touching = np.flatnonzero(world[t, :, 1] <= GROUND_CONTACT_TOLERANCE)
        xs = world[t, touching, 0]
        chosen = [touching[np.argmin(xs)]]
        if touching.size > 1:
            chosen.append(touching[np.argmax(xs)])
        for slot, v in enumerate(chosen):
            p = world[t, v]
            d = p - traj[t, :2]
            # Material-point velocity v + omega x d; its x part is the slip along the ground.
            v_t = vel[t, 0] - vel[t, 2] * d[1]
            points[t, slot] = p
            active[t, slot] = True
            if abs(v_t) > SLIDING_SPEED:
                sliding[t, slot] = True
                edge = _normalize(np.array([-np.sign(v_t) * mu, 1.0]))
                cones[t, slot] = [edge, edge]
            else:
                cones[t, slot] = stick
    return EnvContacts(points, cones, active, sliding)


def contact_jacobian(trajectory: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(T, 3, 2 K)`` map from K stacked contact forces to the wrench about the centroid.

    Args:
        trajectory: ``(T, 3)`` poses; only the centroid positions matter.
        points: ``(T, K, 2)`` world contact points.
    """
    d = points - trajectory[:, None, :2]  # lever arms (T, K, 2)
    T, K = d.shape[:2]
    J = np.zeros((T, 3, K, 2))
    J[:, 0, :, 0] = 1.0
    J[:, 1, :, 1] = 1.0
    # torque = d x lambda = d_x lambda_y - d_y lambda_x
    J[:, 2, :, 0] = -d[..., 1]
    J[:, 2, :, 1] = d[..., 0]
    return J.reshape(T, 3, 2 * K)


def mechanical_parameters(
    task: Task,
    facets,
    fractions,
    config: SceneConfig = DEFAULT_CONFIG,
) -> MechanicalParameters:
    """P(t) for a task and one sticking contact per finger.

    Args:
        task: the task.
        facets: ``(N,)`` facet index of each finger, N = ``config.num_fingers``.
        fractions: ``(N,)`` fraction along each facet (vertex f -> f + 1).
        config: scene constants (friction coefficients, finger count).
    """
    f = np.asarray(facets).reshape(-1)
    if f.shape[0] != config.num_fingers:
        raise ValueError(f"need one facet per finger ({config.num_fingers}), got {f.shape[0]}")
    fingers = finger_geometry(task, facets, fractions, config)
    env = env_contacts_for(task, config)
    traj = np.array(task.trajectory, dtype=np.float64)
    J = contact_jacobian(traj, np.concatenate([fingers.positions, env.points], axis=1))
    return MechanicalParameters(
        trajectory=traj,
        jacobian=J,
        finger_facets=fingers.facets,
        finger_cones=fingers.cones,
        finger_positions=fingers.positions,
        env_contacts=env.points,
        env_cones=env.cones,
    )


def contact_wrench(params: MechanicalParameters, finger_forces: np.ndarray, env_forces: np.ndarray) -> np.ndarray:
    """Wrench ``(T, 3)`` = J @ Lambda of finger forces ``(T, N, 2)`` and ground forces ``(T, E, 2)``."""
    lam = np.concatenate([finger_forces, env_forces], axis=-2)
    lam = lam.reshape(*lam.shape[:-2], -1)
    return np.einsum("...ij,...j->...i", params.jacobian, lam)


# --- flat vector packing ----------------------------------------------------


def vector_layout(config: SceneConfig = DEFAULT_CONFIG) -> list[tuple[str, tuple[int, ...]]]:
    """Per-keyframe blocks of :func:`to_vector`, in order: (field name, per-keyframe shape).

    With N fingers and E = 2 ground slots::

        trajectory     3                 r(t)
        jacobian       3 * 2 (N + E)     J(r)(t), row-major
        finger_facets  N * 2 * 2         (phi_1, phi_2) per finger
        finger_cones   N * 2 * 2         (gamma_1, gamma_2) per finger
        env_contacts   E * 2             p_e(t)
        env_cones      E * 2 * 2         (gamma_1^e, gamma_2^e) per slot

    i.e. ``3 + 6 (N + E) + 8 N + 2 E + 4 E`` = 55 numbers per keyframe for
    N = E = 2. The contact points p_c(t) are not stored: they are the lever
    arms held in J's torque row (see :func:`from_vector`).
    """
    N, E = config.num_fingers, NUM_ENV_CONTACTS
    return [
        ("trajectory", (3,)),
        ("jacobian", (3, 2 * (N + E))),
        ("finger_facets", (N, 2, 2)),
        ("finger_cones", (N, 2, 2)),
        ("env_contacts", (E, 2)),
        ("env_cones", (E, 2, 2)),
    ]


def vector_dim(config: SceneConfig = DEFAULT_CONFIG) -> int:
    """Numbers per keyframe in :func:`to_vector` (55 for N = 2 fingers)."""
    return int(sum(np.prod(shape) for _, shape in vector_layout(config)))


def to_vector(params: MechanicalParameters, config: SceneConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Flatten P(t) to ``(..., T * D)`` with D = :func:`vector_dim`, keyframe-major.

    Keyframe t occupies ``[t * D, (t + 1) * D)``, laid out as in
    :func:`vector_layout`. Leading batch axes are kept.
    """
    blocks = []
    for name, shape in vector_layout(config):
        arr = np.asarray(getattr(params, name), dtype=np.float64)
        lead = arr.shape[: arr.ndim - len(shape)]
        if arr.shape[len(lead) :] != shape:
            raise ValueError(f"{name} has per-keyframe shape {arr.shape[len(lead) :]}, expected {shape}")
        blocks.append(arr.reshape(*lead, -1))
    flat = np.concatenate(blocks, axis=-1)  # (..., T, D)
    return flat.reshape(*flat.shape[:-2], -1)


def from_vector(vector: np.ndarray, config: SceneConfig = DEFAULT_CONFIG) -> MechanicalParameters:
    """Unpack :func:`to_vector`'s ``(..., T * D)`` (or ``(..., T, D)``) back into P(t).

    The finger contact points are read from J's torque row, whose finger
    columns are ``(-d_y, d_x)`` with ``d = p_c - r_xy``; for a predicted
    vector they are the reference contact points the QP linearises about.
    """
    D = vector_dim(config)
    v = np.asarray(vector, dtype=np.float64)
    if v.shape[-1] != D:
        if v.shape[-1] % D:
            raise ValueError(f"vector length {v.shape[-1]} is not a multiple of {D} numbers per keyframe")
        v = v.reshape(*v.shape[:-1], v.shape[-1] // D, D)
    lead = v.shape[:-1]  # (..., T)
    fields: dict[str, np.ndarray] = {}
    start = 0
    for name, shape in vector_layout(config):
        size = int(np.prod(shape))
        fields[name] = v[..., start : start + size].reshape(*lead, *shape)
        start += size
    fields["finger_positions"] = contact_points_from_jacobian(
        fields["jacobian"], fields["trajectory"][..., :2], config.num_fingers
    )
    return MechanicalParameters(**fields)


def contact_points_from_jacobian(jacobian, centroids, num_fingers: int = DEFAULT_CONFIG.num_fingers):
    """Finger contact points ``(..., N, 2)`` held in J's torque row, NumPy or torch.

    The torque row's finger columns are ``(-d_y, d_x)`` with ``d = p_c - r_xy``,
    so ``p_c = r_xy + (row[1], -row[0])``. For decoded parameters these are the
    reference points the QP projects onto the facets.

    Args:
        jacobian: ``(..., 3, 2 (N + E))``.
        centroids: ``(..., 2)``, the object positions r_xy(t) J was formed about.
    """
    torque = jacobian[..., 2, : 2 * num_fingers].reshape(*jacobian.shape[:-2], num_fingers, 2)
    if isinstance(torque, np.ndarray):
        d = np.stack([torque[..., 1], -torque[..., 0]], axis=-1)
        return centroids[..., None, :] + d
    import torch

    return centroids.unsqueeze(-2) + torch.stack([torque[..., 1], -torque[..., 0]], dim=-1)
