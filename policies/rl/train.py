"""Training PPO on ``VideoPlanarManip-v0``: the vectorised env as rl_zoo3 builds it, and :func:`train_ppo`.

``python examples/train.py --policy ppo_scratch`` calls :func:`train_ppo`; the same
hyperparameters train through rl-baselines3-zoo from
``policies/rl/hyperparams/ppo_scratch.yml`` (see :mod:`policies.rl.zoo_hyperparams`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize, VecTransposeImage

import dlm_gym  # noqa: F401  (registers VideoPlanarManip-v0)
from dlm_gym.atomic import atomic_write
from dlm_gym.wrappers import StackVideoChannels
from policies.rl.callbacks import LearningCurveCallback, validation_tasks
from policies.rl.loading import SCRATCH_CHECKPOINT
from policies.rl.zoo_hyperparams import (
    DEFAULT_SEED,
    ENV_ID,
    PPO_HYPERPARAMS,
    algo_kwargs,
    normalize_kwargs,
    policy_kwargs,
)

__all__ = ["make_train_env", "train_ppo"]

#: Training-loop state that SB3 would pickle into the checkpoint (the last batch
#: of observations is about 1 MB) and that acting never needs.
UNSHIPPED_STATE = ("_last_obs", "_last_original_obs", "_last_episode_starts", "ep_info_buffer", "ep_success_buffer")
#: Entries of :data:`PPO_HYPERPARAMS` that :func:`train_ppo` does not let callers override:
#: the loader rebuilds the network from them, and the zoo file must say the same.
_FIXED = ("policy", "policy_kwargs", "env_wrapper")


def make_train_env(
    n_envs: int = 8,
    seed: int = 0,
    *,
    vec_env: str = "dummy",
    normalize_reward: bool = True,
    gamma: float = 1.0,
    env_kwargs: dict[str, Any] | None = None,
) -> VecEnv:
    """The vectorised training env: ``gym.make(ENV_ID)`` -> Monitor -> StackVideoChannels, as rl_zoo3 builds it.

    Tasks come from the env's own generator (4-6 facets by default, the family
    split's distribution); env ``i`` is seeded with ``seed + i``. With
    ``normalize_reward`` the rewards are scaled by a running std (VecNormalize,
    observations untouched); the images are transposed to channel-first.
    """
    vec_cls = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}.get(vec_env)
    if vec_cls is None:
        raise ValueError(f"vec_env must be 'dummy' or 'subproc', got {vec_env!r}")
    env = make_vec_env(
        ENV_ID,
        n_envs=n_envs,
        seed=seed,
        wrapper_class=StackVideoChannels,
        env_kwargs=env_kwargs or {},
        vec_env_cls=vec_cls,
    )
    if normalize_reward:
        env = VecNormalize(env, norm_obs=False, norm_reward=True, gamma=gamma)
    return VecTransposeImage(env)


def train_ppo(
    total_timesteps: int | None = None,
    seed: int = DEFAULT_SEED,
    out_path: str | os.PathLike = SCRATCH_CHECKPOINT,
    *,
    n_envs: int | None = None,
    vec_env: str = "dummy",
    log_path: str | os.PathLike | None = None,
    hyperparams: dict[str, Any] | None = None,
    n_val_tasks: int = 20,
    eval_every: int = 10,
    num_threads: int | None = 1,
    progress: bool = True,
    verbose: int = 0,
) -> Path:
    """Train PPO on ``VideoPlanarManip-v0`` and save an SB3 checkpoint; returns its path.

    Args:
        total_timesteps: environment steps (5 per episode); default ``n_timesteps`` of
            :data:`~policies.rl.zoo_hyperparams.PPO_HYPERPARAMS`.
        seed: seeds SB3 (torch, numpy, the action noise) and the envs (env ``i`` gets ``seed + i``).
        out_path: the ``.zip`` checkpoint to write (parent folders are created).
        n_envs: parallel envs; default ``n_envs`` of :data:`~policies.rl.zoo_hyperparams.PPO_HYPERPARAMS`.
        vec_env: ``"dummy"`` (one process; the default, faster here: see the README) or ``"subproc"``.
        log_path: the learning-curve log (:mod:`policies.common.curves`); default
            ``<out_path stem>_log.csv`` next to the checkpoint. One row per rollout, stage ``RL``:
            step = env steps so far, objective = mean loss of the training episodes of that rollout
            (stochastic policy), ``executed_validation`` and its std = deterministic loss on
            ``n_val_tasks`` held-out generated tasks (every ``eval_every`` rollouts, and first and
            last; see :mod:`policies.rl.callbacks`). It is written as ``<log>.partial`` and renamed
            once the checkpoint is saved (itself written to a temporary file and renamed), so an
            interrupted run never damages a shipped log or zip.
        hyperparams: overrides of :data:`~policies.rl.zoo_hyperparams.PPO_HYPERPARAMS` (zoo names, e.g.
            ``{"n_steps": 32}``). The network kwargs cannot be overridden: the loader rebuilds the
            network from them.
        n_val_tasks: validation tasks for the log (seeds from 800000; never the zoo's evaluation tasks).
        eval_every: rollouts between two validations.
        num_threads: torch threads during training (``None`` leaves torch's setting). Results are
            reproducible for a given seed, thread count and machine (as far as SB3 and torch allow).
        progress: show a tqdm bar.
        verbose: SB3 verbosity.
    """
    hp = dict(PPO_HYPERPARAMS)
    if hyperparams:
        unknown = set(hyperparams) - set(hp)
        if unknown:
            raise ValueError(f"unknown PPO hyperparameter(s) {sorted(unknown)}; known: {sorted(hp)}")
        if any(key in hyperparams for key in _FIXED):
            raise ValueError(
                "policy, policy_kwargs and env_wrapper are fixed; edit PPO_HYPERPARAMS and ppo_scratch.yml together"
            )
        hp.update(hyperparams)
    total = int(total_timesteps if total_timesteps is not None else hp["n_timesteps"])
    if total <= 0:
        raise ValueError(f"total_timesteps must be positive, got {total}")
    n_envs = int(n_envs if n_envs is not None else hp["n_envs"])
    out_path = Path(out_path)
    if out_path.suffix != ".zip":
        out_path = out_path.with_suffix(".zip")
    if log_path is None:
        log_path = out_path.with_name(out_path.stem + "_log.csv")

    if num_threads is not None:
        previous_threads = th.get_num_threads()
        th.set_num_threads(num_threads)
    curve = None
    try:
        normalize = normalize_kwargs(hp["normalize"])
        env = make_train_env(
            n_envs,
            seed,
            vec_env=vec_env,
            normalize_reward=bool(normalize and normalize.get("norm_reward", False)),
            gamma=float(hp["gamma"]),
        )
        model = PPO(
            hp["policy"],
            env,
            seed=seed,
            verbose=verbose,
            device="cpu",
            policy_kwargs=policy_kwargs(hp),
            **algo_kwargs(hp),
        )
        curve = LearningCurveCallback(
            log_path,
            total,
            val_tasks=validation_tasks(n_val_tasks),
            eval_every=eval_every,
            progress=progress,
        )
        model.learn(total_timesteps=total, callback=curve)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        # Drop Adam's moment estimates (2x the weights): the checkpoint is for
        # acting; training can still resume from it, with fresh moments.
        model.policy.optimizer.state.clear()
        with atomic_write(out_path) as handle:  # never half a zip
            model.save(handle, exclude=list(UNSHIPPED_STATE))
        curve.publish()
        env.close()
    finally:
        if curve is not None:
            curve.close()  # an interrupted run leaves <log>.partial closed, for a look
        if num_threads is not None:
            th.set_num_threads(previous_threads)
    return out_path
