"""The MIQP backend: eq. 11-12 written in PySCIPOpt and solved by SCIP to a relative gap.

Slower than the enumeration (:mod:`dlm_gym.oracle.backend_enum`) by one to
two orders of magnitude; it is kept as an independent check of it (the tests
compare the two). One binary ``x_i`` per candidate, ``sum_i x_i = N``, and
per keyframe the finger ray multipliers, bounded forces and ground
multipliers of the package docstring with the big-M
``A = sqrt(2 (1 + mu_c^2)) F`` on ``a_i1 + a_i2``. SCIP wants a linear
objective, so the quadratic force cost is carried by one epigraph variable
per candidate and keyframe.
"""

from __future__ import annotations

import numpy as np

from dlm_gym.config import SceneConfig
from dlm_gym.mechanics import NUM_ENV_CONTACTS
from dlm_gym.oracle.candidates import ContactCandidates
from dlm_gym.oracle.keyframe_qp import keyframe_data
from dlm_gym.oracle.types import BackendChoice, OracleStatus
from dlm_gym.task import Task

__all__ = ["solve_scip"]


def solve_scip(
    task: Task,
    cands: ContactCandidates,
    config: SceneConfig,
    q_lambda: float,
    q_p: float,
    time_limit: float,
    rel_gap: float,
    verbose: bool,
) -> BackendChoice:
    """The MIQP backend (``backend="scip"``); see the module docstring.

    Args:
        task: the object and its target motion.
        cands: its contact candidates (:func:`~dlm_gym.oracle.contact_candidates`).
        config: scene constants.
        q_lambda: force weight of eq. 11 (N^-2).
        q_p: finger-acceleration weight of eq. 11 (s^4 m^-2).
        time_limit: seconds SCIP may take (at least 0.01).
        rel_gap: relative gap at which SCIP stops.
        verbose: print the SCIP log.
    """
    import pyscipopt  # imported here: the default backend does not need it

    N, T, E = config.num_fingers, task.horizon, NUM_ENV_CONTACTS
    valid = np.flatnonzero(cands.valid)
    if valid.size < N:
        return BackendChoice(
            OracleStatus.INFEASIBLE,
            message=f"only {valid.size} candidate contact points clear the ground",
        )
    data = keyframe_data(task, cands, config)
    F = config.force_limit
    big_a = np.sqrt(2.0 * (1.0 + config.finger_friction**2)) * F
    m = pyscipopt.Model("dlm_oracle")
    if not verbose:
        m.hideOutput()
    m.setParam("limits/time", max(float(time_limit), 0.01))
    m.setParam("limits/gap", float(rel_gap))

    x = {i: m.addVar(vtype="B", name=f"x_{i}", obj=q_p * float(cands.accel_sq[i])) for i in valid}
    m.addCons(pyscipopt.quicksum(x.values()) == N, name="one_candidate_per_finger")
    lam: dict[tuple[int, int], list] = {}
    for t in range(T):
        wr = data.w[t]
        terms = [[], [], []]
        for i in valid:
            a1 = m.addVar(lb=0.0, name=f"a_{i}_{t}_1")
            a2 = m.addVar(lb=0.0, name=f"a_{i}_{t}_2")
            G, tq = data.G[t, i], data.tq[t, i]
            lx = m.addVar(lb=-F, ub=F, name=f"lx_{i}_{t}")
            ly = m.addVar(lb=-F, ub=F, name=f"ly_{i}_{t}")
            m.addCons(lx == G[0, 0] * a1 + G[0, 1] * a2)
            m.addCons(ly == G[1, 0] * a1 + G[1, 1] * a2)
            m.addCons(a1 + a2 <= big_a * x[i])
            for comp in (lx, ly):
                m.addCons(comp <= F * x[i])
                m.addCons(comp >= -F * x[i])
            # Epigraph of q_lambda ||lambda_i(t)||^2: SCIP wants a linear objective.
            e = m.addVar(lb=0.0, obj=q_lambda, name=f"e_{i}_{t}")
            m.addCons(lx * lx + ly * ly <= e)
            lam[(i, t)] = [lx, ly]
            terms[0].append(lx)
            terms[1].append(ly)
            terms[2].append(tq[0] * a1 + tq[1] * a2)
        betas = []
        for r in range(data.Ae.shape[2]):
            if data.ce[t, r] > 0:  # empty slot: no force
                betas.append(None)
                continue
            b = m.addVar(lb=0.0, name=f"b_{t}_{r}")
            betas.append(b)
            for k in range(3):
                terms[k].append(data.Ae[t, k, r] * b)
        lam[(-1, t)] = betas
        for k in range(3):
            m.addCons(pyscipopt.quicksum(terms[k]) == wr[k], name=f"wrench_{t}_{k}")
    m.optimize()
    scip_status = m.getStatus()
    if scip_status == "infeasible":
        return BackendChoice(OracleStatus.INFEASIBLE, message="SCIP proved the MIQP infeasible")
    if m.getNSols() == 0:
        if scip_status in ("timelimit", "userinterrupt", "memlimit", "nodelimit"):
            return BackendChoice(
                OracleStatus.TIME_LIMIT,
                message=f"SCIP stopped ({scip_status}) without a solution",
            )
        return BackendChoice(
            OracleStatus.INFEASIBLE,
            message=f"SCIP ended with status {scip_status} and no solution",
        )
    sol = m.getBestSol()
    combo = np.array(sorted(i for i in valid if m.getSolVal(sol, x[i]) > 0.5), dtype=np.int64)
    fingers = np.array([[[m.getSolVal(sol, v) for v in lam[(i, t)]] for i in combo] for t in range(T)])
    R = data.Ae.shape[2]
    beta = np.array(
        [[0.0 if b is None else max(m.getSolVal(sol, b), 0.0) for b in lam[(-1, t)]] for t in range(T)]
    ).reshape(T, E, 2)
    rays = np.stack([data.Ae[:, 0, :R], data.Ae[:, 1, :R]], axis=-1).reshape(T, E, 2, 2)
    ground = np.einsum("tek,teki->tei", beta, rays)
    gap = float(m.getGap())
    status = OracleStatus.OPTIMAL if scip_status == "optimal" or gap <= rel_gap else OracleStatus.FEASIBLE_WITH_GAP
    force_cost = float(q_lambda * (fingers**2).sum())
    return BackendChoice(status, combo, fingers, ground, force_cost, gap, f"SCIP status {scip_status}")
