"""Reinforcement-learning baselines of the zoo, trained with stable-baselines3.

- :mod:`policies.rl.ppo`: PPO on ``VideoPlanarManip-v0`` through
  :class:`dlm_gym.wrappers.StackVideoChannels`, registered as ``"ppo"``; it
  re-exports the names of the modules below, in pipeline order:
- :mod:`policies.rl.extractors`: the ``VideoCNN`` feature extractor;
- :mod:`policies.rl.zoo_hyperparams`: the hyperparameters, the rl-zoo file and
  its expressions and schedules, read without ``eval``;
- :mod:`policies.rl.train`: the training env and ``train_ppo``;
- :mod:`policies.rl.callbacks`: the learning curve (:mod:`policies.common.curves`),
  validated through the zoo's one rollout loop;
- :mod:`policies.rl.loading`: the checkpoint loader, which never unpickles;
- :mod:`policies.rl.agent`: an SB3 model acting as a zoo policy.

The rl-baselines3-zoo hyperparameter file for the same run lives in
``policies/rl/hyperparams/ppo.yml``. Importing this package imports
stable-baselines3 and registers its policies; the zoo's registry imports it
only when an RL policy is asked for (``import policies`` does not).
"""

from policies.rl import ppo  # noqa: F401  (registers ppo)

__all__ = ["ppo"]
