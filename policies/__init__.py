"""The dlm-gym policy zoo.

Every policy follows :class:`policies.Policy` (``reset(obs, info)``, then
``act(obs)``), is built by name with :func:`make_policy`, and is judged by the
one rollout loop, :func:`policies.evaluate`::

    import policies
    policy = policies.make_policy("noop")
    results = policies.evaluate(policy, "family")   # a split name, a Split, or a list of tasks

Layout, in pipeline order (see ``docs/design.md``):

- :mod:`policies.common`: the zoo's infrastructure (protocol, registry, rollout
  loop, reports, statistics, errors), apart from every policy family;
- :mod:`policies.baselines`, :mod:`policies.oracle` (``miqp``, ``vision_miqp``
  and the derendering they plan on), :mod:`policies.learned` (the Section 5
  networks as zoo members), :mod:`policies.rl` (stable-baselines3 agents): the
  policy families, imported lazily by the registry, so ``import policies``
  imports neither stable-baselines3 nor cvxpy;
- :mod:`policies.dlm`: the DLM machinery: networks -> QP layer -> models ->
  simulator gradients -> losses -> trainer.

Every error the zoo raises for bad input is a :class:`PolicyError`; a
checkpoint that is missing, damaged or of the wrong kind raises
:class:`CheckpointError` (one class for every policy), naming the file and the
command that rebuilds it.
"""

from policies.common.base import OpenLoopPolicy, Policy
from policies.common.errors import (
    CheckpointError,
    CheckpointKindError,
    DerenderError,
    PolicyError,
    PolicySpecError,
    UnknownPolicyError,
)
from policies.common.registry import available_policies, make_policy, register_policy
from policies.common.rollout import EpisodeResult, evaluate, rollout, summarize

__all__ = [
    "Policy",
    "OpenLoopPolicy",
    "make_policy",
    "available_policies",
    "register_policy",
    "PolicyError",
    "UnknownPolicyError",
    "PolicySpecError",
    "CheckpointError",
    "CheckpointKindError",
    "DerenderError",
    "rollout",
    "evaluate",
    "summarize",
    "EpisodeResult",
]
