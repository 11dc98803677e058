"""The zoo's one error hierarchy, exported from :mod:`policies`.

Every error the zoo raises for bad input derives from :class:`PolicyError`, so
``except policies.PolicyError`` catches them all; each also derives from the
built-in exception that names its kind (a ``KeyError`` for an unknown name, a
``ValueError`` for a wrong argument), so older ``except`` clauses keep working.
Messages name the file or argument at fault and what fixes it.
"""

from __future__ import annotations

__all__ = [
    "PolicyError",
    "UnknownPolicyError",
    "PolicySpecError",
    "CheckpointError",
    "CheckpointKindError",
    "DerenderError",
]


class PolicyError(Exception):
    """Base of every error the zoo raises for bad input."""


class UnknownPolicyError(PolicyError, KeyError):
    """No policy is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


class PolicySpecError(PolicyError, ValueError):
    """A ``module:Class`` policy spec that cannot be imported, or names no policy (no ``reset``/``act``)."""


class CheckpointError(PolicyError, RuntimeError):
    """A checkpoint is missing, corrupt or of another kind or version; the message names the file and the fix.

    The one checkpoint error of the whole zoo: the learned policies' ``.pt`` loader and the PPO ``.zip``
    loader both raise it.
    """


class CheckpointKindError(CheckpointError, ValueError):
    """A sound checkpoint of a policy that cannot serve as the one requested (an NN checkpoint run as dlm).

    Also a ValueError: it is a wrong argument, and ``train_policy`` always raised ValueError for it.
    """


class DerenderError(PolicyError, ValueError):
    """The video shows no object (or one the estimate cannot turn into a valid task)."""
