"""The dlm-gym policy zoo.

Every policy follows :class:`policies.base.Policy` (``reset(obs, info)``, then
``act(obs)``), is built by name with :func:`make_policy`, and is judged by the
one rollout loop, :func:`policies.rollout.evaluate`::

    import policies
    policy = policies.make_policy("noop")
    results = policies.evaluate(policy, tasks)

A checkpoint that is missing, damaged or of the wrong kind raises
:class:`CheckpointError` (one class for every policy), naming the file and the
command that rebuilds it.
"""

from policies.base import OpenLoopPolicy, Policy
from policies.models import CheckpointError
from policies.registry import UnknownPolicyError, available_policies, make_policy, register_policy
from policies.rollout import EpisodeResult, evaluate, rollout, summarize

# Importing the modules registers their policies.
from policies import baselines, learned, miqp  # noqa: E402,F401  isort: skip
from policies.rl import ppo  # noqa: E402,F401  isort: skip

__all__ = [
    "Policy",
    "OpenLoopPolicy",
    "make_policy",
    "available_policies",
    "register_policy",
    "UnknownPolicyError",
    "CheckpointError",
    "rollout",
    "evaluate",
    "summarize",
    "EpisodeResult",
]
