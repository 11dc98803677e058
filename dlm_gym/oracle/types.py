"""What the oracle hands back: its status, its plan and its error.

:class:`BackendChoice` is the internal hand-over from a backend
(:mod:`~dlm_gym.oracle.backend_enum`, :mod:`~dlm_gym.oracle.backend_scip`) to
:func:`~dlm_gym.oracle.solve_oracle`, which turns it into an :class:`OraclePlan`.
"""

from __future__ import annotations

import dataclasses
import enum

import numpy as np

from dlm_gym.mechanics import MechanicalParameters

__all__ = ["BackendChoice", "OracleInfeasibleError", "OraclePlan", "OracleStatus"]


class OracleStatus(enum.Enum):
    """Outcome of an oracle solve."""

    OPTIMAL = "optimal"
    """Globally optimal within the requested relative gap."""
    FEASIBLE_WITH_GAP = "feasible_with_gap"
    """A feasible plan, but the time limit stopped the proof of optimality."""
    INFEASIBLE = "infeasible"
    """No plan with these contact candidates and force limits exists."""
    TIME_LIMIT = "time_limit"
    """The time limit passed before any feasible plan was found."""


class OracleInfeasibleError(RuntimeError):
    """The oracle found no plan (infeasible task or time limit); see the message."""


@dataclasses.dataclass
class OraclePlan:
    """The oracle's answer for one task.

    Attributes:
        status: see :class:`OracleStatus`.
        cost: value of eq. 11 (``inf`` without a plan).
        gap: relative optimality gap (0 when proven optimal within solver tolerance; ``inf`` without a plan).
        solve_time_s: wall time of the solve, in seconds.
        facets: ``(N,)`` facet index per finger (-1 without a plan).
        fractions: ``(N,)`` position along the facet (vertex f -> f + 1) per finger.
        finger_positions: ``(T, N, 2)`` world contact points p_c(t) in metres.
        finger_forces: ``(T, N, 2)`` world forces lambda_c(t) **on the object**, in newtons.
        env_forces: ``(T, E, 2)`` ground forces lambda_e(t) on the object, per slot.
        params: the mechanical parameters P(t) of the chosen contacts (None without a plan).
        backend: the solver used.
        force_cost: the ``q_lambda ||lambda||^2`` part of ``cost``.
        accel_cost: the ``q_p ||p''||^2`` part of ``cost``.
        message: a human-readable note on the outcome.
    """

    status: OracleStatus
    cost: float
    gap: float
    solve_time_s: float
    facets: np.ndarray
    fractions: np.ndarray
    finger_positions: np.ndarray
    finger_forces: np.ndarray
    env_forces: np.ndarray
    params: MechanicalParameters | None
    backend: str = ""
    force_cost: float = float("inf")
    accel_cost: float = float("inf")
    message: str = ""

    @property
    def ok(self) -> bool:
        """True when the plan is usable (optimal, or feasible with a gap)."""
        return self.status in (OracleStatus.OPTIMAL, OracleStatus.FEASIBLE_WITH_GAP)

    def raise_if_not_ok(self) -> OraclePlan:
        """Return the plan, or raise :class:`OracleInfeasibleError` if it has no usable solution."""
        if not self.ok:
            raise OracleInfeasibleError(
                f"oracle ({self.backend}) returned {self.status.value} after {self.solve_time_s:.2f} s: {self.message}"
            )
        return self

    def commands(self) -> np.ndarray:
        """Per-keyframe finger commands ``(T, N, 4)``: ``(x, y, f_x, f_y)`` in metres and newtons.

        At keyframe t finger c sits at the contact point p_c(t) and pushes
        with lambda_c(t) (world frame, force on the object); this is exactly
        what the environment takes (see :mod:`dlm_gym.actions`).

        Raises:
            OracleInfeasibleError: if the plan is not :attr:`ok`.
        """
        self.raise_if_not_ok()
        return np.concatenate([self.finger_positions, self.finger_forces], axis=-1)


@dataclasses.dataclass
class BackendChoice:
    """A backend's answer before it becomes an :class:`OraclePlan`.

    The backends decide only the contacts and forces; the candidate geometry
    (positions, mechanical parameters, acceleration cost) is filled in once,
    by :func:`~dlm_gym.oracle.solve_oracle`, so both backends report it alike.

    Attributes:
        status: see :class:`OracleStatus`.
        combo: ``(N,)`` candidate indices, increasing (None without a plan).
        finger_forces: ``(T, N, 2)`` lambda_c(t) on the object.
        env_forces: ``(T, E, 2)`` lambda_e(t) on the object.
        force_cost: the ``q_lambda ||lambda||^2`` part of eq. 11.
        gap: relative optimality gap.
        message: a human-readable note on the outcome.
    """

    status: OracleStatus
    combo: np.ndarray | None = None
    finger_forces: np.ndarray | None = None
    env_forces: np.ndarray | None = None
    force_cost: float = float("inf")
    gap: float = float("inf")
    message: str = ""
