"""dlm-gym: visual non-prehensile planar manipulation (DLM, CoRL 2021) as a Gymnasium benchmark.

Importing the package registers ``VideoPlanarManip-v0``, also as ``dlm_gym/VideoPlanarManip-v0``::

    import gymnasium as gym
    import dlm_gym

    env = gym.make("VideoPlanarManip-v0")
"""

from gymnasium.envs.registration import register, registry

from dlm_gym.actions import action_to_command, command_to_action
from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.geometry import InvalidPolygonError
from dlm_gym.metrics import object_trajectory_loss
from dlm_gym.task import Task, sample_task

__version__ = "0.2.1"
PHYSICS_VERSION = "0.2"
"""Bumped whenever the scene's physics changes results (see the env's Version History)."""

__all__ = [
    "Task",
    "sample_task",
    "SceneConfig",
    "DEFAULT_CONFIG",
    "InvalidPolygonError",
    "action_to_command",
    "command_to_action",
    "object_trajectory_loss",
    "load_split",
]


def load_split(name: str, *args, **kwargs):
    """Load a shipped (or given) dataset split; see :func:`dlm_gym.datasets.load_split`."""
    from dlm_gym.datasets import load_split as _load_split

    return _load_split(name, *args, **kwargs)


for _env_id in ("VideoPlanarManip-v0", "dlm_gym/VideoPlanarManip-v0"):  # plain, and namespaced like gym_pusht/PushT-v0
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point="dlm_gym.envs.video_planar_manip:VideoPlanarManipEnv",
            # no TimeLimit: the env terminates after its T keyframes itself, and a limit equal to the horizon
            # would also flag that last step as truncated
        )
del _env_id
