"""Gradients of the object-trajectory loss through the real pymunk scene (docs/design.md section 8.1).

The paper (Section 4.4) trains with ``L_sim`` by back-propagating through the
simulator with **central finite differences**. This module does that over
:class:`dlm_gym.scene.Scene`, the one physics of the environment:

- :func:`simulate` rolls out keyframe commands ``(B, T, N, 4)`` as the
  environment does (step 0 places the fingers, step k runs the interval
  k-1 -> k; no rendering) and returns the simulated trajectories ``(B, T, 3)``,
  bit for bit the environment's.
- :func:`fd_gradient` returns the losses ``(B,)`` and their central-difference
  gradients ``(B, T, N, 4)`` with respect to the commands.
- :class:`SimulatorLoss` / :func:`sim_loss_fd` wrap it as a torch autograd
  function, so that training code can call ``loss.backward()``.
- :func:`naive_fd_gradient` is the slow reference (full re-simulation).

Speed (the paper needed 40 s per datapoint). ``bench_fd`` of ``examples/benchmark.py`` (batch 16 of
sampled tasks with both fingers in contact throughout, 2 cores, otherwise
idle machine; ``python examples/benchmark.py --only learning``): 144 ms per datapoint under
physics 0.2 (86 ms with ``chain=True``; 126 ms for do-nothing commands).
Physics 0.1 took 18.6 ms: its servo ran inside chipmunk, while 0.2's runs in
Python every substep so that it can project contact points out of the object
and cap its force. How:

- **Causality.** Keyframe k's command only changes the simulation from
  keyframe ``max(k - 1, 0)`` on. The nominal rollout pickles the scene at
  keyframes 1 .. T-2 (pymunk spaces pickle with their cached contact
  arbiters, so a restored scene continues the nominal rollout to ~1e-15 m),
  and each perturbed rollout of keyframe k >= 2 restarts from the snapshot at
  keyframe k - 1 and simulates only the remaining ``T - k + 1`` intervals.
  Keyframes 0 and 1 restart from a fresh scene (``Scene()`` + ``reset`` costs
  0.17 ms, a ``pickle.loads`` 0.19 ms, one interval of 50 substeps 0.15 ms),
  which is also bit-identical to the nominal rollout. Measured per datapoint
  (T = 5, N = 2, serial): 63 ms re-simulating everything, 51 ms with
  snapshots.
- **Chain rule through the servo anchor** (``chain=True``; off by default
  since the scene projects contact points out of the object, see below).
  From keyframe 1 on, ``Scene.run_interval`` sees a command only through its
  servo anchor ``Scene.anchor(command)``, which moves one for one with the
  contact point. So for k >= 1 only x and y are differenced (which moves the
  anchor by exactly +-h) and the force gradients follow as
  ``(d anchor / d force)^T dL/d anchor``, with ``Scene.anchor``
  differentiated numerically (no physics). Keyframe 0 (it also places the
  fingers) is differenced in all four coordinates. This halves the perturbed
  rollouts of keyframes >= 1: 33 ms per datapoint serial. The force gradients
  differ from the per-coordinate ones by 0.01-2 % (the stencils differ by
  the 0.5 % finger-radius term of the anchor map), far less than the
  per-coordinate scheme's own change between h and h/2 (0.1-13 % for forces,
  5-75 % for positions, on sampled tasks: pymunk's contacts are hard).
  ``chain=False`` (the default) differences every coordinate. Since the
  scene moves a contact point that lies inside the object onto its surface
  (version 0.2 of the physics), the contact point no longer moves the anchor
  one for one wherever that projection acts, and chain-rule force gradients
  were measured 45 % off the per-coordinate ones on a squeeze whose fingers
  end up inside the object; so exactness won over the 35 % saving.
- **Processes.** Work is spread over a persistent, lazily created
  :class:`concurrent.futures.ProcessPoolExecutor` (fork where available, one
  worker per usable core, 2 here), one chunk per worker and call. With fewer
  datapoints than workers, a datapoint's keyframes are split between workers
  (each recomputes the cheap nominal prefix it needs). Results do not depend
  on the number of workers.

Step sizes ``h`` (documented choice, :func:`default_steps`): a position
coordinate moves by ``h_p = 1 mm`` (0.5 % of the 20 cm object radius) and a
force coordinate by ``h_f = K * h_p = 0.4 N`` (1 % of the 40 N force limit).
With the impedance servo (anchor at ``p_c + lambda_c / K``) both perturb the
servo anchor by the same 1 mm, so the two kinds of coordinates are probed on
the same physical scale. pymunk's contacts are hard (the paper's
``delta(D)``), so the loss is only piecewise smooth; a step of 1 mm smooths
over the solver's sub-millimetre jitter (contact slop 0.1 mm) rather than
differentiating it, as the paper's ``sigma(-D, kappa)`` smooths contact over
a finite width. Pass ``h`` (scalar or per coordinate) to choose otherwise.

Commands are clipped to the action box (:mod:`dlm_gym.actions`) as the
environment clips actions, so a perturbation past the box edge has no effect
(the gradient there is one-sided, halved; in chain mode the clip's own
central difference multiplies the anchor derivative).

Each rollout uses a **fresh** :class:`~dlm_gym.scene.Scene`. A Scene that ran
another task before can give different results (measured up to 2.6 mm after
0.4 s of a squeeze-and-lift): pymunk's broad-phase tree keeps its history,
which changes the order in which the contact solver visits the arbiters. A
fresh scene reproduces the environment's first episode exactly.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import multiprocessing
import os
import pickle
from collections.abc import Sequence

import numpy as np

from dlm_gym.actions import clip_command, command_bounds
from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.metrics import object_trajectory_loss
from dlm_gym.scene import Scene
from dlm_gym.task import Task

__all__ = [
    "simulate",
    "fd_gradient",
    "naive_fd_gradient",
    "default_steps",
    "SimulatorLoss",
    "sim_loss_fd",
    "shutdown_pool",
    "default_workers",
]

POSITION_STEP = 1e-3
"""h for the contact-point coordinates x, y, in metres."""


def default_steps(config: SceneConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Central-difference steps ``(4,)`` for ``(x, y, f_x, f_y)``: 1 mm and ``K * 1 mm`` (0.4 N)."""
    hf = config.servo_stiffness * POSITION_STEP
    return np.array([POSITION_STEP, POSITION_STEP, hf, hf])


# ---------------------------------------------------------------------------- inputs
def _as_batch(tasks, commands, config: SceneConfig, targets=None) -> tuple[list[Task], np.ndarray, np.ndarray]:
    """Normalise ``tasks`` (a Task or a sequence) and ``commands`` to a list and a (B, T, N, 4) array."""
    if isinstance(tasks, Task):
        tasks = [tasks]
    tasks = list(tasks)
    cmd = np.asarray(commands, dtype=np.float64)
    if cmd.ndim == 3:
        cmd = cmd[None]
    B, T, N = len(tasks), config.horizon, config.num_fingers
    if cmd.shape != (B, T, N, 4):
        raise ValueError(f"commands must have shape (B, T, N, 4) = ({B}, {T}, {N}, 4), got {cmd.shape}")
    if not np.all(np.isfinite(cmd)):
        raise ValueError("commands contain NaN or inf")
    for t in tasks:
        if not isinstance(t, Task):
            raise TypeError(f"tasks must be dlm_gym.Task objects, got {type(t).__name__}")
        if t.horizon != T:
            raise ValueError(f"a task has T={t.horizon} keyframes but the config has T={T}")
    if targets is None:
        targets = np.stack([t.trajectory for t in tasks])
    else:
        targets = np.asarray(targets, dtype=np.float64).reshape(B, T, 3)
    return tasks, cmd, targets


# ---------------------------------------------------------------------------- rollouts
def _dumps(scene: Scene) -> bytes:
    return pickle.dumps(scene, pickle.HIGHEST_PROTOCOL)


def _fresh(polygon, pose0, config: SceneConfig) -> Scene:
    scene = Scene(config)
    scene.reset(polygon, pose0)
    return scene


def _rollout(polygon, pose0, cmd: np.ndarray, config: SceneConfig) -> np.ndarray:
    """One rollout in a fresh Scene, as the env plays it: poses ``(T, 3)``."""
    return Scene(config).rollout(polygon, pose0, cmd)


def simulate(
    tasks: Task | Sequence[Task],
    commands: np.ndarray,
    config: SceneConfig = DEFAULT_CONFIG,
    *,
    clip: bool = True,
) -> np.ndarray:
    """Simulated trajectories ``(B, T, 3)`` of keyframe commands ``(B, T, N, 4)`` (metres, newtons).

    Each rollout runs in a fresh :class:`~dlm_gym.scene.Scene`, exactly as the
    environment plays it (``r*(0) = r(0)``; no rendering). ``clip`` clips the
    commands to the action box as the environment clips actions. Serial: a
    rollout takes about 1 ms.
    """
    tasks, cmd, _ = _as_batch(tasks, commands, config)
    if clip:
        cmd = clip_command(cmd, config)
    return np.stack([_rollout(t.polygon, t.trajectory[0], c, config) for t, c in zip(tasks, cmd)])


def _anchor_force_jacobian(scene: Scene, command: np.ndarray) -> np.ndarray:
    """``d anchor / d force`` ``(2, 2)`` of one finger command, by central differences of ``Scene.anchor``.

    The scene's own map (finger radius offset, ``lambda / K``) is differentiated,
    not re-derived, so the chain rule follows ``dlm_gym.scene`` if it changes.
    """
    jac = np.empty((2, 2))
    delta = 1e-6
    for d in range(2):
        plus, minus = command.copy(), command.copy()
        plus[2 + d] += delta
        minus[2 + d] -= delta
        jac[:, d] = (np.asarray(scene.anchor(plus)) - np.asarray(scene.anchor(minus))) / (2 * delta)
    return jac


def _fd_unit(polygon, pose0, raw, target, keyframes, h, config, clip, want_base, chain):
    """Central differences of one datapoint w.r.t. the commands of ``keyframes``.

    Returns ``(base_loss or None, grads (len(keyframes), N, 4))``. Perturbed
    rollouts of keyframes 0 and 1 start from a fresh scene (as cheap as a
    restore, and bit-identical to the nominal rollout); those of keyframe
    k >= 2 from the pickled nominal scene at keyframe k - 1. With ``chain``,
    keyframes k >= 1 are differenced only in the contact point (which moves
    the servo anchor one for one) and the force gradients follow by the chain
    rule through ``Scene.anchor``.
    """
    T, N = raw.shape[0], raw.shape[1]
    lo, hi = command_bounds(config)
    cmd = np.minimum(np.maximum(raw, lo), hi) if clip else raw
    keyframes = sorted(keyframes)
    last_needed = max(max(keyframes) - 1, 0)
    scene = _fresh(polygon, pose0, config)
    scene.place_fingers(cmd[0])
    poses = np.empty((T, 3))
    poses[0] = scene.object_pose
    snaps: dict[int, bytes] = {}
    for j in range(1, (T - 1 if want_base else last_needed) + 1):
        scene.run_interval(cmd[j - 1], cmd[j])
        poses[j] = scene.object_pose
        if j + 1 in keyframes and j < T - 1:
            snaps[j] = _dumps(scene)
    # Perturbed rollouts: (k, finger, coordinate, sign).
    plan = [
        (k, i, d, sign)
        for k in keyframes
        for i in range(N)
        for d in (range(2) if chain and k >= 1 else range(4))
        for sign in (1.0, -1.0)
    ]
    branch = np.empty((len(plan), T, 3))
    loads = pickle.loads
    for row, (k, i, d, sign) in enumerate(plan):
        c = cmd.copy()
        if chain and k >= 1:
            c[k, i, d] += sign * h[d]  # moves the anchor by exactly +-h, even past the view's edge
        else:
            value = raw[k, i, d] + sign * h[d]
            c[k, i, d] = min(max(value, lo[d]), hi[d]) if clip else value
        out = branch[row]
        if k <= 1:
            sc = _fresh(polygon, pose0, config)
            sc.place_fingers(c[0])
            out[0] = sc.object_pose
        else:
            sc = loads(snaps[k - 1])
            out[:k] = poses[:k]
        for j in range(max(k - 1, 0) + 1, T):
            sc.run_interval(c[j - 1], c[j])
            out[j] = sc.object_pose
    losses = object_trajectory_loss(branch, target[None], config.loss_rho)
    grads = np.zeros((len(keyframes), N, 4))
    slot = {k: n for n, k in enumerate(keyframes)}
    for row in range(0, len(plan), 2):
        k, i, d, _ = plan[row]
        grads[slot[k], i, d] = (losses[row] - losses[row + 1]) / (2.0 * h[d])
    if chain:
        # the clip's own central difference, so that the result matches the per-coordinate scheme
        clip_fd = np.ones_like(raw)
        if clip:
            edge = (raw - h < lo) | (raw + h > hi)
            step = (np.minimum(np.maximum(raw + h, lo), hi) - np.minimum(np.maximum(raw - h, lo), hi)) / (2 * h)
            clip_fd[edge] = np.broadcast_to(step, raw.shape)[edge]
        for k in keyframes:
            if k == 0:
                continue
            for i in range(N):
                g_anchor = grads[slot[k], i, :2].copy()
                grads[slot[k], i, :2] = g_anchor * clip_fd[k, i, :2]
                grads[slot[k], i, 2:] = (_anchor_force_jacobian(scene, cmd[k, i]).T @ g_anchor) * clip_fd[k, i, 2:]
    base = float(object_trajectory_loss(poses, target, config.loss_rho)) if want_base else None
    return base, grads


def _run_units(units):
    return [_fd_unit(*u) for u in units]


# ---------------------------------------------------------------------------- pool
_POOL: concurrent.futures.ProcessPoolExecutor | None = None
_POOL_WORKERS = 0


def default_workers() -> int:
    """Worker processes for :func:`fd_gradient`: the ``DLM_SIMGRAD_WORKERS`` variable, else the usable cores."""
    env = os.environ.get("DLM_SIMGRAD_WORKERS")
    if env is not None:
        return max(int(env), 0)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _get_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    global _POOL, _POOL_WORKERS
    if _POOL is None or _POOL_WORKERS != workers:
        shutdown_pool()
        # fork where it exists: workers start in milliseconds and, unlike spawn/forkserver, do not re-run
        # the caller's __main__ script (which would need an ``if __name__ == "__main__"`` guard). The
        # workers only run pymunk and small NumPy code, never torch, so forking a parent that holds
        # torch/OpenMP threads is safe here.
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        _POOL = concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        _POOL_WORKERS = workers
    return _POOL


def shutdown_pool() -> None:
    """Stop the worker processes (a later :func:`fd_gradient` starts new ones)."""
    global _POOL, _POOL_WORKERS
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)
    _POOL, _POOL_WORKERS = None, 0


atexit.register(shutdown_pool)


def _keyframe_cost(k: int, T: int, chain: bool) -> float:
    """Relative cost of keyframe k's perturbed rollouts (branches x (intervals + a restore))."""
    branches = 2 if chain and k >= 1 else 4
    return branches * (T - max(k, 1) + 1.0)


def _split_keyframes(T: int, parts: int, chain: bool) -> list[list[int]]:
    """Greedy balanced split of the keyframes into ``parts`` groups."""
    groups: list[list[int]] = [[] for _ in range(parts)]
    load = [0.0] * parts
    for k in sorted(range(T), key=lambda k: -_keyframe_cost(k, T, chain)):
        g = int(np.argmin(load))
        groups[g].append(k)
        load[g] += _keyframe_cost(k, T, chain)
    return [sorted(g) for g in groups if g]


# ---------------------------------------------------------------------------- gradients
def fd_gradient(
    tasks: Task | Sequence[Task],
    commands: np.ndarray,
    h: float | np.ndarray | None = None,
    *,
    config: SceneConfig = DEFAULT_CONFIG,
    targets: np.ndarray | None = None,
    clip: bool = True,
    workers: int | None = None,
    chain: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Object-trajectory losses ``(B,)`` and their central-difference gradients ``(B, T, N, 4)``.

    Args:
        tasks: B tasks (polygon, start pose ``trajectory[0]``, and by default the target trajectory).
        commands: keyframe commands ``(B, T, N, 4)``: per finger ``(x, y, f_x, f_y)`` in metres and newtons.
        h: steps, a scalar or ``(4,)`` per coordinate ``(x, y, f_x, f_y)``; default :func:`default_steps`
            (1 mm, 0.4 N).
        targets: ``(B, T, 3)`` target trajectories (default: the tasks' own).
        clip: clip commands to the action box like the environment.
        workers: processes (default :func:`default_workers`); 0 or 1 runs in this process.
        chain: from keyframe 1 on, difference only the contact point (the servo anchor) and get the force
            gradients by the chain rule through ``Scene.anchor`` (module docstring); False differences
            all four coordinates of every keyframe.

    The gradient of loss b w.r.t. ``commands[b, k, i, d]`` is
    ``(L(c + h_d e) - L(c - h_d e)) / (2 h_d)``, from snapshot-restored rollouts.
    """
    tasks, cmd, targets = _as_batch(tasks, commands, config, targets)
    hv = default_steps(config) if h is None else np.broadcast_to(np.asarray(h, dtype=np.float64), (4,)).copy()
    if np.any(hv <= 0):
        raise ValueError("finite-difference steps must be positive")
    B, T = cmd.shape[:2]
    workers = default_workers() if workers is None else workers
    if multiprocessing.current_process().daemon:
        workers = 0  # a daemonic process (e.g. a DataLoader worker) may not have children

    # Units of work: a datapoint, or (when B is small) a datapoint's group of keyframes.
    parts = 1 if workers <= 1 or B >= workers else max(1, min(T, workers // B))
    units = []
    for b in range(B):
        task = tasks[b]
        for g, kfs in enumerate(_split_keyframes(T, parts, chain)):
            args = (task.polygon, task.trajectory[0], cmd[b], targets[b], kfs, hv, config, clip, g == 0, chain)
            units.append((b, args))
    if workers <= 1:
        results = _run_units([u for _, u in units])
    else:
        n_chunks = min(workers, len(units))
        chunks = [units[i::n_chunks] for i in range(n_chunks)]
        pool = _get_pool(workers)
        outs = list(pool.map(_run_units, [[u for _, u in ch] for ch in chunks]))
        results = [None] * len(units)
        for i in range(n_chunks):
            for j, r in enumerate(outs[i]):
                results[i + j * n_chunks] = r
    losses = np.empty(B)
    grads = np.empty(cmd.shape)
    for (b, u), (base, g) in zip(units, results):
        if base is not None:
            losses[b] = base
        grads[b, u[4]] = g
    return losses, grads


def naive_fd_gradient(
    tasks: Task | Sequence[Task],
    commands: np.ndarray,
    h: float | np.ndarray | None = None,
    *,
    config: SceneConfig = DEFAULT_CONFIG,
    targets: np.ndarray | None = None,
    clip: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference: the same central differences with full re-simulation, no snapshots, no pool (slow)."""
    tasks, cmd, targets = _as_batch(tasks, commands, config, targets)
    hv = default_steps(config) if h is None else np.broadcast_to(np.asarray(h, dtype=np.float64), (4,)).copy()
    losses = object_trajectory_loss(simulate(tasks, cmd, config, clip=clip), targets, config.loss_rho)
    grads = np.zeros(cmd.shape)
    for idx in np.ndindex(*cmd.shape[1:]):
        d = idx[-1]
        plus, minus = cmd.copy(), cmd.copy()
        plus[(slice(None),) + idx] += hv[d]
        minus[(slice(None),) + idx] -= hv[d]
        lp = object_trajectory_loss(simulate(tasks, plus, config, clip=clip), targets, config.loss_rho)
        lm = object_trajectory_loss(simulate(tasks, minus, config, clip=clip), targets, config.loss_rho)
        grads[(slice(None),) + idx] = (lp - lm) / (2 * hv[d])
    return losses, grads


# ---------------------------------------------------------------------------- torch
try:
    import torch

    class SimulatorLoss(torch.autograd.Function):
        """``L_sim`` per datapoint ``(B,)`` with the pymunk finite-difference gradient in backward.

        ``SimulatorLoss.apply(commands, tasks, targets, h, config)``; prefer :func:`sim_loss_fd`.
        """

        @staticmethod
        def forward(ctx, commands, tasks, targets=None, h=None, config=DEFAULT_CONFIG, chain=False):
            c = commands.detach().to("cpu", torch.float64).numpy()
            losses, grads = fd_gradient(tasks, c, h, config=config, targets=targets, chain=chain)
            ctx.save_for_backward(torch.as_tensor(grads, dtype=commands.dtype, device=commands.device))
            return torch.as_tensor(losses, dtype=commands.dtype, device=commands.device)

        @staticmethod
        def backward(ctx, grad_output):
            (grads,) = ctx.saved_tensors
            return grad_output[:, None, None, None] * grads, None, None, None, None, None

    def sim_loss_fd(tasks, commands, *, targets=None, h=None, config: SceneConfig = DEFAULT_CONFIG, chain=False):
        """Differentiable ``L_sim``: losses ``(B,)`` in cm^2 of commands ``(B, T, N, 4)`` (a torch tensor).

        The forward pass runs :func:`fd_gradient` (pymunk, central differences)
        and keeps the gradient; ``backward`` scales it by the upstream gradient.
        """
        if isinstance(tasks, Task):
            tasks = [tasks]
        if commands.dim() == 3:
            commands = commands[None]
        if torch.is_tensor(targets):
            targets = targets.detach().to("cpu", torch.float64).numpy()
        return SimulatorLoss.apply(commands, list(tasks), targets, h, config, chain)

except ImportError:  # pragma: no cover - torch is a dependency
    SimulatorLoss = None  # type: ignore[assignment,misc]
    sim_loss_fd = None  # type: ignore[assignment]
