"""PPO (stable-baselines3) on ``VideoPlanarManip-v0``: the zoo's closed-loop pixel agents ``ppo`` and ``ppo_scratch``.

Both see the environment through the wrapper that SB3 users are told to use,
:class:`dlm_gym.wrappers.StackVideoChannels`: ``image`` (the 5 target video
frames and the current frame stacked on the channel axis, ``(50, 50, 18)``
uint8) and ``step`` (the keyframe index). They act step by step (closed
loop), one ``(2, 4)`` normalised action per keyframe, with SB3's
``MultiInputPolicy``.

- ``ppo``: PPO that starts from knowledge. Its actor starts as the ``nn``
  policy (behaviour cloning of the oracle on the corpus;
  :class:`~policies.rl.extractors.NNPlanExtractor`,
  :mod:`policies.rl.warm_start`), its critic is warmed up with the actor
  frozen, then PPO fine-tunes it on the env's reward
  (``examples/rl_finetune.py``; rl-zoo file ``policies/rl/hyperparams/ppo.yml``).
- ``ppo_scratch``: PPO from scratch with :class:`VideoCNN`
  (:func:`train_ppo`; ``policies/rl/hyperparams/ppo_scratch.yml``). An honest
  negative result: after 196,608 env steps (17.3 min on 2 shared CPU cores)
  the deterministic policy lifts both fingers above every object and so plays
  exactly like ``noop`` (``policies/checkpoints/ppo_scratch_log.csv``). It
  learned to stop hurting (random fingers are about 8x worse than doing
  nothing) but not to help.

The pipeline, one module per step:

- :mod:`policies.rl.extractors`: :class:`VideoCNN` and :class:`NNPlanExtractor`;
- :mod:`policies.rl.zoo_hyperparams`: :data:`PPO_HYPERPARAMS` (``ppo_scratch``),
  the rl-zoo files and their expressions and schedules, read without ``eval``;
- :mod:`policies.rl.train`: :func:`make_train_env` and :func:`train_ppo`;
- :mod:`policies.rl.warm_start`: the nn-initialised model and the critic warm-up;
- :mod:`policies.rl.callbacks`: the learning curve, validated through the
  zoo's one rollout loop;
- :mod:`policies.rl.loading`: :func:`load_ppo_model`, which never unpickles;
- :mod:`policies.rl.agent`: an SB3 model acting as a zoo policy;
- this module: :class:`PPOPolicy` and :class:`PPOScratchPolicy`, and the names above.

Train::

    python examples/rl_finetune.py --seed 0 --out runs/rl_finetune/seed0 --ship policies/checkpoints/ppo.zip
    python examples/train.py --policy ppo_scratch              # the shipped ppo_scratch

Use::

    policy = policies.make_policy("ppo")                       # loads policies/checkpoints/ppo.zip
    policies.evaluate(policy, tasks)
"""

from __future__ import annotations

import os
from pathlib import Path

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from policies.common.errors import CheckpointError
from policies.common.registry import register_policy
from policies.rl.agent import SB3Agent
from policies.rl.extractors import NNPlanExtractor, VideoCNN
from policies.rl.loading import (
    DEFAULT_CHECKPOINT,
    REGENERATE_COMMAND,
    SCRATCH_CHECKPOINT,
    SCRATCH_REGENERATE_COMMAND,
    load_ppo_model,
)
from policies.rl.train import make_train_env, train_ppo
from policies.rl.zoo_hyperparams import ENV_ID, HYPERPARAMS_FILE, PPO_HYPERPARAMS, LinearSchedule, policy_kwargs

__all__ = [
    "ENV_ID",
    "DEFAULT_CHECKPOINT",
    "HYPERPARAMS_FILE",
    "PPO_HYPERPARAMS",
    "REGENERATE_COMMAND",
    "SCRATCH_CHECKPOINT",
    "SCRATCH_REGENERATE_COMMAND",
    "CheckpointError",
    "VideoCNN",
    "NNPlanExtractor",
    "PPOPolicy",
    "PPOScratchPolicy",
    "train_ppo",
    "load_ppo_model",
    "make_train_env",
    "policy_kwargs",
]

# Names that pickles in saved checkpoints refer to, from when everything lived in
# this module: the shipped zip stores its learning-rate schedule as
# ``policies.rl.ppo._LinearSchedule``, and a plain ``PPO.load`` (rl_zoo3's enjoy,
# say) must still find it.
_LinearSchedule = LinearSchedule


@register_policy("ppo")
class PPOPolicy(SB3Agent):
    """A trained PPO agent acting closed loop: one deterministic SB3 action per observation.

    ``make_policy("ppo")`` loads :data:`DEFAULT_CHECKPOINT` (started from ``nn``, fine-tuned by PPO);
    pass ``checkpoint=PATH`` for another SB3 PPO zip (see :func:`load_ppo_model` for which load).
    Observations are wrapped exactly as in training (:class:`dlm_gym.wrappers.StackVideoChannels`).

    Raises:
        CheckpointError: if the checkpoint is missing, damaged or holds a network the loader
            does not rebuild (see :func:`load_ppo_model`).
    """

    name = "ppo"
    default_checkpoint = DEFAULT_CHECKPOINT

    def __init__(
        self,
        config: SceneConfig = DEFAULT_CONFIG,
        checkpoint: str | os.PathLike | None = None,
        deterministic: bool = True,
    ) -> None:
        self.checkpoint = Path(checkpoint) if checkpoint is not None else self.default_checkpoint
        super().__init__(load_ppo_model(self.checkpoint, config), config, deterministic)


@register_policy("ppo_scratch")
class PPOScratchPolicy(PPOPolicy):
    """PPO trained from scratch (``make_policy("ppo_scratch")`` loads :data:`SCRATCH_CHECKPOINT`)."""

    name = "ppo_scratch"
    default_checkpoint = SCRATCH_CHECKPOINT
