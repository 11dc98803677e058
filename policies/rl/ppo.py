"""PPO (stable-baselines3) on ``VideoPlanarManip-v0``: the zoo's closed-loop RL baseline, registered as ``"ppo"``.

The agent sees the environment through the wrapper that SB3 users are told to
use, :class:`dlm_gym.wrappers.StackVideoChannels`: ``image`` (the 5 target
video frames and the current frame stacked on the channel axis,
``(50, 50, 18)`` uint8) and ``step`` (the keyframe index). It acts step by step
(closed loop), one ``(2, 4)`` normalised action per keyframe.

Network: SB3's ``MultiInputPolicy`` with :class:`VideoCNN` as the feature
extractor (a small stride-2 CNN with coordinate channels, shared by actor and
critic) instead of SB3's default NatureCNN; see :class:`VideoCNN` for why.

The pipeline, one module per step:

- :mod:`policies.rl.extractors`: :class:`VideoCNN`;
- :mod:`policies.rl.zoo_hyperparams`: :data:`PPO_HYPERPARAMS`, the rl-zoo file and
  its expressions and schedules, read without ``eval``;
- :mod:`policies.rl.train`: :func:`make_train_env` and :func:`train_ppo`;
- :mod:`policies.rl.callbacks`: the learning curve, validated through the
  zoo's one rollout loop;
- :mod:`policies.rl.loading`: :func:`load_ppo_model`, which never unpickles;
- :mod:`policies.rl.agent`: an SB3 model acting as a zoo policy;
- this module: :class:`PPOPolicy`, the ``"ppo"`` policy, and the names above.

Train::

    python examples/train.py --policy ppo                      # the shipped checkpoint
    python -m rl_zoo3.train --algo ppo --env VideoPlanarManip-v0 --gym-packages dlm_gym \\
        -conf policies/rl/hyperparams/ppo.yml -f logs/          # the same hyperparameters via the zoo

Use::

    policy = policies.make_policy("ppo")                       # loads policies/checkpoints/ppo.zip
    policies.evaluate(policy, tasks)

Shipped result (an honest negative one): after 196,608 env steps (39,320
episodes, 17.3 min on 2 shared CPU cores, 1 torch thread) the deterministic
policy lifts both fingers to the top of the view, above every object, and so
plays exactly like ``noop`` (same loss on every task; see
``policies/checkpoints/ppo_log.csv``). It learned to stop hurting (random
fingers are about 8x worse than doing nothing) but not to help. The paper's
PPO baseline is likewise far behind the model-based methods.
"""

from __future__ import annotations

import os
from pathlib import Path

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from policies.common.errors import CheckpointError
from policies.common.registry import register_policy
from policies.rl.agent import SB3Agent
from policies.rl.extractors import VideoCNN
from policies.rl.loading import DEFAULT_CHECKPOINT, REGENERATE_COMMAND, load_ppo_model
from policies.rl.train import make_train_env, train_ppo
from policies.rl.zoo_hyperparams import ENV_ID, HYPERPARAMS_FILE, PPO_HYPERPARAMS, LinearSchedule, policy_kwargs

__all__ = [
    "ENV_ID",
    "DEFAULT_CHECKPOINT",
    "HYPERPARAMS_FILE",
    "PPO_HYPERPARAMS",
    "REGENERATE_COMMAND",
    "CheckpointError",
    "VideoCNN",
    "PPOPolicy",
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
    """The trained PPO agent, acting closed loop: one deterministic SB3 action per observation.

    ``make_policy("ppo")`` loads :data:`DEFAULT_CHECKPOINT`; pass
    ``checkpoint=PATH`` for another one. Observations are wrapped exactly as in
    training (:class:`dlm_gym.wrappers.StackVideoChannels`).

    Raises:
        CheckpointError: if the checkpoint is missing, damaged or holds a network the loader
            does not rebuild (see :func:`load_ppo_model`).
    """

    name = "ppo"

    def __init__(
        self,
        config: SceneConfig = DEFAULT_CONFIG,
        checkpoint: str | os.PathLike | None = None,
        deterministic: bool = True,
    ) -> None:
        self.checkpoint = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
        super().__init__(load_ppo_model(self.checkpoint, config), config, deterministic)
