#!/usr/bin/env python
"""Pixel PPO that starts from knowledge: the ``nn`` policy (behaviour cloning of the oracle), then PPO on the reward.

The RL counterpart of the paper's L_sim fine-tuning (issue 13), and how the
zoo's ``ppo`` is made. One SB3 ``PPO`` model throughout
(:func:`policies.rl.warm_start.nn_initialised_ppo`: ``MultiInputPolicy`` on
:class:`~dlm_gym.wrappers.StackVideoChannels` with
:class:`~policies.rl.extractors.NNPlanExtractor`), in three stages:

1. **nn**: the actor starts as ``--nn-checkpoint`` (by default the shipped
   ``nn``: NNNet trained with L_NN, squared error against the oracle's
   commands, on the 20,000-task corpus). Its deterministic policy plays
   exactly ``nn``'s plan; the log's first row validates it.
2. **critic** (:func:`~policies.rl.warm_start.warm_up_critic`): the log std
   is ``--log-std`` and PPO runs ``--critic-steps`` env steps with the actor
   frozen, so that the advantages of the first real update are not noise.
3. **RL**: PPO on the env's reward (normalised by a running std, as for the
   from-scratch agent) for ``--timesteps`` env steps. Every ``--eval-every``
   rollouts the deterministic policy is validated. The final model is saved,
   not the best one, so the curve shows what the budget buys.

Validation: ``--val-tasks`` generated tasks (4-6 facets) of our own seeds from
800,000 (:func:`policies.rl.callbacks.validation_tasks`), played through the
zoo's one rollout loop; never test, family or the xl splits.

Outputs in ``--out``: ``ppo.zip`` (an SB3 zip that
:func:`policies.rl.loading.load_ppo_model` loads without unpickling;
``make_policy("ppo", checkpoint=...)`` plays it), ``ppo_log.csv``
(:mod:`policies.common.curves`; stage ``nn`` at step 0, then ``critic`` and
``RL`` with step = env steps since the start) and ``summary.json`` (the
config, budgets, wall times, steps per second, the validation losses of
``nn`` and of the fine-tuned policy with their paired difference).
``--ship FILE`` also copies the zip and its log (``<stem>_log.csv``) there.

Example (the shipped ``ppo``)::

    python examples/rl_finetune.py --seed 0 --out runs/rl_finetune/seed0 --ship policies/checkpoints/ppo.zip
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dlm_gym import cli


@dataclasses.dataclass
class Config:
    """One run; every field is a command-line flag (``--critic-steps`` for ``critic_steps``)."""

    nn_checkpoint: Path = dataclasses.field(
        default=Path("policies/checkpoints/nn.pt"),
        metadata={"help": "the nn checkpoint the actor starts from", "type": cli.existing_file},
    )
    trainable: str = dataclasses.field(
        default="head",
        metadata={
            "help": "what of nn PPO may change: all, head (the video encoder frozen) or none (only the action "
            "head: linear corrections from nn's plan, latent and step)",
            "choices": ("all", "head", "none"),
        },
    )
    log_std: float = dataclasses.field(
        default=-3.5,
        metadata={"help": "log std of the Gaussian policy, in normalised action units", "type": cli.finite_float},
    )
    critic_steps: int = dataclasses.field(
        default=10_240, metadata={"help": "env steps of critic warm-up (actor frozen)", "type": cli.non_negative_int}
    )
    timesteps: int = dataclasses.field(
        default=163_840, metadata={"help": "env steps of PPO fine-tuning", "type": cli.non_negative_int}
    )
    learning_rate: float = dataclasses.field(
        default=1e-5, metadata={"help": "PPO Adam rate", "type": cli.finite_positive_float}
    )
    clip_range: float = dataclasses.field(
        default=0.1, metadata={"help": "PPO clip range", "type": cli.finite_positive_float}
    )
    n_envs: int = dataclasses.field(
        default=8, metadata={"help": "parallel envs (one process)", "type": cli.positive_int}
    )
    n_steps: int = dataclasses.field(
        default=128, metadata={"help": "env steps per env per rollout", "type": cli.positive_int}
    )
    batch_size: int = dataclasses.field(default=256, metadata={"help": "PPO minibatch", "type": cli.positive_int})
    n_epochs: int = dataclasses.field(default=5, metadata={"help": "PPO epochs per rollout", "type": cli.positive_int})
    eval_every: int = dataclasses.field(
        default=10, metadata={"help": "rollouts between validations", "type": cli.positive_int}
    )
    val_tasks: int = dataclasses.field(
        default=100, metadata={"help": "validation tasks (seeds from 800,000)", "type": cli.positive_int}
    )
    seed: int = dataclasses.field(default=0, metadata={"help": "seeds SB3 and the envs", "type": cli.non_negative_int})
    threads: int = dataclasses.field(default=1, metadata={"help": "torch threads", "type": cli.positive_int})
    out: Path = dataclasses.field(
        default=Path("runs/rl_finetune/run"), metadata={"help": "output folder", "type": cli.output_dir}
    )
    ship: Path | None = dataclasses.field(
        default=None,
        metadata={
            "help": "also copy ppo.zip to this .zip and its log next to it (<stem>_log.csv)",
            "type": cli.output_file,
        },
    )
    progress: bool = dataclasses.field(default=False, metadata={"help": "print a line per validation"})


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Parse ``argv`` into a :class:`Config`; a bad value exits 2 with one line."""
    p = cli.dataclass_parser(Config, __doc__)
    cfg = Config(**vars(p.parse_args(argv)))
    if cfg.batch_size > cfg.n_envs * cfg.n_steps:
        p.error(f"--batch-size ({cfg.batch_size}) must not exceed --n-envs x --n-steps ({cfg.n_envs * cfg.n_steps})")
    if cfg.ship is not None and cfg.ship.suffix != ".zip":
        p.error(f"--ship must name a .zip file, got {cfg.ship}")
    return cfg


def _curve_callback(log, cfg: Config, play: Callable[[], list[float]], start: float, stage: str):
    """Rows of ``stage``: the mean training-episode loss of every rollout, a validation every ``eval_every``."""
    from stable_baselines3.common.callbacks import BaseCallback

    from policies.rl.callbacks import VALIDATION_SPLIT

    class Curve(BaseCallback):
        """A row when a rollout starts, for the model that the updates so far made (SB3 updates after
        ``on_rollout_end``, so a row written there would describe the model before its last update), and
        one when training ends; ``objective`` = the training episodes of the rollout just collected."""

        def __init__(self) -> None:
            super().__init__()
            self.losses: list[float] = []
            self.rollouts = 0

        def _on_step(self) -> bool:
            for done, info in zip(self.locals["dones"], self.locals["infos"]):
                if done and "object_trajectory_loss" in info:
                    self.losses.append(float(info["object_trajectory_loss"]))
            return True

        def _on_rollout_start(self) -> None:
            if self.rollouts:
                self.row(validate=self.rollouts % cfg.eval_every == 0)

        def _on_rollout_end(self) -> None:
            self.rollouts += 1

        def _on_training_end(self) -> None:
            self.row(validate=True)

        def row(self, validate: bool) -> None:
            losses, self.losses = self.losses, []
            objective = float(np.mean(losses)) if losses else None
            executed = {}
            if validate:
                val = play()
                executed[VALIDATION_SPLIT] = (float(np.mean(val)), float(np.std(val)))
                if cfg.progress:
                    print(f"{stage} step {self.num_timesteps:>7d}  validation {np.mean(val):.2f}", flush=True)
            log.write(stage, self.num_timesteps, time.perf_counter() - start, objective, executed)

    return Curve()


def run(cfg: Config) -> dict:
    """Start from nn, warm up the critic, fine-tune; returns the summary (also written to ``OUT/summary.json``)."""
    import shutil

    import torch

    import policies
    from dlm_gym.atomic import atomic_write
    from policies.common.curves import CurveLog
    from policies.common.rollout import evaluate
    from policies.common.statistics import mean_ci, paired_difference
    from policies.rl.agent import SB3Agent
    from policies.rl.callbacks import VALIDATION_SPLIT, validation_tasks
    from policies.rl.train import UNSHIPPED_STATE, make_train_env
    from policies.rl.warm_start import nn_initialised_ppo, warm_up_critic

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = validation_tasks(cfg.val_tasks)
    noop = [r.loss for r in evaluate(policies.make_policy("noop"), tasks, progress=False)]

    env = make_train_env(cfg.n_envs, cfg.seed, normalize_reward=True, gamma=1.0)
    model = nn_initialised_ppo(
        env,
        cfg.nn_checkpoint,
        log_std_init=cfg.log_std,
        trainable=cfg.trainable,
        n_steps=cfg.n_steps,
        batch_size=cfg.batch_size,
        n_epochs=cfg.n_epochs,
        gamma=1.0,
        gae_lambda=0.95,
        learning_rate=cfg.learning_rate,
        clip_range=cfg.clip_range,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
        seed=cfg.seed,
    )
    agent = SB3Agent(model)

    def validate() -> list[float]:
        return [r.loss for r in evaluate(agent, tasks, progress=False)]

    start = time.perf_counter()
    log = CurveLog(out / "ppo_log.csv", [VALIDATION_SPLIT])
    stages: dict[str, dict] = {}
    try:
        initial = validate()
        log.write("nn", 0, time.perf_counter() - start, None, {VALIDATION_SPLIT: (np.mean(initial), np.std(initial))})
        if cfg.progress:
            print(f"nn validation {np.mean(initial):.2f} (noop {np.mean(noop):.2f})", flush=True)

        t = time.perf_counter()
        warm_up_critic(model, cfg.critic_steps, _curve_callback(log, cfg, validate, start, "critic"))
        stages["critic"] = {"steps": int(model.num_timesteps), "seconds": time.perf_counter() - t}

        t, first = time.perf_counter(), int(model.num_timesteps)
        if cfg.timesteps:
            model.learn(
                total_timesteps=cfg.timesteps,
                callback=_curve_callback(log, cfg, validate, start, "RL"),
                reset_num_timesteps=False,
            )
        seconds, steps = time.perf_counter() - t, int(model.num_timesteps) - first
        final = validate()
        stages["RL"] = {"steps": steps, "seconds": seconds, "steps_per_second": steps / max(seconds, 1e-9)}
        model.policy.optimizer.state.clear()  # Adam's moments: twice the weights, not needed to act
        with atomic_write(out / "ppo.zip") as handle:
            model.save(handle, exclude=list(UNSHIPPED_STATE))
        log.publish()
    finally:
        log.close()
        env.close()

    summary = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()},
        "stages": stages,
        "wall_seconds": time.perf_counter() - start,
        "validation_tasks": len(tasks),
        "noop_validation": mean_ci(noop).to_json(),
        "nn_validation": mean_ci(initial).to_json(),
        "ppo_validation": mean_ci(final).to_json(),
        "nn_minus_noop": paired_difference(initial, noop).to_json(),
        "ppo_minus_noop": paired_difference(final, noop).to_json(),
        "ppo_minus_nn": paired_difference(final, initial).to_json(),
        "per_task": {"nn": initial, "ppo": final, "noop": noop},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if cfg.ship is not None:
        ship = Path(cfg.ship)
        ship.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "ppo.zip", ship)
        shutil.copyfile(out / "ppo_log.csv", ship.with_name(ship.stem + "_log.csv"))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    from policies.common.errors import CheckpointError

    cfg = parse_config(argv)
    try:
        summary = run(cfg)
    except (*cli.USER_ERRORS, CheckpointError, OSError) as exc:
        return cli.fail(exc)
    nn, ppo, noop = (summary["per_task"][k] for k in ("nn", "ppo", "noop"))
    d = summary["ppo_minus_nn"]
    print(
        f"validation: noop {np.mean(noop):.2f}, nn {np.mean(nn):.2f}, ppo {np.mean(ppo):.2f}; "
        f"ppo - nn {d['mean']:.2f} [{d['ci_low']:.2f}, {d['ci_high']:.2f}]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
