"""The registry of the policy zoo: names -> factories."""

from __future__ import annotations

import difflib
from typing import Callable, TypeVar

from policies.base import Policy

__all__ = ["register_policy", "make_policy", "available_policies", "UnknownPolicyError"]

_REGISTRY: dict[str, Callable[..., Policy]] = {}
P = TypeVar("P", bound=Callable[..., Policy])


class UnknownPolicyError(KeyError):
    """No policy is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


def register_policy(name: str) -> Callable[[P], P]:
    """Class or factory decorator that registers a policy under ``name``."""

    def decorator(factory: P) -> P:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"a policy named {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorator


def available_policies() -> list[str]:
    """Names of every registered policy, sorted."""
    return sorted(_REGISTRY)


def make_policy(name: str, **kwargs) -> Policy:
    """Build the policy registered as ``name`` (extra keyword arguments go to its factory).

    Raises:
        UnknownPolicyError: naming the available policies and the closest match.
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownPolicyError(
            f"unknown policy {name!r}.{hint} Available: {', '.join(available_policies())}"
        ) from None
    return factory(**kwargs)
