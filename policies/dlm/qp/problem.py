"""The inverse-dynamics QP of DLM (paper Section 4.2, eq. 6): the problem, its weights and shared pieces.

The QP layer (:mod:`policies.dlm.qp.layer`) returns, from the mechanical
parameters P(t) of a task and the wrench the contacts must supply, the finger
contact points ``p_c(t)`` and forces ``lambda_c(t)``, the ground forces
``lambda_e(t)`` and the dynamics slack ``eps(t)``. This module states the
problem and holds what every backend shares: the solution type, input checks,
the contact-point projection, and random problems for tests and benchmarks.

Problem
-------
With ``Lambda(t) = [lambda_1, ..., lambda_N, lambda_e1, ..., lambda_eE]`` (world
2-vectors acting on the object, the convention of :mod:`dlm_gym.mechanics`)::

    min   sum_t  q_lambda * sum_c ||lambda_c(t)||^2  +  q_e * sum_e ||lambda_e(t)||^2
                 + ||eps(t)||^2_{Q_eps}                 (Q_eps = diag(q_eps), per wrench row)
                 + q_ref * sum_c ||p_c(t) - p_ref_c(t)||^2
                 + q_ray * ||a(t)||^2
    s.t.  w(t) = J(t) Lambda(t) + eps(t)                                  (eq. 6, w = M r'' + G)
          lambda_k(t) = a_k1 gamma_k1 + a_k2 gamma_k2,  a >= 0            (lambda_c in FC_c, lambda_e in FC_e)
          p_c(t) = phi_c1 + s_c (phi_c2 - phi_c1),  0 <= s_c <= 1         (p_c in F_c)

* ``w(t)`` (``wrench``) is ``M r''(t) + G``, computed by the caller
  (:func:`dlm_gym.dynamics.required_wrench`); ``J(t)`` is the paper's
  ``J(r)^T`` of shape ``(3, 2 (N + E))``, ``wrench = J @ Lambda``.
* ``gamma`` are the two unit rays of each cone and ``a`` their nonnegative
  multipliers (2 per contact, ``2 (N + E)`` = 8 in all). An empty ground slot
  has zero rays and so carries no force.
* The paper's finger-acceleration cost ``||p_c''||^2`` is replaced by the
  distance to reference contact points ``p_ref`` (e.g. the lever arms held in
  J's torque row, see :func:`reference_points_from_jacobian`): since J is
  given (the paper's linearisation), the contact points do not enter the
  dynamics constraint.

Structure
---------
Because J is given, the problem separates: per keyframe, the forces are a
nonnegative least squares in the 8 ray multipliers (``eps`` eliminated)::

    min_{a >= 0}  a^T H a - 2 c^T a,   H = (JG)^T Q_eps (JG) + G^T W G + q_ray I,   c = (JG)^T Q_eps w

with ``G`` the block-diagonal ray matrix (``Lambda = G a``) and ``W`` the
force weights; and each contact point is the projection of its reference point
onto its facet segment, ``s_c = clamp(<p_ref - phi_1, d> / |d|^2, 0, 1)``.

Default weights and why
-----------------------
* ``q_lambda = 1``: finger effort, the quantity the QP minimises.
* ``q_e = 0.01``: ground reactions are passive (free to the robot), so they are
  cheap; positive so the problem is strictly convex in ``Lambda`` (unique
  forces, well-defined gradients). When ground and fingers could share a load
  the fingers take about ``q_e / (q_lambda + q_e)`` = 1 % of it.
* ``q_eps = 1e4``: the slack must cost far more than the forces. With the
  released code's weights (slack 0.01 vs force 1) the forces collapse (docs/design.md:
  f = 0; with a squared slack they are ~1 % of the wrench, tested). For a feasible
  wrench the residual left at the optimum is about ``q_lambda / q_eps`` times the
  wrench times (|Lambda| / |w|)^2: 2e-4 of the weight for a box held by friction
  (2 mN on 1 kg, a 0.2 mm drift over the horizon), small enough to execute the
  forces as they are (the paper sets ``eps = 0`` after training). ``q_eps`` may
  be a 3-sequence to weigh the torque row (N m) apart from the force rows.
* ``q_ref = 1``: any positive value gives the same contact points (the
  projection); it only scales the objective.
* ``q_ray = 1e-4``: a small ridge on the ray multipliers. It makes them unique
  (so the gradients with respect to the rays are well-defined) when a cone is
  degenerate: an empty ground slot (zero rays) or a sliding contact (two equal
  rays). It biases the finger-force cost by ~1e-4 and the ground-force cost by
  ~1 %. Smaller is not better: near a degenerate cone the forces' sensitivity
  to the rays grows like ``1 / q_ray`` (with 1e-6, cvxpylayers' ray gradients
  on sliding contacts were off by 0.08 against 3e-5 with 1e-4), and rays shorter than
  about ``sqrt(q_ray / q_e)`` = 0.1 are priced out (the rays are unit).

At exactly zero rays (an empty slot) the ground force is zero and its gradient
with respect to those rays is zero; the map is a ridge-smoothed kink there
(the force grows like ``|ray|^2 / q_ray``), so finite differences across it
are meaningless.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch

from dlm_gym.config import DEFAULT_CONFIG
from dlm_gym.mechanics import contact_jacobian, contact_points_from_jacobian

__all__ = [
    "DEFAULT_WEIGHTS",
    "DEFAULT_NUM_ENV_CONTACTS",
    "QPSolution",
    "check_weights",
    "q_eps_vector",
    "validate_inputs",
    "wrench_residual",
    "project_onto_facets",
    "reference_points_from_jacobian",
    "facet_midpoints",
    "as_tensor",
    "random_qp_problem",
]


DEFAULT_WEIGHTS: dict[str, float] = {
    "q_lambda": 1.0,
    "q_e": 0.01,
    "q_eps": 1e4,
    "q_ref": 1.0,
    "q_ray": 1e-4,
}
"""Default cost weights (see the module docstring for the reasoning)."""

DEFAULT_NUM_ENV_CONTACTS = 2
"""E, ground contact slots (equals ``dlm_gym.mechanics.NUM_ENV_CONTACTS``)."""


class QPSolution(NamedTuple):
    """Solution of the inverse-dynamics QP, batch axes first (``(B, T, ...)``)."""

    finger_positions: torch.Tensor
    """``(B, T, N, 2)`` contact points p_c(t) on the facets."""
    finger_forces: torch.Tensor
    """``(B, T, N, 2)`` finger forces lambda_c(t) on the object (in FC_c(t))."""
    env_forces: torch.Tensor
    """``(B, T, E, 2)`` ground forces lambda_e(t) on the object (in FC_e(t))."""
    slack: torch.Tensor
    """``(B, T, 3)`` eps(t) = wrench - J Lambda (zeros if the forward was asked for ``zero_slack``)."""


# --------------------------------------------------------------------------- validation


def check_weights(weights: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(DEFAULT_WEIGHTS)
    unknown = set(weights) - set(out)
    if unknown:
        raise TypeError(f"unknown QP weight(s) {sorted(unknown)}; known: {sorted(out)}")
    out.update({k: v for k, v in weights.items() if v is not None})
    for name, value in out.items():
        if name == "q_eps" and not np.isscalar(value):
            arr = np.asarray(value, dtype=np.float64).reshape(-1)
            if arr.shape != (3,):
                raise ValueError(f"q_eps must be a float or a 3-sequence (per wrench row), got shape {arr.shape}")
            if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
                raise ValueError(f"q_eps entries must be finite and > 0, got {arr.tolist()}")
            out[name] = tuple(float(x) for x in arr)
            continue
        v = float(value)
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"QP weight {name} must be finite and > 0, got {value!r}")
        out[name] = v
    return out


def q_eps_vector(q_eps) -> tuple[float, float, float]:
    if isinstance(q_eps, tuple):
        return q_eps
    return (float(q_eps),) * 3


def as_tensor(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a tensor or array of numbers") from exc
    if not (x.is_floating_point()):
        x = x.to(torch.get_default_dtype())
    return x


def validate_inputs(
    wrench,
    jacobian,
    finger_facets,
    finger_cones,
    env_cones,
    reference_points,
    num_fingers: int,
    num_env: int,
) -> tuple[tuple[int, ...], list[torch.Tensor]]:
    """Check shapes and values; return the leading batch shape and the tensors."""
    N, E = num_fingers, num_env
    C2 = 2 * (N + E)
    wrench = as_tensor("wrench", wrench)
    if wrench.ndim < 1 or wrench.shape[-1] != 3:
        raise ValueError(f"wrench must have shape (B, T, 3), got {tuple(wrench.shape)}")
    lead = tuple(wrench.shape[:-1])
    specs = [
        ("jacobian", jacobian, (3, C2)),
        ("finger_facets", finger_facets, (N, 2, 2)),
        ("finger_cones", finger_cones, (N, 2, 2)),
        ("env_cones", env_cones, (E, 2, 2)),
        ("reference_points", reference_points, (N, 2)),
    ]
    out = [wrench]
    for name, x, tail in specs:
        if x is None:
            out.append(None)
            continue
        x = as_tensor(name, x)
        expected = lead + tail
        if tuple(x.shape) != expected:
            exp_s = "(" + ", ".join(map(str, expected)) + ")"
            raise ValueError(
                f"{name} must have shape {exp_s} = (B, T, {', '.join(map(str, tail))}) for wrench of shape "
                f"{tuple(wrench.shape)} with N = {N} fingers and E = {E} ground slots; got {tuple(x.shape)}"
            )
        out.append(x)
    for name, x in zip(("wrench", "jacobian", "finger_facets", "finger_cones", "env_cones", "reference_points"), out):
        if x is not None and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf); the QP needs finite inputs")
    return lead, out


# --------------------------------------------------------------------------- shared pieces


def wrench_residual(
    wrench: torch.Tensor, jacobian: torch.Tensor, finger_forces: torch.Tensor, env_forces: torch.Tensor
) -> torch.Tensor:
    """``wrench - J Lambda``, shape ``(..., 3)``: the dynamics residual of executing the forces as they are.

    At the optimum it equals the slack ``eps``. The paper sets ``eps = 0`` at
    evaluation and executes the forces; this is the wrench they leave unmade.
    """
    lam = torch.cat([finger_forces, env_forces], dim=-2)
    lam = lam.reshape(*lam.shape[:-2], -1)
    return wrench - torch.einsum("...ij,...j->...i", jacobian, lam)


def project_onto_facets(reference_points: torch.Tensor, finger_facets: torch.Tensor) -> torch.Tensor:
    """Closest points ``(..., N, 2)`` on the facet segments ``(..., N, 2, 2)`` to the reference points.

    ``p = phi_1 + clamp(s, 0, 1) (phi_2 - phi_1)`` with ``s`` the unconstrained
    minimiser; differentiable (zero gradient in ``s`` where the clamp is active).
    A degenerate facet (``phi_1 == phi_2``) yields ``phi_1``.
    """
    phi1, phi2 = finger_facets[..., 0, :], finger_facets[..., 1, :]
    d = phi2 - phi1
    dd = (d * d).sum(-1)
    ok = dd > 1e-300
    s = ((reference_points - phi1) * d).sum(-1) / torch.where(ok, dd, torch.ones_like(dd))
    s = torch.where(ok, s.clamp(0.0, 1.0), torch.zeros_like(s))
    return phi1 + s.unsqueeze(-1) * d


def reference_points_from_jacobian(
    jacobian: torch.Tensor, centroids: torch.Tensor, num_fingers: int = DEFAULT_CONFIG.num_fingers
) -> torch.Tensor:
    """Finger reference points ``(..., N, 2)`` read from J's torque row; see
    :func:`dlm_gym.mechanics.contact_points_from_jacobian`."""
    return contact_points_from_jacobian(jacobian, centroids, num_fingers)


def facet_midpoints(finger_facets: torch.Tensor) -> torch.Tensor:
    return finger_facets.mean(dim=-2)


# --------------------------------------------------------------------------- random problems (tests, benchmarks)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def random_qp_problem(
    batch: int,
    horizon: int = DEFAULT_CONFIG.horizon,
    *,
    num_fingers: int = DEFAULT_CONFIG.num_fingers,
    num_env_contacts: int = DEFAULT_NUM_ENV_CONTACTS,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    empty_env_prob: float = 0.25,
    sliding_env_prob: float = 0.25,
    mass: float = DEFAULT_CONFIG.mass,
    gravity: float = DEFAULT_CONFIG.gravity,
) -> dict[str, torch.Tensor]:
    """Random, physically shaped QP inputs (a mix of feasible and infeasible wrenches).

    Centroid at the origin; each finger sits on a random facet (segment 2-20 cm
    long, 5-20 cm from the centroid) with its cone of random friction
    (mu in [0.2, 0.9]) pointing into the object; ground slots lie at y = -0.1 with
    sticking, sliding (both rays equal) or empty (zero rays) cones; J is built
    from the reference points as in :func:`dlm_gym.mechanics.contact_jacobian`;
    the wrench is ``m (a + g e_y)`` plus a random torque. Returns the keyword
    arguments of :class:`InverseDynamicsQP`'s forward.
    """
    rng = np.random.default_rng(seed)
    B, T, N, E = batch, horizon, num_fingers, num_env_contacts
    shape = (B, T, N)
    ang = rng.uniform(0, 2 * np.pi, shape)
    radial = np.stack([np.cos(ang), np.sin(ang)], -1)
    centre = radial * rng.uniform(0.05, 0.2, shape)[..., None]
    tang_ang = ang + np.pi / 2 + rng.uniform(-0.6, 0.6, shape)
    t = np.stack([np.cos(tang_ang), np.sin(tang_ang)], -1)
    n_out = np.stack([t[..., 1], -t[..., 0]], -1)
    flip = (n_out * centre).sum(-1) < 0  # outward normal points away from the centroid
    t[flip] *= -1
    n_out[flip] *= -1
    half = rng.uniform(0.01, 0.1, shape)[..., None]
    facets = np.stack([centre - half * t, centre + half * t], axis=-2)
    mu = rng.uniform(0.2, 0.9, shape)[..., None]
    fcones = np.stack([_unit(-n_out - mu * t), _unit(-n_out + mu * t)], axis=-2)
    pref = centre + t * half * rng.uniform(-1.4, 1.4, shape)[..., None] + 0.01 * rng.normal(size=shape + (2,))

    mu_e = rng.uniform(0.2, 0.9, (B, T, E))[..., None]
    one = np.ones_like(mu_e)
    econes = np.stack([_unit(np.concatenate([-mu_e, one], -1)), _unit(np.concatenate([mu_e, one], -1))], -2)
    u = rng.uniform(size=(B, T, E))
    sliding = u < sliding_env_prob
    econes[sliding] = econes[sliding][:, rng.integers(0, 2), :][:, None, :].repeat(2, axis=1)
    empty = (u >= sliding_env_prob) & (u < sliding_env_prob + empty_env_prob)
    econes[empty] = 0.0
    epoints = np.stack([rng.uniform(-0.15, 0.15, (B, T, E)), np.full((B, T, E), -0.1)], -1)
    epoints[empty] = 0.0

    points = np.concatenate([pref, epoints], axis=2)  # lever arms about the centroid (the centroid at 0)
    J = np.stack([contact_jacobian(np.zeros((T, 3)), p) for p in points])
    acc = rng.normal(scale=3.0, size=(B, T, 3))
    acc[..., 2] *= 10.0
    inertia = mass * 0.2**2 / 6.0
    wrench = acc * np.array([mass, mass, inertia])
    wrench[..., 1] += mass * gravity
    as_t = lambda x: torch.as_tensor(x, dtype=dtype)  # noqa: E731
    return {
        "wrench": as_t(wrench),
        "jacobian": as_t(J),
        "finger_facets": as_t(facets),
        "finger_cones": as_t(fcones),
        "env_cones": as_t(econes),
        "reference_points": as_t(pref),
    }
