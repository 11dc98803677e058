"""The registry of the policy zoo: names -> factories."""

from __future__ import annotations

import difflib
from typing import Callable, TypeVar

from policies.base import Policy

__all__ = ["register_policy", "make_policy", "available_policies", "alias_target", "UnknownPolicyError"]

_REGISTRY: dict[str, Callable[..., Policy]] = {}
_ALIASES: dict[str, str] = {}
P = TypeVar("P", bound=Callable[..., Policy])


class UnknownPolicyError(KeyError):
    """No policy is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


def register_policy(name: str, *, alias_of: str | None = None) -> Callable[[P], P]:
    """Class or factory decorator that registers a policy under ``name``.

    ``alias_of`` marks ``name`` as another name of that policy (same checkpoint): comparisons of
    ``available_policies(aliases=False)`` then play it once.
    """

    def decorator(factory: P) -> P:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"a policy named {name!r} is already registered")
        _REGISTRY[name] = factory
        if alias_of is not None:
            _ALIASES[name] = alias_of
        return factory

    return decorator


def available_policies(*, aliases: bool = True) -> list[str]:
    """Names of every registered policy, sorted (without the aliases when ``aliases`` is False)."""
    return sorted(n for n in _REGISTRY if aliases or n not in _ALIASES)


def alias_target(name: str) -> str | None:
    """The policy that ``name`` is an alias of, or None."""
    return _ALIASES.get(name)


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
