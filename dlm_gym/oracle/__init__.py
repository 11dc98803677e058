"""The MIQP contact-trajectory oracle (paper eq. 11-12, Appendix A; ``docs/design.md`` section 7).

It labels the data: for a :class:`~dlm_gym.task.Task` it finds globally
optimal finger contacts ``p_c(t)`` and forces ``lambda_c(t)`` that, together
with ground reactions ``lambda_e(t)``, produce the wrench the target motion
needs at every keyframe.

Formulation
-----------
Symbols follow the paper: N fingers c, T keyframes t, object poses r(t),
``M r''(t) + G`` the required wrench (:func:`dlm_gym.dynamics.required_wrench`),
``J(r)^T`` the contact Jacobian and FC the friction cones
(:mod:`dlm_gym.mechanics`).

* **Contact modes.** Each finger sticks at one body-fixed point of one facet
  for the whole horizon. The CoRL generator keeps one facet per finger; we also
  fix the point, because the simulated fingers grip by static friction and
  cannot slide along a facet faithfully. The point is chosen among K
  candidates per facet, at fractions ``(k + 0.5) / K`` along it
  (``candidates_per_facet``). A candidate is excluded when at some keyframe
  the contact point lies below ``finger_radius + CANDIDATE_GROUND_MARGIN`` or
  the finger disc touching it from outside would dip within
  ``CANDIDATE_GROUND_MARGIN`` of the ground (no finger fits under an object
  lying on the ground).
* **Binaries.** ``x_i`` in {0, 1} says whether candidate i is used;
  ``sum_i x_i = N`` and a candidate holds at most one finger. Fingers are
  interchangeable, so instead of one binary per (finger, candidate) we keep
  one per candidate and number the fingers by increasing candidate index
  (finger 1's candidate index < finger 2's): this removes the N! symmetric
  copies of each solution, and two fingers on one point are excluded (a
  second finger there adds nothing a single one cannot apply, and two
  pymunk discs cannot occupy one spot).
* **Physics (eq. 12), per keyframe t.** With the contact points fixed per
  candidate, the torque is linear in the forces, so no McCormick envelope is
  needed::

      sum_i J_i(t) lambda_i(t) + sum_e J_e(t) lambda_e(t) = M r''(t) + G
      lambda_i(t) = Gamma_i(t) a_i(t),   a_i(t) >= 0        (finger cone FC_c)
      lambda_e(t) = Gamma_e(t) b_e(t),   b_e(t) >= 0        (ground cone FC_e)
      -F x_i <= lambda_i(t) <= F x_i   (each component, F = force_limit)
      a_i1(t) + a_i2(t) <= A x_i       (A = sqrt(2 (1 + mu_c^2)) F, a valid big-M)

  The ground cones are those of :func:`dlm_gym.mechanics.env_contacts_for`
  (a single kinetic-friction edge where the ground contact slides).
* **Cost (eq. 11).** ``sum_t sum_c q_lambda ||lambda_c(t)||^2 + q_p ||p_c''(t)||^2``
  with ``p_c''`` the accelerations (:func:`dlm_gym.dynamics.acceleration_operator`)
  of the contact point's world trajectory. Because exactly one candidate is on
  per finger, ``sum_t ||p_c''(t)||^2`` is a constant per candidate and enters
  linearly in the binaries. Ground forces are not penalised. We take
  ``q_lambda = 1 N^-2`` (:data:`Q_LAMBDA`) and ``q_p = 0.1 s^4 m^-2``
  (:data:`Q_P`). Optimal force costs are a few hundred (forces of 5-20 N, 2
  fingers, 5 keyframes). The minimum-norm keyframe accelerations of a motion
  started at rest are large, ``sum_t ||p''||^2`` is 100-1000 m^2 s^-4 per
  contact, but most of it is the translation shared by every candidate; what
  differs between candidates (rotation times lever arm) is about 4 % of the
  cost at q_p = 0.1. Measured on 60 sampled tasks, the acceleration term
  changed the chosen contacts in 2 tasks, for at most 2.9 % more force cost
  than the force-only optimum: it breaks near-ties towards smooth finger
  motion without overriding the force optimum (at q_p = 1 it raised the
  force cost by up to 20 %).

Solvers
-------
Both backends are exact for this MIQP.

* ``backend="enum"`` (default, fastest): enumerate the N-subsets of the
  valid candidates. For fixed contacts the problem separates per keyframe
  into tiny convex QPs (4 finger ray multipliers, up to 4 ground multipliers,
  3 equalities, box bounds). Without ground contact and with N = 2 the 4
  multipliers are one line through a 3-equation system and the QP has a
  closed form (:func:`~dlm_gym.oracle.keyframe_qp.two_fingers_airborne`);
  the others are all solved at once by a vectorised primal-dual
  interior-point method (Mehrotra predictor-corrector,
  :func:`~dlm_gym.oracle.ipm.solve_batched_qp`) written here in NumPy.
  Keyframes are processed one at a time, most constraining first (see
  :mod:`~dlm_gym.oracle.backend_enum`); pairs infeasible at a
  keyframe are dropped, and pairs whose partial cost (their acceleration
  cost plus the force costs of the keyframes solved so far, a valid lower
  bound since every term is nonnegative) exceeds the incumbent are pruned.
  Infeasibility is decided by an elastic (L1-penalised) formulation, with
  Clarabel settling the rare undecided or unconverged cases, so an
  infeasible pair is never mistaken for a feasible one (see
  :func:`solve_keyframe_qps`). The QPs are solved to a relative accuracy of
  about 1e-9.
* ``backend="scip"``: the MIQP above written in PySCIPOpt and solved to a
  relative gap ``rel_gap`` (default 1e-4). The quadratic cost is carried by
  one epigraph variable per candidate and keyframe.

Results come back as an :class:`OraclePlan` whose :meth:`OraclePlan.commands`
are the per-keyframe finger commands ``(x, y, f_x, f_y)`` the environment
takes.

Modules
-------
* :mod:`~dlm_gym.oracle.types`: :class:`OracleStatus`, :class:`OraclePlan`,
  :class:`OracleInfeasibleError`.
* :mod:`~dlm_gym.oracle.candidates`: the K candidates per facet
  (:func:`contact_candidates`).
* :mod:`~dlm_gym.oracle.ipm`: the batched interior-point kernel; generic, it
  knows nothing of contacts.
* :mod:`~dlm_gym.oracle.keyframe_qp`: the per-keyframe QPs, their closed form,
  the elastic feasibility decision and the Clarabel fallback
  (:func:`solve_keyframe_qps`).
* :mod:`~dlm_gym.oracle.backend_enum`, :mod:`~dlm_gym.oracle.backend_scip`: the
  two backends.
* :mod:`~dlm_gym.oracle.solve`: :func:`solve_oracle` and the cost weights.

``examples/oracle_study.py`` compares the backends on sampled tasks;
``examples/qp_solver_benchmark.py`` compares the keyframe-QP solver with
Clarabel and proxsuite on the QPs the oracle actually solves.
"""

from dlm_gym.oracle.candidates import (
    CANDIDATE_GROUND_MARGIN,
    DEFAULT_CANDIDATES_PER_FACET,
    ContactCandidates,
    contact_candidates,
)
from dlm_gym.oracle.keyframe_qp import (
    FEASIBILITY_TOLERANCE,
    KeyframeData,
    KeyframeQP,
    dense_keyframe_qp,
    keyframe_data,
    solve_keyframe_qps,
)
from dlm_gym.oracle.solve import BACKENDS, Q_LAMBDA, Q_P, Backend, plan_combos, solve_oracle
from dlm_gym.oracle.types import OracleInfeasibleError, OraclePlan, OracleStatus

__all__ = [
    "BACKENDS",
    "CANDIDATE_GROUND_MARGIN",
    "DEFAULT_CANDIDATES_PER_FACET",
    "FEASIBILITY_TOLERANCE",
    "Q_LAMBDA",
    "Q_P",
    "Backend",
    "ContactCandidates",
    "KeyframeData",
    "KeyframeQP",
    "OracleInfeasibleError",
    "OraclePlan",
    "OracleStatus",
    "contact_candidates",
    "dense_keyframe_qp",
    "keyframe_data",
    "plan_combos",
    "solve_keyframe_qps",
    "solve_oracle",
]
