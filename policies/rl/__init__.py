"""Reinforcement-learning baselines of the zoo, trained with stable-baselines3.

- :mod:`policies.rl.ppo`: PPO on ``VideoPlanarManip-v0`` through
  :class:`dlm_gym.wrappers.StackVideoChannels`, registered as ``"ppo"``.

The rl-baselines3-zoo hyperparameter file for the same run lives in
``policies/rl/hyperparams/ppo.yml``. Importing :mod:`policies.rl.ppo` imports
stable-baselines3; importing this package alone does not.
"""

__all__ = ["ppo"]
