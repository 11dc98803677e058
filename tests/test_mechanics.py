"""Hand-computed checks of the mechanical parameters P(t) (dlm_gym.mechanics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlm_gym.config import DEFAULT_CONFIG
from dlm_gym.mechanics import (
    NUM_ENV_CONTACTS,
    contact_wrench,
    env_contacts_for,
    facet_frames,
    finger_geometry,
    from_vector,
    mechanical_parameters,
    to_vector,
    vector_dim,
    vector_layout,
)
from dlm_gym.task import Task, sample_task

SQUARE = np.array([[-0.1, -0.1], [0.1, -0.1], [0.1, 0.1], [-0.1, 0.1]])
# Centroid at the origin: (-0.1 + 0.2 - 0.1) / 3 = 0 in both coordinates.
TRIANGLE = np.array([[-0.1, -0.1], [0.2, -0.1], [-0.1, 0.2]])


def resting_square(T: int = 5) -> Task:
    return Task(SQUARE, np.tile([0.0, 0.1, 0.0], (T, 1)))


def test_square_on_ground_contacts_and_cones():
    task = resting_square()
    P = mechanical_parameters(task, facets=[1, 3], fractions=[0.5, 0.25])
    T = task.horizon
    assert P.env_contacts.shape == (T, NUM_ENV_CONTACTS, 2)
    # Bottom corners, leftmost first.
    np.testing.assert_allclose(P.env_contacts[0], [[-0.1, 0.0], [0.1, 0.0]], atol=1e-12)
    # Sticking ground cones: normalize((-+0.5, 1)) = (-+0.4472, 0.8944).
    s = 1.0 / math.sqrt(1.25)
    expected = np.array([[-0.5 * s, s], [0.5 * s, s]])
    for e in range(2):
        np.testing.assert_allclose(P.env_cones[:, e], np.broadcast_to(expected, (T, 2, 2)), atol=1e-12)
    # Finger 1 at the middle of the right side, finger 2 a quarter of the way down the left side.
    np.testing.assert_allclose(P.finger_positions[0], [[0.1, 0.1], [-0.1, 0.15]], atol=1e-12)
    np.testing.assert_allclose(P.finger_facets[0, 0], [[0.1, 0.0], [0.1, 0.2]], atol=1e-12)
    np.testing.assert_allclose(P.finger_facets[0, 1], [[-0.1, 0.2], [-0.1, 0.0]], atol=1e-12)
    # Right facet: n_out = (1, 0), tangent (0, 1): rays normalize((-1, -+0.6)).
    c = 1.0 / math.sqrt(1.36)
    np.testing.assert_allclose(P.finger_cones[0, 0], [[-c, -0.6 * c], [-c, 0.6 * c]], atol=1e-12)
    # Left facet: n_out = (-1, 0), tangent (0, -1): rays normalize((1, +-0.6)).
    np.testing.assert_allclose(P.finger_cones[0, 1], [[c, 0.6 * c], [c, -0.6 * c]], atol=1e-12)


def test_square_jacobian_rows():
    P = mechanical_parameters(resting_square(), facets=[1, 3], fractions=[0.5, 0.25])
    J = P.jacobian[0]
    assert P.jacobian.shape == (5, 3, 2 * (DEFAULT_CONFIG.num_fingers + NUM_ENV_CONTACTS))
    np.testing.assert_allclose(J[0], [1, 0, 1, 0, 1, 0, 1, 0])
    np.testing.assert_allclose(J[1], [0, 1, 0, 1, 0, 1, 0, 1])
    # Torque row: (-d_y, d_x) per contact, lever arms from the centroid (0, 0.1):
    # finger 1 d = (0.1, 0), finger 2 d = (-0.1, 0.05), ground d = (-0.1, -0.1) and (0.1, -0.1).
    np.testing.assert_allclose(J[2], [0.0, 0.1, -0.05, -0.1, 0.1, -0.1, 0.1, 0.1], atol=1e-12)


def test_jacobian_reproduces_hand_wrench():
    P = mechanical_parameters(resting_square(), facets=[1, 3], fractions=[0.5, 0.25])
    fingers = np.array([[-3.0, 2.0], [3.0, 1.0]])
    ground = np.array([[0.5, 4.0], [-0.5, 3.0]])
    # torques: 0.1*2 - 0*(-3) = 0.2;  -0.1*1 - 0.05*3 = -0.25;
    #          -0.1*4 - (-0.1)(0.5) = -0.35;  0.1*3 - (-0.1)(-0.5) = 0.25
    expected = np.array([0.0, 10.0, 0.2 - 0.25 - 0.35 + 0.25])
    lam = np.concatenate([fingers, ground]).reshape(-1)
    np.testing.assert_allclose(P.jacobian[0] @ lam, expected, atol=1e-12)
    T = P.horizon
    w = contact_wrench(P, np.broadcast_to(fingers, (T, 2, 2)), np.broadcast_to(ground, (T, 2, 2)))
    np.testing.assert_allclose(w, np.broadcast_to(expected, (T, 3)), atol=1e-12)


def test_rotated_triangle_facet_and_cone():
    task = Task(TRIANGLE, np.tile([0.3, 0.5, np.pi / 2], (5, 1)))
    np.testing.assert_allclose(task.polygon, TRIANGLE, atol=1e-12)  # already centred and CCW
    P = mechanical_parameters(task, facets=[1, 0], fractions=[0.5, 0.0])
    # Facet 1 runs (0.2, -0.1) -> (-0.1, 0.2); rotating by 90 degrees maps (x, y) to (-y, x).
    np.testing.assert_allclose(P.finger_facets[0, 0], [[0.4, 0.7], [0.1, 0.4]], atol=1e-12)
    np.testing.assert_allclose(P.finger_positions[0, 0], [0.25, 0.55], atol=1e-12)
    # Body frame: t = (-1, 1)/sqrt2, n_out = (1, 1)/sqrt2; rays normalize(-n -+ 0.6 t)
    # = normalize((-0.4, -1.6)) and normalize((-1.6, -0.4)); rotated: (0.9701, -0.2425), (0.2425, -0.9701).
    k = 1.0 / math.sqrt(0.4**2 + 1.6**2)
    np.testing.assert_allclose(P.finger_cones[0, 0], [[1.6 * k, -0.4 * k], [0.4 * k, -1.6 * k]], atol=1e-12)
    # Rays make the friction angle with the inward normal (1, -1)/sqrt2 and point into the object.
    inward = np.array([1.0, -1.0]) / math.sqrt(2)
    np.testing.assert_allclose(P.finger_cones[0, 0] @ inward, [1 / math.sqrt(1.36)] * 2, atol=1e-12)
    # Fraction 0 of facet 0 is its first vertex (-0.1, -0.1) -> (0.1, -0.1) + (0.3, 0.5).
    np.testing.assert_allclose(P.finger_positions[0, 1], [0.4, 0.4], atol=1e-12)
    # Lifted: no ground contact, empty slots at the centroid with zero rays.
    np.testing.assert_allclose(P.env_cones, 0.0)
    np.testing.assert_allclose(P.env_contacts, np.broadcast_to([0.3, 0.5], (5, 2, 2)))
    np.testing.assert_allclose(P.jacobian[:, 2, 4:], 0.0)


def test_facet_frames_outward():
    tangents, normals = facet_frames(SQUARE)
    np.testing.assert_allclose(normals, [[0, -1], [1, 0], [0, 1], [-1, 0]], atol=1e-12)
    np.testing.assert_allclose(tangents, [[1, 0], [0, 1], [-1, 0], [0, -1]], atol=1e-12)


def test_single_ground_vertex_fills_one_slot():
    # Tilted so that exactly one vertex is lowest, and that vertex put on the ground.
    theta = 0.3
    R = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    low = (TRIANGLE @ R.T)[:, 1].min()
    task = Task(TRIANGLE, np.tile([0.0, -low, theta], (5, 1)))
    env = env_contacts_for(task)
    assert env.active[:, 0].all() and not env.active[:, 1].any()
    np.testing.assert_allclose(env.points[:, 0, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(env.cones[:, 1], 0.0)
    assert np.all(np.linalg.norm(env.cones[:, 0], axis=-1) > 0.99)


def test_sliding_ground_contact_uses_kinetic_edge():
    # The square slides 20 cm to the right along the ground.
    T = 5
    traj = np.stack([np.linspace(0.0, 0.2, T), np.full(T, 0.1), np.zeros(T)], axis=1)
    task = Task(SQUARE, traj)
    env = env_contacts_for(task)
    assert not env.sliding[0].any()  # starts at rest: static cone
    s = 1.0 / math.sqrt(1.25)
    np.testing.assert_allclose(env.cones[0, 0], [[-0.5 * s, s], [0.5 * s, s]], atol=1e-12)
    assert env.sliding[1:].all()
    # Sliding right (+x): friction pushes left, both rays = normalize((-0.5, 1)).
    np.testing.assert_allclose(env.cones[1:], np.broadcast_to([-0.5 * s, s], (T - 1, 2, 2, 2)), atol=1e-12)
    # And sliding left gives the mirrored edge.
    left = Task(SQUARE, traj * [-1, 1, 1])
    np.testing.assert_allclose(env_contacts_for(left).cones[-1], [[[0.5 * s, s]] * 2] * 2, atol=1e-12)


def test_sliding_speed_includes_rotation():
    # Rolling about the bottom-left corner keeps that corner fixed but moves the other.
    T = 5
    theta = np.linspace(0.0, 0.3, T)
    pivot = np.array([-0.1, -0.1])
    centre = -np.einsum(
        "tij,j->ti",
        np.stack([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]).transpose(2, 0, 1),
        pivot,
    )
    task = Task(SQUARE, np.column_stack([centre, theta]))
    env = env_contacts_for(task)
    # After the start, only the pivot corner (at the origin) touches the ground, and it does not slide.
    assert env.active[1:, 0].all() and not env.active[1:, 1].any()
    np.testing.assert_allclose(env.points[1:, 0], 0.0, atol=1e-9)
    assert not env.sliding.any()


def test_vector_round_trip_and_layout():
    task = sample_task(3)
    P = mechanical_parameters(task, facets=[0, 2], fractions=[0.3, 0.8])
    D = vector_dim()
    assert D == 55 == sum(int(np.prod(s)) for _, s in vector_layout())
    v = to_vector(P)
    assert v.shape == (task.horizon * D,)
    np.testing.assert_allclose(v[:3], task.trajectory[0])
    Q = from_vector(v)
    for name, value in P.as_dict().items():
        np.testing.assert_allclose(getattr(Q, name), value, atol=1e-12, err_msg=name)
    # Batched vectors keep their leading axes.
    batch = np.stack([v, 2 * v])
    Qb = from_vector(batch)
    assert Qb.jacobian.shape == (2, task.horizon, 3, 8)
    np.testing.assert_allclose(to_vector(Qb), batch)


def test_geometry_validation():
    task = resting_square()
    with pytest.raises(ValueError):
        finger_geometry(task, [0, 4], [0.5, 0.5])
    with pytest.raises(ValueError):
        finger_geometry(task, [0, 1], [0.5, 1.5])
    with pytest.raises(ValueError):
        mechanical_parameters(task, [0], [0.5])


def test_ground_cannot_launch_or_catch_the_object():
    """A ground contact is usable only while the object rests on the ground at the neighbouring keyframes."""
    heights = [0.1, 0.1, 0.1, 0.15, 0.2]  # rests for keyframes 0-2, lifts off between 2 and 3
    env = env_contacts_for(Task(SQUARE, np.array([[0.0, y, 0.0] for y in heights])))
    assert env.active[:, 0].tolist() == [True, True, False, False, False]
    assert np.all(env.cones[2] == 0.0)  # keyframe 2's force would push during the lift-off interval
    landing = env_contacts_for(Task(SQUARE, np.array([[0.0, y, 0.0] for y in heights[::-1]])))
    assert landing.active[:, 0].tolist() == [False, False, False, True, True]
