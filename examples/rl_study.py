#!/usr/bin/env python
"""From-scratch RL on the state observation, done properly: reward normalisation, Markov state, learning curves.

Trains one stable-baselines3 agent (PPO, SAC or TD3) on ``VideoPlanarManip-v0``
with ``obs_type="state"``, on the random tasks of the env's own ``reset``, in
one process on one CPU thread (``DummyVecEnv`` with one env), optionally
through the wrappers of :mod:`dlm_gym.wrappers`:

- ``--markov``: :class:`~dlm_gym.wrappers.MarkovState` adds the object's
  velocity and the previous action to the observation;
- ``--relative-contacts``: :class:`~dlm_gym.wrappers.RelativeContacts` makes
  each finger's ``(x, y)`` action an offset (+-0.25 m) from the current target
  centroid.

Normalisation (SB3 ``VecNormalize``): ``--norm-reward`` (default on) scales the
rewards by a running standard deviation of the return: the raw rewards reach
about -1000 per step for a wild push and a few cm^2 near the target, a range no
fixed learning rate suits. ``--norm-obs`` (default on) standardises the float
boxes of the observation (pose, targets, polygon, finger positions and, with
``--markov``, velocity) with running means and variances, because their scales
differ by orders of magnitude (fingers parked at y = -10 m before step 0,
polygons of a few cm, angular velocities of tens of rad/s); the step index,
the polygon mask and the previous action (already in [-1, 1]) are left as
they are. The statistics are frozen into the evaluated policy and saved
(``model_obs_norm.npz``).

Every ``--eval-every`` env steps (and at the start and the end) the
deterministic policy plays ``--eval-tasks`` validation tasks of our own seeds
through the zoo's one rollout loop (:func:`policies.common.rollout.evaluate`);
the seeds are the first N for which ``sample_task(seed)`` (4-6 facets) builds
a task, counting from ``SEED_RANGES["validation"][0] + 50_000`` = 850,000,
clear of the 800,000... block that ``policies.rl.callbacks`` validates on.
The rollout loop builds a bare env, so the agent acts through
:class:`StackPolicy`, which replays the episode in its own copy of the same
wrapper stack (a "shadow" env rebuilt from the observed polygon and targets;
the physics is deterministic) and hands the loop the absolute action the
shadow env executed; it checks at every step that both envs agree exactly.

Outputs in ``--out``: ``curve.csv`` (:mod:`policies.common.curves`, stage
``RL``, step = env steps, objective = mean loss of the training episodes since
the previous row, ``executed_validation`` = the deterministic policy's mean
loss on the validation tasks), ``model.zip``, ``model_obs_norm.npz`` (with
``--norm-obs``) and ``summary.json`` (the run, its throughput, the final
validation loss with a 95 % bootstrap interval, noop's loss on the same tasks,
the paired difference, and the exploit check: how often the policy commanded
a contact point more than 1 mm inside the object, and its loss when such
points are moved onto the outline at the pose they are commanded at, the
surface twin of ``examples/exploit_check.py``).

Examples:
    python examples/rl_study.py --algo ppo --markov --timesteps 800000 --out runs/rl_study/ppo_markov
    python examples/rl_study.py --algo sac --markov --relative-contacts --max-wall-seconds 1200 \\
        --timesteps 1000000 --eval-every 10000 --out runs/rl_study/sac_markov_rel
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlm_gym import cli
from policies.rl.state_agent import (
    NORMALIZED_KEYS,
    ConstantModel,
    ObsNormalizer,
    StackPolicy,
    normalizer_path,
    wrap_state_env,
)

ALGOS = ("ppo", "sac", "td3")
VALIDATION_OFFSET = 50_000
"""Our validation seeds start this far into ``SEED_RANGES["validation"]`` (at 850,000)."""
PROJECTION_THRESHOLD_M = 1e-3
"""A step counts as "finger inside the object" when a contact point was moved out by more than 1 mm."""
CURVE_SPLIT = "validation"
MAX_EVAL_TASKS = 10_000


@dataclasses.dataclass
class Config:
    """The study's one configuration; every field is a command-line flag (``--eval-every`` for ``eval_every``)."""

    algo: str = dataclasses.field(default="ppo", metadata={"help": "ppo, sac or td3", "choices": ALGOS})
    timesteps: int = dataclasses.field(
        default=800_000, metadata={"help": "env steps to train (5 per episode)", "type": cli.positive_int}
    )
    max_wall_seconds: float = dataclasses.field(
        default=0.0,
        metadata={
            "help": "stop training after this much wall time, evaluations included (0: no limit)",
            "type": cli.finite_non_negative_float,
        },
    )
    seed: int = dataclasses.field(default=0, metadata={"help": "seeds SB3 and the env", "type": cli.non_negative_int})
    norm_reward: bool = dataclasses.field(default=True, metadata={"help": "VecNormalize the rewards"})
    norm_obs: bool = dataclasses.field(default=True, metadata={"help": "VecNormalize the float observation boxes"})
    markov: bool = dataclasses.field(default=False, metadata={"help": "add velocity and previous action (MarkovState)"})
    relative_contacts: bool = dataclasses.field(
        default=False, metadata={"help": "contact points relative to the target centroid (RelativeContacts)"}
    )
    eval_every: int = dataclasses.field(
        default=50_000, metadata={"help": "env steps between validations", "type": cli.positive_int}
    )
    eval_tasks: int = dataclasses.field(
        default=100, metadata={"help": "validation tasks (seeds from 850,000)", "type": cli.positive_int}
    )
    out: Path = dataclasses.field(
        default=Path("runs/rl_study/run"), metadata={"help": "output folder", "type": cli.output_dir}
    )
    threads: int = dataclasses.field(default=1, metadata={"help": "torch threads", "type": cli.positive_int})
    learning_rate: float = dataclasses.field(
        default=3e-4, metadata={"help": "Adam learning rate", "type": cli.finite_positive_float}
    )
    gamma: float = dataclasses.field(
        default=1.0,
        metadata={
            "help": "discount (1: the objective is the undiscounted 5-step return)",
            "type": cli.finite_positive_float,
        },
    )
    batch_size: int = dataclasses.field(default=256, metadata={"help": "minibatch size", "type": cli.positive_int})
    n_steps: int = dataclasses.field(
        default=2048, metadata={"help": "PPO: env steps per rollout", "type": cli.positive_int}
    )
    n_epochs: int = dataclasses.field(
        default=10, metadata={"help": "PPO: epochs per rollout", "type": cli.positive_int}
    )
    log_std_init: float = dataclasses.field(
        default=-1.0, metadata={"help": "PPO: initial log std of the Gaussian policy", "type": cli.finite_float}
    )
    learning_starts: int = dataclasses.field(
        default=1000, metadata={"help": "SAC/TD3: random steps before learning", "type": cli.non_negative_int}
    )
    buffer_size: int = dataclasses.field(
        default=300_000, metadata={"help": "SAC/TD3: replay buffer size", "type": cli.positive_int}
    )
    progress: bool = dataclasses.field(default=False, metadata={"help": "print a line per validation"})
    ship: Path | None = dataclasses.field(
        default=None,
        metadata={
            "help": "also copy the model to this .zip and its statistics next to it (<stem>_obs_norm.npz): "
            "how the zoo's ppo_state is made",
            "type": cli.output_file,
        },
    )


def build_parser() -> cli.ArgumentParser:
    """The command line of :class:`Config`: one flag per field, ``--x/--no-x`` for the booleans."""
    return cli.dataclass_parser(Config, __doc__)


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Parse ``argv`` into a :class:`Config`; a bad value exits 2 with one line."""
    p = build_parser()
    args = p.parse_args(argv)
    cfg = Config(**vars(args))
    if cfg.algo == "ppo" and cfg.batch_size > cfg.n_steps:
        p.error(f"--batch-size ({cfg.batch_size}) must not exceed --n-steps ({cfg.n_steps}) for PPO")
    if cfg.gamma > 1:
        p.error(f"--gamma must be in (0, 1], got {cfg.gamma}")
    if cfg.ship is not None and (cfg.algo != "ppo" or not cfg.markov or cfg.relative_contacts or not cfg.norm_obs):
        p.error("--ship makes the zoo's ppo_state: it needs --algo ppo --markov --norm-obs and no --relative-contacts")
    if cfg.ship is not None and cfg.ship.suffix != ".zip":
        p.error(f"--ship must name a .zip file, got {cfg.ship}")
    if cfg.eval_tasks > MAX_EVAL_TASKS:
        p.error(f"--eval-tasks must be at most {MAX_EVAL_TASKS}, got {cfg.eval_tasks}")
    return cfg


# ------------------------------------------------------------------ tasks
def validation_seeds(n: int) -> list[int]:
    """The first ``n`` seeds from ``SEED_RANGES["validation"][0] + VALIDATION_OFFSET`` that make a task."""
    from dlm_gym.datasets import SEED_RANGES
    from dlm_gym.geometry import InvalidPolygonError
    from dlm_gym.task import sample_task

    lo, hi = SEED_RANGES["validation"]
    seeds, seed = [], lo + VALIDATION_OFFSET
    while len(seeds) < n:
        if seed >= hi:
            raise ValueError(f"the validation seed range ends at {hi}; {n} tasks do not fit")
        try:
            sample_task(seed, n_facets=(4, 6))
        except (ValueError, InvalidPolygonError):
            pass
        else:
            seeds.append(seed)
        seed += 1
    return seeds


def validation_tasks(n: int) -> list:
    from dlm_gym.task import sample_task

    return [sample_task(s, n_facets=(4, 6), name=f"validation/{s}") for s in validation_seeds(n)]


# ------------------------------------------------------------------ envs
def wrapper_names(cfg: Config) -> list[str]:
    return [name for name, on in (("MarkovState", cfg.markov), ("RelativeContacts", cfg.relative_contacts)) if on]


def make_vec_env(cfg: Config):
    """One training env (random tasks from the env's own ``reset``), Monitor, the wrappers, VecNormalize."""
    import gymnasium as gym
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    import dlm_gym  # noqa: F401  (registers VideoPlanarManip-v0)

    def make():
        env = gym.make("VideoPlanarManip-v0", obs_type="state")
        return Monitor(wrap_state_env(env, markov=cfg.markov, relative_contacts=cfg.relative_contacts))

    venv = DummyVecEnv([make])
    if cfg.norm_obs or cfg.norm_reward:
        keys = [k for k in NORMALIZED_KEYS if k in venv.observation_space.spaces] if cfg.norm_obs else None
        venv = VecNormalize(
            venv, norm_obs=cfg.norm_obs, norm_reward=cfg.norm_reward, norm_obs_keys=keys, gamma=cfg.gamma
        )
    return venv


def load_policy(out: str | Path) -> StackPolicy:
    """The policy a finished run saved in ``out`` (``summary.json``, ``model.zip``, ``model_obs_norm.npz``)."""
    out = Path(out)
    summary = json.loads((out / "summary.json").read_text())
    algo = _algo_class(summary["algo"])
    model = algo.load(out / "model.zip", device="cpu")
    norm = normalizer_path(out / "model.zip")
    return StackPolicy(
        model,
        markov="MarkovState" in summary["wrappers"],
        relative_contacts="RelativeContacts" in summary["wrappers"],
        normalizer=ObsNormalizer.load(norm) if norm.exists() else None,
        name=out.name,
    )


# ------------------------------------------------------------------ training
def _algo_class(name: str):
    from stable_baselines3 import PPO, SAC, TD3

    return {"ppo": PPO, "sac": SAC, "td3": TD3}[name]


def make_model(cfg: Config, venv):
    """The SB3 model: MultiInputPolicy, two hidden layers of 256, on CPU."""
    common = dict(learning_rate=cfg.learning_rate, gamma=cfg.gamma, seed=cfg.seed, device="cpu", verbose=0)
    if cfg.algo == "ppo":
        return _algo_class("ppo")(
            "MultiInputPolicy",
            venv,
            n_steps=cfg.n_steps,
            batch_size=cfg.batch_size,
            n_epochs=cfg.n_epochs,
            gae_lambda=0.95,
            clip_range=0.2,
            ent_coef=0.0,
            policy_kwargs=dict(net_arch=dict(pi=[256, 256], vf=[256, 256]), log_std_init=cfg.log_std_init),
            **common,
        )
    kwargs: dict[str, Any] = dict(
        buffer_size=cfg.buffer_size,
        learning_starts=cfg.learning_starts,
        batch_size=cfg.batch_size,
        policy_kwargs=dict(net_arch=[256, 256]),
    )
    if cfg.algo == "td3":
        from stable_baselines3.common.noise import NormalActionNoise

        shape = venv.action_space.shape
        kwargs["action_noise"] = NormalActionNoise(np.zeros(shape), 0.1 * np.ones(shape))
    return _algo_class(cfg.algo)("MultiInputPolicy", venv, **kwargs, **common)


def _study_callback(cfg: Config, curve, evaluate_policy: Callable[[], list], start: float):
    from stable_baselines3.common.callbacks import BaseCallback

    class StudyCallback(BaseCallback):
        """Training-episode losses; a curve row with a validation every ``eval_every`` steps; the wall limit."""

        def __init__(self) -> None:
            super().__init__()
            self.losses: list[float] = []
            self.next_eval = 0
            self.last_row_step = -1
            self.last_results: list = []
            self.stopped_by_wall = False

        def write_row(self) -> None:
            self.last_results = evaluate_policy()
            val = np.array([r.loss for r in self.last_results])
            losses, self.losses = self.losses, []
            objective = float(np.mean(losses)) if losses else None
            seconds = time.perf_counter() - start
            executed = {CURVE_SPLIT: (float(val.mean()), float(val.std()))}
            curve.write("RL", self.num_timesteps, seconds, objective, executed)
            self.last_row_step = self.num_timesteps
            if cfg.progress:
                train = f"{objective:.2f}" if objective is not None else "-"
                print(
                    f"step {self.num_timesteps:>8d}  {seconds:7.0f} s  train {train:>8}  validation {val.mean():.2f}",
                    flush=True,
                )

        def _on_training_start(self) -> None:
            self.write_row()
            self.next_eval = cfg.eval_every

        def _on_step(self) -> bool:
            for done, info in zip(self.locals["dones"], self.locals["infos"]):
                if done and "object_trajectory_loss" in info:
                    self.losses.append(float(info["object_trajectory_loss"]))
            # the last row is written after learn() returns: PPO and SAC still update the model after the last step
            if self.next_eval <= self.num_timesteps < cfg.timesteps:
                self.write_row()
                self.next_eval += cfg.eval_every
            if cfg.max_wall_seconds and time.perf_counter() - start > cfg.max_wall_seconds:
                self.stopped_by_wall = True
                return False
            return True

    return StudyCallback()


def _exploit(projections: list[np.ndarray]) -> dict:
    p = np.array(projections) if projections else np.zeros((0, 2))
    inside = p > PROJECTION_THRESHOLD_M
    return {
        "threshold_m": PROJECTION_THRESHOLD_M,
        "steps": int(len(p)),
        "share_of_steps_with_projection": float(inside.any(axis=1).mean()) if len(p) else 0.0,
        "share_of_finger_steps_with_projection": float(inside.mean()) if len(p) else 0.0,
        "mean_projection_m": float(p.mean()) if len(p) else 0.0,
        "max_projection_m": float(p.max()) if len(p) else 0.0,
    }


def run(cfg: Config) -> dict:
    """Train, validate along the way, save; returns the summary (also written to ``OUT/summary.json``)."""
    import torch

    import policies
    from dlm_gym.atomic import atomic_write
    from policies.common.curves import CurveLog
    from policies.common.rollout import evaluate
    from policies.common.statistics import mean_ci, paired_difference

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = validation_seeds(cfg.eval_tasks)
    tasks = validation_tasks(cfg.eval_tasks)
    noop = [r.loss for r in evaluate(policies.make_policy("noop"), tasks, progress=False)]

    start = time.perf_counter()
    venv = make_vec_env(cfg)
    model = make_model(cfg, venv)
    eval_seconds = [0.0]

    def normalizer():
        return ObsNormalizer.from_vec_normalize(venv) if cfg.norm_obs else None

    agent = StackPolicy(model, markov=cfg.markov, relative_contacts=cfg.relative_contacts, name=f"rl_study_{cfg.algo}")

    def evaluate_policy() -> list:
        t = time.perf_counter()
        agent.normalizer = normalizer()  # the statistics as they are now, frozen for this evaluation
        agent.projections = []
        results = evaluate(agent, tasks, progress=False)
        eval_seconds[0] += time.perf_counter() - t
        return results

    curve = CurveLog(out / "curve.csv", [CURVE_SPLIT])
    try:
        callback = _study_callback(cfg, curve, evaluate_policy, start)
        model.learn(total_timesteps=cfg.timesteps, callback=callback)
        steps = int(model.num_timesteps)
        if callback.last_row_step != steps:  # else training stopped (wall limit) right after that row's validation
            callback.write_row()
        wall = time.perf_counter() - start
        results = callback.last_results
        with atomic_write(out / "model.zip") as handle:
            model.save(handle)
        norm = normalizer()
        if norm is not None:
            norm.save(normalizer_path(out / "model.zip"))
        curve.publish()
    finally:
        curve.close()
        venv.close()

    losses = [r.loss for r in results]
    exploit = _exploit(agent.projections)
    # the exploit check: the same policy with interior contact points moved onto the outline when commanded
    twin = StackPolicy(
        model,
        markov=cfg.markov,
        relative_contacts=cfg.relative_contacts,
        normalizer=agent.normalizer,
        surface_twin=True,
    )
    twin_losses = [r.loss for r in evaluate(twin, tasks, progress=False)]
    exploit["surface_twin"] = {
        "validation": mean_ci(twin_losses).to_json(),
        "twin_minus_policy": paired_difference(twin_losses, losses).to_json(),
        "twin_minus_noop": paired_difference(twin_losses, noop).to_json(),
        "losses": twin_losses,
    }
    references = {}
    if cfg.relative_contacts:
        # what RelativeContacts gives with no learning: both fingers at the target centroid (moved onto the
        # surface by the env), no force
        zero = StackPolicy(ConstantModel(np.zeros((2, 4))), markov=False, relative_contacts=True, name="zero_offset")
        zero_losses = [r.loss for r in evaluate(zero, tasks, progress=False)]
        references["zero_offset"] = {
            "validation": mean_ci(zero_losses).to_json(),
            "difference_vs_noop": paired_difference(zero_losses, noop).to_json(),
            "policy_minus_zero_offset": paired_difference(losses, zero_losses).to_json(),
            "exploit_check": _exploit(zero.projections),
            "losses": zero_losses,
        }
    summary = {
        "algo": cfg.algo,
        "obs": "state",
        "wrappers": wrapper_names(cfg),
        "norm_reward": cfg.norm_reward,
        "norm_obs": cfg.norm_obs,
        "steps": steps,
        "episodes": steps // 5,
        "stopped_by_wall_limit": callback.stopped_by_wall,
        "wall_seconds": wall,
        "steps_per_second": steps / wall,
        "eval_seconds": eval_seconds[0],
        "train_steps_per_second": steps / max(wall - eval_seconds[0], 1e-9),
        "validation_tasks": len(tasks),
        "validation_seeds": [seeds[0], seeds[-1]],
        "final_validation": mean_ci(losses).to_json(),
        "noop_validation": mean_ci(noop).to_json(),
        "difference_vs_noop": paired_difference(losses, noop).to_json(),
        "success_rate": float(np.mean([r.success for r in results])),
        "exploit_check": exploit,
        "references": references,
        "per_task": {"seed": seeds, "loss": losses, "noop": noop},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()},
        "files": {"curve": str(out / "curve.csv"), "model": str(out / "model.zip")},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if cfg.ship is not None:
        import shutil

        Path(cfg.ship).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "model.zip", cfg.ship)
        shutil.copyfile(normalizer_path(out / "model.zip"), normalizer_path(cfg.ship))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(argv)
    try:
        summary = run(cfg)
    except (*cli.USER_ERRORS, OSError) as exc:
        return cli.fail(exc)
    f, n, d = summary["final_validation"], summary["noop_validation"], summary["difference_vs_noop"]
    print(
        f"{cfg.algo} {'+'.join(summary['wrappers']) or 'state'}: {summary['steps']} steps in "
        f"{summary['wall_seconds']:.0f} s ({summary['steps_per_second']:.0f}/s); validation "
        f"{f['mean']:.2f} [{f['ci_low']:.2f}, {f['ci_high']:.2f}], noop {n['mean']:.2f}, "
        f"difference {d['mean']:.2f} [{d['ci_low']:.2f}, {d['ci_high']:.2f}]"
        + ("" if math.isfinite(f["mean"]) else " (not finite!)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
