"""Reinforcement-learning baselines of the zoo, trained with stable-baselines3.

- :mod:`policies.rl.ppo`: PPO on ``VideoPlanarManip-v0`` through
  :class:`dlm_gym.wrappers.StackVideoChannels`, registered as ``"ppo"`` (started
  from ``nn``) and ``"ppo_scratch"``; it re-exports the names of the modules
  below, in pipeline order:
- :mod:`policies.rl.extractors`: the ``VideoCNN`` and ``NNPlanExtractor`` feature extractors;
- :mod:`policies.rl.zoo_hyperparams`: ``ppo_scratch``'s hyperparameters, its rl-zoo file and
  its expressions and schedules, read without ``eval``;
- :mod:`policies.rl.train`: the training env and ``train_ppo``;
- :mod:`policies.rl.callbacks`: the learning curve (:mod:`policies.common.curves`),
  validated through the zoo's one rollout loop;
- :mod:`policies.rl.loading`: the checkpoint loader, which never unpickles;
- :mod:`policies.rl.agent`: an SB3 model acting as a zoo policy;
- :mod:`policies.rl.warm_start`: PPO initialised from ``nn`` (behaviour cloning of
  the oracle) and the critic warm-up, where the shipped ``ppo``'s fine-tuning starts;
- :mod:`policies.rl.state_agent`: state agents acting through their wrappers, and
  the privileged ``"ppo_state"``.

The rl-baselines3-zoo hyperparameter files of the shipped agents live in
``policies/rl/hyperparams/`` (``ppo.yml``, ``ppo_state.yml``, ``ppo_scratch.yml``).
Importing this package imports stable-baselines3 and registers its policies;
the zoo's registry imports it only when an RL policy is asked for (``import
policies`` does not).
"""

from policies.rl import ppo, state_agent  # noqa: F401  (register ppo and ppo_state)

__all__ = ["ppo", "state_agent"]
