"""The QP layer of DLM (paper eq. 6) as a torch module: P(t) and the wrench in, actions out.

:class:`InverseDynamicsQP` checks its inputs, flattens the batch and hands the
keyframes to a backend: ``"torch"`` (:mod:`~policies.dlm.qp.force_qp` on
:mod:`~policies.dlm.qp.kernel`, exact and fast) or ``"cvxpylayers"``
(:mod:`~policies.dlm.qp.cvxpylayers_backend`, the reference). The problem and
its weights are in :mod:`policies.dlm.qp.problem`.

Evaluation (the paper's ``eps = 0``)
------------------------------------
The forces and contact points are what gets executed. ``forward(...,
zero_slack=True)`` returns them unchanged with ``slack`` zeroed, and
:func:`wrench_residual` reports the wrench they leave unmade (equal to the
slack at the optimum).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from dlm_gym.config import DEFAULT_CONFIG
from policies.dlm.qp.cvxpylayers_backend import prepare_cvxpylayers, solve_cvxpylayers
from policies.dlm.qp.force_qp import solve_forces
from policies.dlm.qp.problem import (
    DEFAULT_NUM_ENV_CONTACTS,
    DEFAULT_WEIGHTS,
    QPSolution,
    as_tensor,
    check_weights,
    facet_midpoints,
    project_onto_facets,
    validate_inputs,
)

__all__ = ["BACKENDS", "InverseDynamicsQP", "solve_inverse_dynamics"]

BACKENDS = ("torch", "cvxpylayers")
"""Names accepted by :class:`InverseDynamicsQP`'s ``backend`` argument."""


class InverseDynamicsQP(nn.Module):
    """Batched differentiable inverse dynamics (paper eq. 6); see the module docstring.

    Args:
        backend: ``"torch"`` (structured exact NNLS, fast) or ``"cvxpylayers"`` (reference).
        num_fingers: N.
        num_env_contacts: E ground slots.
        q_lambda, q_e, q_eps, q_ref, q_ray: cost weights (defaults :data:`DEFAULT_WEIGHTS`;
            ``q_eps`` may be a 3-sequence, one weight per wrench row).
        solver: cvxpylayers backend only: ``"SCS"`` (default), ``"Clarabel"`` or ``"ECOS"`` (if installed),
            via diffcp.
        solver_args: cvxpylayers backend only: overrides of the solver settings (defaults are tight
            tolerances and ``mode="dense"`` derivatives; e.g. ``{"eps_abs": 1e-6}`` or ``{"mode": "lsqr"}``).
        max_iter: torch backend only: cap on active-set iterations (a few are typical).

    Call with ``wrench (B, T, 3)``, ``jacobian (B, T, 3, 2(N+E))``,
    ``finger_facets (B, T, N, 2, 2)``, ``finger_cones (B, T, N, 2, 2)``,
    ``env_cones (B, T, E, 2, 2)`` and ``reference_points (B, T, N, 2)`` (default:
    facet midpoints); any leading batch shape in place of ``(B, T)`` works.
    Returns a :class:`QPSolution` in the dtype of ``wrench``.
    """

    def __init__(
        self,
        backend: str = "torch",
        *,
        num_fingers: int = DEFAULT_CONFIG.num_fingers,
        num_env_contacts: int = DEFAULT_NUM_ENV_CONTACTS,
        q_lambda: float = DEFAULT_WEIGHTS["q_lambda"],
        q_e: float = DEFAULT_WEIGHTS["q_e"],
        q_eps: float | Sequence[float] = DEFAULT_WEIGHTS["q_eps"],
        q_ref: float = DEFAULT_WEIGHTS["q_ref"],
        q_ray: float = DEFAULT_WEIGHTS["q_ray"],
        solver: str = "SCS",
        solver_args: dict | None = None,
        max_iter: int = 100,
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown QP backend {backend!r}; choose one of {BACKENDS}")
        if int(num_fingers) < 1 or int(num_env_contacts) < 0:
            raise ValueError(f"need num_fingers >= 1 and num_env_contacts >= 0, got {num_fingers}, {num_env_contacts}")
        if int(max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        self.backend = backend
        self.num_fingers = int(num_fingers)
        self.num_env_contacts = int(num_env_contacts)
        self.weights = check_weights(dict(q_lambda=q_lambda, q_e=q_e, q_eps=q_eps, q_ref=q_ref, q_ray=q_ray))
        self.solver = solver
        self.solver_args = dict(solver_args or {})
        self.max_iter = int(max_iter)
        if backend == "cvxpylayers":
            prepare_cvxpylayers(self.num_fingers, self.num_env_contacts, self.weights, solver, solver_args)

    def extra_repr(self) -> str:
        w = ", ".join(f"{k}={v}" for k, v in self.weights.items())
        return f"backend={self.backend!r}, N={self.num_fingers}, E={self.num_env_contacts}, {w}"

    def forward(
        self,
        wrench: torch.Tensor,
        jacobian: torch.Tensor,
        finger_facets: torch.Tensor,
        finger_cones: torch.Tensor,
        env_cones: torch.Tensor,
        reference_points: torch.Tensor | None = None,
        *,
        zero_slack: bool = False,
    ) -> QPSolution:
        """Solve the QP for every keyframe; see the class docstring for shapes.

        ``zero_slack=True`` is the paper's evaluation setting (``eps = 0``): the
        forces and points are returned as they are (they are what gets
        executed) and ``slack`` is zeros; :func:`wrench_residual` reports what
        the forces leave unmade.
        """
        N, E = self.num_fingers, self.num_env_contacts
        lead, (w, J, facets, fcones, econes, pref) = validate_inputs(
            wrench, jacobian, finger_facets, finger_cones, env_cones, reference_points, N, E
        )
        out_dtype = w.dtype
        if pref is None:
            pref = facet_midpoints(facets)
        K = math.prod(lead) if lead else 1
        flat = lambda x, tail: x.reshape(K, *tail)  # noqa: E731
        w_f, J_f = flat(w, (3,)), flat(J, (3, 2 * (N + E)))
        fac_f, fc_f, ec_f = flat(facets, (N, 2, 2)), flat(fcones, (N, 2, 2)), flat(econes, (E, 2, 2))
        pref_f = flat(pref, (N, 2))
        if K == 0:
            z = lambda *tail: torch.zeros(*lead, *tail, dtype=out_dtype, device=w.device)  # noqa: E731
            return QPSolution(z(N, 2), z(N, 2), z(E, 2), z(3))
        if self.backend == "torch":
            lam_c, lam_e, eps = solve_forces(w_f, J_f, fc_f, ec_f, self.weights, self.max_iter)
            p = project_onto_facets(pref_f.to(torch.float64), fac_f.to(torch.float64))
        else:
            p, lam_c, lam_e, eps = solve_cvxpylayers(
                w_f, J_f, fac_f, fc_f, ec_f, pref_f, self.weights, self.solver, self.solver_args
            )
        if zero_slack:
            eps = torch.zeros_like(eps)
        unflat = lambda x, tail: x.reshape(*lead, *tail).to(out_dtype)  # noqa: E731
        return QPSolution(unflat(p, (N, 2)), unflat(lam_c, (N, 2)), unflat(lam_e, (E, 2)), unflat(eps, (3,)))


def solve_inverse_dynamics(
    wrench: torch.Tensor,
    jacobian: torch.Tensor,
    finger_facets: torch.Tensor,
    finger_cones: torch.Tensor,
    env_cones: torch.Tensor,
    reference_points: torch.Tensor | None = None,
    *,
    backend: str = "torch",
    zero_slack: bool = False,
    **options: Any,
) -> QPSolution:
    """Functional form of :class:`InverseDynamicsQP` (``options`` are its constructor arguments).

    N and E are read from ``finger_cones`` and ``env_cones``. The cvxpylayers
    problem is built once per configuration and cached.
    """
    fc = as_tensor("finger_cones", finger_cones)
    ec = as_tensor("env_cones", env_cones)
    if fc.ndim < 3 or ec.ndim < 3:
        raise ValueError(
            f"finger_cones must have shape (B, T, N, 2, 2) and env_cones (B, T, E, 2, 2); "
            f"got {tuple(fc.shape)} and {tuple(ec.shape)}"
        )
    options.setdefault("num_fingers", fc.shape[-3])
    options.setdefault("num_env_contacts", ec.shape[-3])
    layer = InverseDynamicsQP(backend, **options)
    return layer(wrench, jacobian, finger_facets, fc, ec, reference_points, zero_slack=zero_slack)
