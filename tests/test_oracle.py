"""The MIQP oracle: physics of its plans, agreement of the backends, infeasibility."""

from __future__ import annotations

import numpy as np
import pytest

from dlm_gym.config import DEFAULT_CONFIG
from dlm_gym.dynamics import required_wrench
from dlm_gym.mechanics import contact_wrench
from dlm_gym.oracle import (
    OracleInfeasibleError,
    OraclePlan,
    OracleStatus,
    contact_candidates,
    keyframe_data,
    solve_keyframe_qps,
    solve_oracle,
)
from dlm_gym.task import Task, sample_task

SQUARE = np.array([[-0.1, -0.1], [0.1, -0.1], [0.1, 0.1], [-0.1, 0.1]])
LIFT = np.array([0.0, 0.01, 0.03, 0.06, 0.1])


def lift_task(lift: np.ndarray = LIFT) -> Task:
    """The square resting on the ground, then lifted straight up."""
    return Task(SQUARE, np.column_stack([np.zeros(5), 0.1 + lift, np.zeros(5)]))


def cone_coordinates(rays: np.ndarray, force: np.ndarray) -> np.ndarray:
    """Ray multipliers a with rays^T a = force, for (..., 2 rays, 2) rays and (..., 2) forces."""
    return np.linalg.solve(np.swapaxes(rays, -1, -2), force[..., None])[..., 0]


def check_plan_physics(task: Task, plan: OraclePlan, tol: float = 1e-5) -> None:
    """The plan's forces produce the required wrench and respect cones and bounds."""
    assert plan.ok, plan.message
    P = plan.params
    wrench = contact_wrench(P, plan.finger_forces, plan.env_forces)
    np.testing.assert_allclose(wrench, required_wrench(task.polygon, task.trajectory), atol=tol)
    assert np.all(np.abs(plan.finger_forces) <= DEFAULT_CONFIG.force_limit + tol)
    a = cone_coordinates(P.finger_cones, plan.finger_forces)
    assert np.all(a >= -tol), a
    for t in range(task.horizon):
        for e in range(2):
            rays, force = P.env_cones[t, e], plan.env_forces[t, e]
            if not np.any(rays):
                assert np.allclose(force, 0.0, atol=tol)
            elif np.allclose(rays[0], rays[1]):  # sliding: along the single kinetic edge
                along = force @ rays[0]
                assert along >= -tol and np.allclose(force, along * rays[0], atol=tol)
            else:
                assert np.all(cone_coordinates(rays, force) >= -tol)
    np.testing.assert_allclose(plan.finger_positions, P.finger_positions)
    assert np.isclose(plan.cost, plan.force_cost + plan.accel_cost)
    np.testing.assert_allclose(plan.force_cost, (plan.finger_forces**2).sum(), rtol=1e-6)


def test_lift_square_plan():
    task = lift_task()
    plan = solve_oracle(task)
    assert plan.status is OracleStatus.OPTIMAL and plan.gap < 1e-6
    check_plan_physics(task, plan)
    # A finger cannot get under the square lying on the ground, so both squeeze the sides.
    cands = contact_candidates(task)
    assert not cands.valid[cands.facets == 0].any()
    assert cands.valid[cands.facets != 0].all()
    assert sorted(plan.facets.tolist()) == [1, 3]
    # Lifting needs m (g + a) upwards from the fingers once the ground lets go.
    lifted = plan.finger_forces[1:, :, 1].sum(axis=1)
    need = required_wrench(task.polygon, task.trajectory)[1:, 1]
    np.testing.assert_allclose(lifted, need, atol=1e-5)
    assert np.all(np.abs(plan.env_forces[1:]) < 1e-9)


def test_commands_shape_and_units():
    plan = solve_oracle(lift_task())
    cmd = plan.commands()
    assert cmd.shape == (5, DEFAULT_CONFIG.num_fingers, 4) and cmd.dtype == np.float64
    np.testing.assert_allclose(cmd[..., :2], plan.finger_positions)  # metres, world frame
    np.testing.assert_allclose(cmd[..., 2:], plan.finger_forces)  # newtons, on the object
    # The contact points lie on the square's sides (|x| = 0.1 m), within its height.
    np.testing.assert_allclose(np.abs(cmd[..., 0]), 0.1, atol=1e-12)
    assert np.all((cmd[..., 1] > 0.0) & (cmd[..., 1] < 0.4))
    # Squeezing: the finger on the right pushes left and vice versa.
    assert np.all(cmd[..., 2] * np.sign(cmd[..., 0]) < 0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scip_and_enumeration_agree(seed):
    task = sample_task(seed, n_facets=(4, 6))
    fast = solve_oracle(task, candidates_per_facet=2)
    scip = solve_oracle(task, backend="scip", candidates_per_facet=2, rel_gap=1e-6, time_limit=60)
    assert fast.status is OracleStatus.OPTIMAL and scip.status is OracleStatus.OPTIMAL
    np.testing.assert_allclose(scip.cost, fast.cost, rtol=1e-4)
    check_plan_physics(task, fast)
    check_plan_physics(task, scip)


def test_impossible_task_is_infeasible():
    # Lifting 1 kg by 0.6 m in 0.2 s from rest, then stopping dead, needs far more than two fingers' 40 N
    # (and, unlike a 3 m lift, stays in the camera's view, which every Task must).
    task = lift_task(np.array([0.0, 0.15, 0.6, 0.6, 0.6]))
    for plan in (solve_oracle(task), solve_oracle(task, backend="scip", candidates_per_facet=2, time_limit=60)):
        assert plan.status is OracleStatus.INFEASIBLE
        assert not plan.ok and plan.params is None and np.isinf(plan.cost)
        assert np.all(np.isnan(plan.finger_forces))
        with pytest.raises(OracleInfeasibleError, match="infeasible"):
            plan.raise_if_not_ok()
        with pytest.raises(OracleInfeasibleError):
            plan.commands()


def test_keyframe_qps_match_clarabel():
    """The batched interior-point QPs against Clarabel, feasible and infeasible cases alike."""
    cp = pytest.importorskip("cvxpy")
    task = sample_task(4, n_facets=6)
    cands = contact_candidates(task, candidates_per_facet=3)
    data = keyframe_data(task, cands, DEFAULT_CONFIG)
    rng = np.random.default_rng(0)
    valid = np.flatnonzero(cands.valid)
    combos = np.sort(np.stack([rng.choice(valid, 2, replace=False) for _ in range(40)]), axis=1)
    keyframes = rng.integers(0, task.horizon, size=40)
    cost, feasible, _ = solve_keyframe_qps(data, combos, keyframes, DEFAULT_CONFIG, 1.0)
    F = DEFAULT_CONFIG.force_limit
    n_feasible = 0
    for b in range(40):
        t, c = keyframes[b], combos[b]
        a = cp.Variable((2, 2), nonneg=True)
        beta = cp.Variable(data.Ae.shape[2], nonneg=True)
        lam = [data.G[t, c[k]] @ a[k] for k in range(2)]
        torque = sum(data.tq[t, c[k]] @ a[k] for k in range(2))
        wrench = cp.hstack([lam[0][0] + lam[1][0], lam[0][1] + lam[1][1], torque]) + data.Ae[t] @ beta
        cons = [wrench == data.w[t], beta[data.ce[t] > 0] == 0] + [cp.abs(v) <= F for v in lam]
        prob = cp.Problem(cp.Minimize(sum(cp.sum_squares(v) for v in lam)), cons)
        prob.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
        if prob.status == "optimal":
            n_feasible += 1
            assert feasible[b]
            np.testing.assert_allclose(cost[b], prob.value, rtol=1e-6, atol=1e-6)
        else:
            assert prob.status == "infeasible" and not feasible[b]
    assert 0 < n_feasible < 40  # both kinds were exercised


def test_time_limit_and_bad_arguments():
    task = sample_task(5, n_facets=6)
    plan = solve_oracle(task, time_limit=0.0)
    assert plan.status in (OracleStatus.OPTIMAL, OracleStatus.FEASIBLE_WITH_GAP, OracleStatus.TIME_LIMIT)
    if plan.ok:
        check_plan_physics(task, plan)
        assert plan.cost >= solve_oracle(task).cost * (1 - 1e-9)
    with pytest.raises(ValueError):
        solve_oracle(task, backend="gurobi")
    with pytest.raises(ValueError):
        solve_oracle(task, candidates_per_facet=0)
