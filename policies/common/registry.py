"""The registry of the policy zoo: names -> factories, and a user's policy class by ``module:Class``.

The registry is the one list of policy names: each family module registers its
policies with :func:`register_policy` when it is imported. Families are imported
lazily, so ``import policies`` stays light (no stable-baselines3, no cvxpy):
:func:`make_policy` imports families in :data:`FAMILIES` order until the name is
registered, and :func:`available_policies` imports them all.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from policies.common.base import Policy
from policies.common.errors import PolicySpecError, UnknownPolicyError

__all__ = [
    "register_policy",
    "make_policy",
    "available_policies",
    "alias_target",
    "UnknownPolicyError",
    "PolicySpecError",
    "is_policy_spec",
    "load_policy_spec",
    "make_policy_or_spec",
]

FAMILIES = ("policies.baselines", "policies.oracle", "policies.learned", "policies.rl")
"""The modules that register the zoo's policy families, cheapest import first."""

_REGISTRY: dict[str, Callable[..., Policy]] = {}
_ALIASES: dict[str, str] = {}
P = TypeVar("P", bound=Callable[..., Policy])


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


def _import_families(until: str | None = None) -> None:
    """Import the policy families (all of them, or until ``until`` is registered)."""
    for family in FAMILIES:
        if until is not None and until in _REGISTRY:
            return
        importlib.import_module(family)


def available_policies(*, aliases: bool = True) -> list[str]:
    """Names of every registered policy, sorted (without the aliases when ``aliases`` is False)."""
    _import_families()
    return sorted(n for n in _REGISTRY if aliases or n not in _ALIASES)


def alias_target(name: str) -> str | None:
    """The policy that ``name`` is an alias of, or None."""
    _import_families(until=name)
    return _ALIASES.get(name)


def make_policy(name: str, **kwargs) -> Policy:
    """Build the policy registered as ``name`` (extra keyword arguments go to its factory).

    Raises:
        UnknownPolicyError: naming the available policies and the closest match.
    """
    _import_families(until=name)
    try:
        factory = _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownPolicyError(
            f"unknown policy {name!r}.{hint} Available: {', '.join(available_policies())}"
        ) from None
    return factory(**kwargs)


# ------------------------------------------------------------ a user's policy
def is_policy_spec(text: str) -> bool:
    """True if ``text`` names a user's policy, ``package.module:Class`` or ``path/to/file.py:Class``, not a zoo name."""
    return ":" in text


def _import_module(target: str):
    """Import ``target``: a ``.py`` file path or a dotted module name (looked up on sys.path, then the working dir)."""
    if target.endswith(".py") or os.sep in target or (os.altsep and os.altsep in target):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no file {target}")
        # one module per file, under a name that cannot shadow a real one; registered so pickling and
        # dataclasses in it work
        name = f"_dlm_user_policy_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {target} as a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # scripts run as files do not see the working dir's packages
        sys.path.append(cwd)
    return importlib.import_module(target)


def load_policy_spec(spec: str, **kwargs: Any):
    """Build a user's policy from ``"package.module:Class"`` or ``"path/to/file.py:Class"``.

    The attribute after the colon is a class (or factory), called with ``kwargs``, or a ready
    object. The policy is any object with callable ``reset(obs, info)`` and ``act(obs)``; it need not
    subclass :class:`~policies.common.base.Policy`, and may lack ``config`` (the default config is used),
    ``name``, ``obs_type`` (``"pixels"``) and ``privileged`` (False).

    Raises:
        PolicySpecError: the spec is malformed, the import fails (any error in the module), the
            attribute is missing, building it fails, or the result lacks ``reset``/``act``; the
            message is one line.
    """
    target, _, attr = spec.rpartition(":")
    if not target or not attr or not attr.replace(".", "_").isidentifier():
        raise PolicySpecError(f"policy spec {spec!r} must be 'package.module:Class' or 'path/to/file.py:Class'")
    try:
        module = _import_module(target)
    except Exception as exc:  # a user's module may fail with anything: report it, not a traceback
        raise PolicySpecError(f"cannot import {target!r} for policy {spec!r}: {type(exc).__name__}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PolicySpecError(f"{target!r} has no attribute {attr!r} (policy {spec!r})")
        obj = getattr(obj, part)
    if isinstance(obj, type) and _missing_methods(obj):
        raise PolicySpecError(
            f"{spec!r} is not a policy: class {obj.__name__} lacks {' and '.join(_missing_methods(obj))} "
            "(a policy needs reset(obs, info) and act(obs))"
        )
    if isinstance(obj, type) or (callable(obj) and _missing_methods(obj)):  # a class, or a factory function
        try:
            obj = obj(**kwargs)
        except Exception as exc:
            raise PolicySpecError(f"cannot build policy {spec!r}: {type(exc).__name__}: {exc}") from exc
    missing = _missing_methods(obj)
    if missing:
        raise PolicySpecError(
            f"{spec!r} is not a policy: it lacks {' and '.join(missing)} (a policy needs reset(obs, info) and act(obs))"
        )
    return obj


def _missing_methods(obj) -> list[str]:
    """Which of the policy protocol's methods ``obj`` (a class or an object) lacks."""
    return [m for m in ("reset", "act") if not callable(getattr(obj, m, None))]


def make_policy_or_spec(name: str, **kwargs: Any):
    """:func:`load_policy_spec` for a ``module:Class`` spec, :func:`make_policy` for a zoo name."""
    return load_policy_spec(name, **kwargs) if is_policy_spec(name) else make_policy(name, **kwargs)
