"""Differentiable inverse dynamics: the QP layer of DLM (paper Section 4.2, eq. 6).

Modules, from the problem to the layer:

- :mod:`~policies.dlm.qp.problem`: the problem, its default weights and why,
  input checks, the contact-point projection, random problems;
- :mod:`~policies.dlm.qp.kernel`: the batched NNLS of the forces (no autograd);
- :mod:`~policies.dlm.qp.force_qp`: its autograd function (implicit differentiation);
- :mod:`~policies.dlm.qp.cvxpylayers_backend`: the reference backend through cvxpylayers;
- :mod:`~policies.dlm.qp.layer`: :class:`InverseDynamicsQP`, the ``nn.Module`` that picks a backend.
"""

from policies.dlm.qp.layer import BACKENDS, InverseDynamicsQP, solve_inverse_dynamics
from policies.dlm.qp.problem import (
    DEFAULT_WEIGHTS,
    QPSolution,
    project_onto_facets,
    random_qp_problem,
    reference_points_from_jacobian,
    wrench_residual,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_WEIGHTS",
    "QPSolution",
    "InverseDynamicsQP",
    "solve_inverse_dynamics",
    "wrench_residual",
    "project_onto_facets",
    "reference_points_from_jacobian",
    "random_qp_problem",
]
