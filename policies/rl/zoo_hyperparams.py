"""The PPO hyperparameters in rl-baselines3-zoo's vocabulary, and how to read them without ``eval``.

:data:`PPO_HYPERPARAMS` is the run of the shipped checkpoint;
``policies/rl/hyperparams/ppo_scratch.yml`` (:data:`HYPERPARAMS_FILE`) holds the same
values for ``python -m rl_zoo3.train`` (:func:`read_zoo_file` reads it back; a
test checks that both agree).

rl_zoo3 turns some values into Python objects with ``eval``: ``policy_kwargs``
and ``normalize`` are Python expressions such as ``"dict(norm_obs=False,
norm_reward=True)"``, and a schedule such as ``"lin_3e-4"`` is split at ``_``.
The file keeps those forms, so it stays an rl-zoo file, but this module reads
them with small explicit parsers (:func:`parse_expression`,
:func:`parse_schedule`) that accept only the forms the file uses and never
run code.
"""

from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_ID",
    "DEFAULT_TIMESTEPS",
    "DEFAULT_SEED",
    "HYPERPARAMS_FILE",
    "PPO_HYPERPARAMS",
    "LinearSchedule",
    "parse_schedule",
    "parse_expression",
    "policy_kwargs",
    "normalize_kwargs",
    "algo_kwargs",
    "read_zoo_file",
]

ENV_ID = "VideoPlanarManip-v0"
"""The Gymnasium id PPO trains on, and the key of the zoo file."""
DEFAULT_TIMESTEPS = 196_608
DEFAULT_SEED = 0
HYPERPARAMS_FILE = Path(__file__).resolve().parent / "hyperparams" / "ppo_scratch.yml"
"""The rl-baselines3-zoo hyperparameter file; it must agree with :data:`PPO_HYPERPARAMS` (a test checks)."""

# The network kwargs, exactly as the zoo file writes them: rl_zoo3 evaluates this
# string with ``importlib`` in scope; :func:`policy_kwargs` parses it instead.
_POLICY_KWARGS_EXPR = (
    "dict(features_extractor_class=importlib.import_module('policies.rl.ppo').VideoCNN, "
    "features_extractor_kwargs=dict(features_dim=256), "
    "net_arch=dict(pi=[128], vf=[128]), log_std_init=-1.0)"
)

PPO_HYPERPARAMS: dict[str, Any] = {
    "n_envs": 8,
    "n_timesteps": float(DEFAULT_TIMESTEPS),
    "policy": "MultiInputPolicy",
    "env_wrapper": "dlm_gym.wrappers.StackVideoChannels",
    "normalize": "dict(norm_obs=False, norm_reward=True)",
    "n_steps": 128,
    "batch_size": 256,
    "n_epochs": 5,
    "gamma": 1.0,
    "gae_lambda": 0.95,
    "learning_rate": "lin_3e-4",
    "clip_range": 0.2,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "policy_kwargs": _POLICY_KWARGS_EXPR,
}
"""The hyperparameters of the shipped checkpoint, in rl-baselines3-zoo's vocabulary.

``policies/rl/hyperparams/ppo_scratch.yml`` holds the same values under the key
``VideoPlanarManip-v0``. Reasons:

- ``n_envs=8, n_steps=128``: 1024 transitions (about 205 five-step episodes)
  per update, so each update sees many tasks; the env is cheap, the CNN is not.
- ``batch_size=256, n_epochs=5``: fewer passes than SB3's default 10, because
  fresh samples cost less than gradient steps here (the network dominates).
- ``gamma=1.0``: episodes last 5 steps and the return is exactly minus the
  object-trajectory loss; discounting would only bias the objective.
- ``normalize`` (reward only): per-step rewards range from 0 to about -1000 cm^2
  (random fingers can fling the object); VecNormalize scales them to unit
  variance and clips at 10 std, which keeps the value loss sane. Observations
  are images and are only divided by 255 (SB3's default).
- ``learning_rate=lin_3e-4``: Adam at 3e-4, decayed linearly to 0 to settle the
  final policy.
- ``log_std_init=-1.0``: initial action std 0.37 instead of 1. Uniformly random
  fingers are 8x worse than doing nothing (they poke into the object), so a
  narrower start wastes fewer samples.
- ``net_arch`` 128 per head on top of the 256 CNN features plus the one-hot step.
"""


# ---------------------------------------------------------------- schedules
class LinearSchedule:
    """``progress_remaining * initial`` (progress_remaining goes from 1 to 0), as rl_zoo3's ``linear_schedule``.

    A class rather than a closure: SB3 pickles the schedule into the checkpoint,
    and a class is pickled by reference, not as code.
    """

    def __init__(self, initial: float) -> None:
        self.initial = initial

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.initial

    def __repr__(self) -> str:
        return f"LinearSchedule({self.initial!r})"


def parse_schedule(value: float | int | str) -> float | LinearSchedule:
    """A number (constant) or rl_zoo3's ``"lin_<initial>"`` (linear decay from ``initial`` to 0).

    Raises:
        ValueError: for any other string (rl_zoo3 would read ``"exp_1e-3"`` as linear too;
            here it is an error rather than a silent surprise).
    """
    if isinstance(value, str):
        kind, _, initial = value.partition("_")
        if kind != "lin" or not initial:
            raise ValueError(f"unknown schedule {value!r}; use a number or 'lin_<initial value>'")
        try:
            return LinearSchedule(float(initial))
        except ValueError:
            raise ValueError(f"schedule {value!r}: {initial!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"a schedule must be a number or 'lin_<initial value>', got {value!r}")
    return float(value)


# ---------------------------------------------------------------- expressions
#: Modules whose classes an expression may name through ``importlib.import_module('<module>')``:
#: the zoo's own RL code and the libraries SB3 networks are built from, nothing that runs a shell.
_IMPORTABLE = ("policies.rl", "stable_baselines3", "torch.nn")

_FORMS = (
    "numbers, strings, True/False/None, lists, tuples, dict(key=value, ...), "
    "importlib.import_module('<module>').<Class> and nn.<Class>"
)


def parse_expression(text: str) -> Any:
    """The value of an rl-zoo Python expression such as ``"dict(net_arch=dict(pi=[128]), log_std_init=-1.0)"``.

    Only the forms rl-zoo hyperparameter files use for ``policy_kwargs`` and
    ``normalize`` are understood: literals (numbers, strings, ``True``,
    ``False``, ``None``, lists, tuples), keyword-only ``dict(...)`` calls,
    classes named as ``importlib.import_module('<module>').<Class>`` (modules
    under ``policies.rl``, ``stable_baselines3`` or ``torch.nn``) and
    ``nn.<Class>`` (``torch.nn``, which rl_zoo3 has in scope). Nothing is
    evaluated: anything else raises.

    Raises:
        ValueError: naming the part of ``text`` that is not one of those forms.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"{text!r} is not a Python expression ({exc.msg})") from None
    return _value(tree.body, text)


def _value(node: ast.expr, text: str) -> Any:
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (bool, int, float, str))):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
    ):
        number = node.operand.value
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            return -number if isinstance(node.op, ast.USub) else number
    if isinstance(node, ast.List):
        return [_value(item, text) for item in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_value(item, text) for item in node.elts)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "dict"
        and not node.args
        and all(kw.arg is not None for kw in node.keywords)
    ):
        return {kw.arg: _value(kw.value, text) for kw in node.keywords}
    if isinstance(node, ast.Attribute):
        module = _module_of(node.value)
        if module is not None:
            return _import_class(module, node.attr, text)
    raise ValueError(f"{ast.unparse(node)!r} in {text!r} is not understood; expressions may use only {_FORMS}")


def _module_of(node: ast.expr) -> str | None:
    """The module named by ``importlib.import_module('<module>')`` or ``nn``; None for anything else."""
    if isinstance(node, ast.Name) and node.id == "nn":
        return "torch.nn"
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "importlib"
        and node.func.attr == "import_module"
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def _import_class(module: str, name: str, text: str) -> type:
    if not any(module == root or module.startswith(root + ".") for root in _IMPORTABLE):
        raise ValueError(f"{text!r} imports {module!r}; only modules under {', '.join(_IMPORTABLE)} may be named")
    value = getattr(importlib.import_module(module), name, None)
    if not isinstance(value, type):
        raise ValueError(f"{text!r}: {module}.{name} is not a class")
    return value


# ---------------------------------------------------------------- what SB3 gets
def policy_kwargs(hyperparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``policy_kwargs`` of ``hyperparams`` (default :data:`PPO_HYPERPARAMS`) as Python objects."""
    hp = PPO_HYPERPARAMS if hyperparams is None else hyperparams
    value = hp.get("policy_kwargs", {})
    kwargs = parse_expression(value) if isinstance(value, str) else dict(value)
    if not isinstance(kwargs, dict):
        raise ValueError(f"policy_kwargs must be a dict(...) expression, got {value!r}")
    return kwargs


def normalize_kwargs(value: str | dict[str, Any] | bool | None) -> dict[str, Any] | None:
    """VecNormalize's keyword arguments from the zoo's ``normalize`` entry; None when it is off.

    Raises:
        ValueError: for ``normalize: true`` (observation normalisation, which the training
            env does not do: observations are images) and for anything but a ``dict(...)``.
    """
    if value is None or value is False:
        return None
    parsed = parse_expression(value) if isinstance(value, str) else value
    if not isinstance(parsed, dict):
        raise ValueError(
            f"normalize must be false or a dict(...) such as 'dict(norm_obs=False, norm_reward=True)', got {value!r}"
        )
    return dict(parsed)


#: Zoo entries that are not arguments of ``PPO(...)``: the env, the budget and the network.
_NOT_ALGO_KWARGS = frozenset({"n_envs", "n_timesteps", "policy", "env_wrapper", "normalize", "policy_kwargs"})


def algo_kwargs(hyperparams: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``PPO(...)`` from zoo-style hyperparameters (schedules parsed)."""
    kwargs = {k: v for k, v in hyperparams.items() if k not in _NOT_ALGO_KWARGS}
    for key in ("learning_rate", "clip_range"):
        if key in kwargs:
            kwargs[key] = parse_schedule(kwargs[key])
    return kwargs


# ---------------------------------------------------------------- the zoo file
def read_zoo_file(path: str | os.PathLike = HYPERPARAMS_FILE, env_id: str = ENV_ID) -> dict[str, Any]:
    """The hyperparameters of ``env_id`` in an rl-zoo ``.yml`` file, as written (expressions unparsed).

    Needs PyYAML (``pip install pyyaml``; rl_zoo3 brings it), imported here only.

    Raises:
        ValueError: if the file has no entry for ``env_id``.
    """
    import yaml

    content = yaml.safe_load(Path(path).read_text())
    if not isinstance(content, dict) or not isinstance(content.get(env_id), dict):
        raise ValueError(f"{path} has no hyperparameters for {env_id!r}")
    return dict(content[env_id])
