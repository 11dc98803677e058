"""PPO that starts from knowledge: the ``nn`` policy (behaviour cloning of the oracle) as the initial actor.

From scratch, PPO on pixels learns to keep its fingers away (``ppo_scratch``).
The shipped ``ppo`` starts instead from ``nn``, the zoo's behaviour-cloning
baseline: :class:`policies.dlm.models.NNNet` trained with ``L_NN`` (squared
error against the oracle's normalised commands) on the oracle-labelled
corpus, the same data and the same pre-training as the paper's pipeline.
Then it is fine-tuned with PPO on the env's reward, the RL counterpart of
DLM's L_sim stage.

- :func:`nn_initialised_ppo` builds the SB3 model: ``MultiInputPolicy`` on
  :class:`~dlm_gym.wrappers.StackVideoChannels` with
  :class:`~policies.rl.extractors.NNPlanExtractor` (``nn``'s planned action of
  the current keyframe; then, detached, the plan, ``nn``'s latent and the step
  for the critic), no hidden policy layer, and an action head that copies the
  planned action: the initial deterministic policy *is* ``nn``. The critic
  reads only detached features, so the value loss never moves the actor.
  ``trainable`` says what PPO may change (by default ``nn``'s MLP head and the
  action head; the video encoder stays frozen).
- :func:`warm_up_critic` fits the critic with the actor frozen. PPO's first
  updates follow the critic's advantages; from an untrained critic they are
  noise, and the first rollouts would undo what ``nn`` knows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from policies.common.errors import CheckpointError
from policies.rl.extractors import NNPlanExtractor

__all__ = ["nn_policy_kwargs", "nn_initialised_ppo", "actor_parameters", "warm_up_critic"]


def nn_policy_kwargs(latent_dim: int, lstm_layers: int, log_std_init: float, trainable: str = "all") -> dict[str, Any]:
    """The ``policy_kwargs`` of an nn-initialised PPO (as objects; the zoo file writes the same as an expression)."""
    return {
        "features_extractor_class": NNPlanExtractor,
        "features_extractor_kwargs": {"latent_dim": latent_dim, "lstm_layers": lstm_layers, "trainable": trainable},
        "net_arch": {"pi": [], "vf": [128]},
        "log_std_init": log_std_init,
    }


def nn_initialised_ppo(
    env: VecEnv,
    nn_checkpoint: str | os.PathLike,
    *,
    log_std_init: float,
    trainable: str = "all",
    config: SceneConfig = DEFAULT_CONFIG,
    **ppo_kwargs: Any,
) -> PPO:
    """A PPO whose deterministic policy plays exactly the ``nn`` checkpoint's plan, ready to fine-tune.

    The plan network of the (shared) extractor gets the checkpoint's
    weights; the action head is ``[I 0]`` (the first ``N * 4``
    features, the planned action) with zero bias; the critic's head is SB3's
    fresh one. ``ppo_kwargs`` go to ``PPO(...)`` (``n_steps``, ``learning_rate``...).

    Raises:
        CheckpointError: if the checkpoint is missing, damaged or not an ``nn``-kind network.
    """
    from policies.dlm.models import NNNet, load_checkpoint

    net, _ = load_checkpoint(nn_checkpoint, config)
    if not isinstance(net, NNNet):
        raise CheckpointError(
            f"{nn_checkpoint} holds a {type(net).__name__}, not the NNNet of an nn or nnm policy; "
            "give --nn-checkpoint an nn checkpoint (policies/checkpoints/nn.pt)"
        )
    kwargs = nn_policy_kwargs(net.hparams["latent_dim"], net.hparams["lstm_layers"], log_std_init, trainable)
    model = PPO("MultiInputPolicy", env, policy_kwargs=kwargs, device="cpu", **ppo_kwargs)
    policy = model.policy
    state = net.state_dict()
    extractor = policy.features_extractor
    assert isinstance(extractor, NNPlanExtractor)
    extractor.plan.load_state_dict(state)
    n_act = int(np.prod(policy.action_space.shape))
    with th.no_grad():
        policy.action_net.weight.zero_()
        policy.action_net.weight[:, :n_act] = th.eye(n_act)
        policy.action_net.bias.zero_()
    return model


def actor_parameters(model: PPO) -> list[th.nn.Parameter]:
    """The parameters of the Gaussian policy: the actor's extractor, its MLP, the action head and the log std."""
    policy = model.policy
    modules: list[th.nn.Module] = [policy.pi_features_extractor, policy.mlp_extractor.policy_net, policy.action_net]
    seen: dict[int, th.nn.Parameter] = {}
    for module in modules:
        for p in module.parameters():
            seen.setdefault(id(p), p)
    seen.setdefault(id(policy.log_std), policy.log_std)
    return list(seen.values())


def warm_up_critic(model: PPO, timesteps: int, callback: BaseCallback | Sequence[BaseCallback] | None = None) -> None:
    """Run PPO for ``timesteps`` env steps with the actor frozen: only the critic learns.

    Frozen parameters take no gradient, so Adam leaves them alone. The steps
    count in ``model.num_timesteps``; fine-tuning goes on with
    ``model.learn(..., reset_num_timesteps=False)``.
    """
    if timesteps <= 0:
        return
    params = actor_parameters(model)
    for p in params:
        p.requires_grad_(False)
    try:
        model.learn(total_timesteps=timesteps, callback=list(callback) if isinstance(callback, Sequence) else callback)
    finally:
        for p in params:
            p.requires_grad_(True)
