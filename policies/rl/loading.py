"""Loading SB3 PPO checkpoints without unpickling anything.

Checkpoints are SB3 ``.zip`` files. The tensors go through
``torch.load(weights_only=True)`` (SB3's default) and every cloudpickled entry
of the zip's metadata (spaces, schedules, policy class and kwargs) is replaced
by known objects. The network sizes are inferred from the weights, so a PPO
that a user trained on :class:`dlm_gym.wrappers.StackVideoChannels` with SB3's
``MultiInputPolicy`` and SB3's default feature extractor (NatureCNN on the
image) or :class:`~policies.rl.extractors.VideoCNN` loads too
(:func:`load_ppo_model`); any other network, and any damaged file, raises
:class:`~policies.common.errors.CheckpointError` naming the file and the fix.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import pickletools
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor
from stable_baselines3.common.vec_env import VecTransposeImage
from torch import nn

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.envs.video_planar_manip import VideoPlanarManipEnv
from dlm_gym.wrappers import MarkovState, StackVideoChannels
from policies.common.errors import CheckpointError
from policies.common.paths import CHECKPOINT_DIR
from policies.rl.extractors import NNPlanExtractor, VideoCNN
from policies.rl.zoo_hyperparams import DEFAULT_SEED, DEFAULT_TIMESTEPS, LinearSchedule

__all__ = [
    "DEFAULT_CHECKPOINT",
    "REGENERATE_COMMAND",
    "SCRATCH_CHECKPOINT",
    "SCRATCH_REGENERATE_COMMAND",
    "SUPPORTED_CHECKPOINTS",
    "OBSERVATIONS",
    "load_ppo_model",
    "policy_spaces",
]

DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "ppo.zip"
"""The shipped ``ppo`` (started from ``nn``, fine-tuned by PPO), loaded by ``make_policy("ppo")``."""
REGENERATE_COMMAND = (
    "python examples/rl_finetune.py --seed 0 --out runs/rl_finetune/seed0 --ship policies/checkpoints/ppo.zip"
)
"""The command that trains the shipped ``ppo`` (and writes ``policies/checkpoints/ppo_log.csv``)."""
SCRATCH_CHECKPOINT = CHECKPOINT_DIR / "ppo_scratch.zip"
"""The shipped ``ppo_scratch`` (PPO from scratch), loaded by ``make_policy("ppo_scratch")``."""
SCRATCH_REGENERATE_COMMAND = (
    f"python examples/train.py --policy ppo_scratch --timesteps {DEFAULT_TIMESTEPS} --seed {DEFAULT_SEED}"
)
"""The command that trains the shipped ``ppo_scratch`` (and writes ``policies/checkpoints/ppo_scratch_log.csv``)."""


OBSERVATIONS = ("pixels", "markov_state")
"""What a checkpoint's network may see: ``"pixels"`` (:class:`~dlm_gym.wrappers.StackVideoChannels`, the zoo's
``ppo``) or ``"markov_state"`` (:class:`~dlm_gym.wrappers.MarkovState` on ``obs_type="state"``, ``ppo_state``)."""


def policy_spaces(config: SceneConfig = DEFAULT_CONFIG, observation: str = "pixels") -> tuple[spaces.Dict, spaces.Box]:
    """The observation and action spaces the policy network sees (images channel-first); see :data:`OBSERVATIONS`."""
    if observation == "markov_state":
        state = MarkovState(VideoPlanarManipEnv(obs_type="state", config=config))
        assert isinstance(state.observation_space, spaces.Dict) and isinstance(state.action_space, spaces.Box)
        return state.observation_space, state.action_space
    if observation != "pixels":
        raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
    wrapper = StackVideoChannels(VideoPlanarManipEnv(config=config))
    transposed = spaces.Dict(
        {
            key: VecTransposeImage.transpose_space(space) if key == "image" else space
            for key, space in wrapper.observation_space.spaces.items()
        }
    )
    return transposed, wrapper.action_space


def _regenerate_hint(path: Path) -> str:
    if path.resolve() == DEFAULT_CHECKPOINT:
        return f"regenerate it with `{REGENERATE_COMMAND}`"
    if path.resolve() == SCRATCH_CHECKPOINT:
        return f"regenerate it with `{SCRATCH_REGENERATE_COMMAND}`"
    return (
        f"regenerate it with `python examples/rl_finetune.py --out DIR --ship {path}` (started from nn) "
        f"or `python examples/train.py --policy ppo_scratch --out {path}` (from scratch)"
    )


#: The ``data`` entries SB3 writes as cloudpickled objects (``{":type:": ..., ":serialized:": "<base64>"}``)
#: and that the loader replaces by known objects, so they must be there and well formed.
_SERIALIZED_DATA = ("policy_class", "policy_kwargs", "observation_space", "action_space")
#: Plain ``data`` entries that SB3 reads to set the model up again: name -> (type, smallest value).
_NUMBER_DATA: dict[str, tuple[type, float]] = {
    "n_envs": (int, 1),
    "n_steps": (int, 1),
    "batch_size": (int, 1),
    "n_epochs": (int, 1),
    "gamma": (float, 0.0),
    "gae_lambda": (float, 0.0),
}


def _check_data(data: Any, path: Path, hint: str) -> None:
    """Structural checks of an SB3 zip's ``data`` entry (foreign zips carry no project hash to verify).

    SB3 copies every entry onto the model (``model.__dict__.update(data)``),
    so a malformed one would surface later as an AttributeError or TypeError
    far from the file; here it is a CheckpointError naming the file and the entry.
    """

    def bad(problem: str) -> CheckpointError:
        return CheckpointError(f"PPO checkpoint {path}: {problem}; the file is damaged or not an SB3 PPO zip; {hint}")

    if not isinstance(data, dict):
        raise bad(f"its 'data' entry must be a JSON object, got a JSON {type(data).__name__}")
    for key in _SERIALIZED_DATA:
        item = data.get(key)
        if key == "policy_kwargs" and isinstance(item, dict) and ":serialized:" not in item:
            continue  # SB3 writes JSON-friendly kwargs (the default {}) as a plain object
        if not (isinstance(item, dict) and isinstance(item.get(":serialized:"), str)):
            raise bad(f"data[{key!r}] must be an SB3-serialized object, got {type(item).__name__}")
    for key, item in data.items():
        if isinstance(item, dict) and ":serialized:" in item and not isinstance(item[":serialized:"], str):
            raise bad(f"data[{key!r}] is a serialized object without its serialized string")
    for key, (kind, low) in _NUMBER_DATA.items():
        value = data.get(key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (kind is int and not isinstance(value, int)) or not (math.isfinite(value) and value >= low):
            want = "an integer" if kind is int else "a finite number"
            raise bad(f"data[{key!r}] must be {want} >= {low:g}, got {value!r}")


SUPPORTED_CHECKPOINTS = (
    "the zoo loads SB3 PPO checkpoints of a MultiInputPolicy (no gSDE) trained on "
    "dlm_gym.wrappers.StackVideoChannels with SB3's default feature extractor (CombinedExtractor: NatureCNN "
    "on the image), policies.rl.extractors.VideoCNN (also named policies.rl.ppo.VideoCNN) or "
    "policies.rl.extractors.NNPlanExtractor, or on "
    "dlm_gym.wrappers.MarkovState (state observations) with the default extractor; any net_arch and a "
    "torch.nn activation; nothing in the file is unpickled"
)
_POLICY_CLASSES = {("stable_baselines3.common.policies", "MultiInputActorCriticPolicy")}
_EXTRACTORS = {
    "stable_baselines3.common.torch_layers.CombinedExtractor": "combined",
    # the class moved from policies.rl.ppo; checkpoints saved before name it there
    "policies.rl.ppo.VideoCNN": "videocnn",
    "policies.rl.extractors.VideoCNN": "videocnn",
    "policies.rl.extractors.NNPlanExtractor": "nnplan",
}
_ACTIVATIONS = (
    "Tanh",
    "ReLU",
    "ELU",
    "LeakyReLU",
    "GELU",
    "SiLU",
    "Mish",
    "SELU",
    "CELU",
    "Sigmoid",
    "Softplus",
    "Hardtanh",
    "ReLU6",
    "Hardswish",
    "Tanhshrink",
    "Softsign",
)
#: ``policy_kwargs`` keys the loader understands; the others change the network in ways it does not rebuild.
_KNOWN_POLICY_KWARGS = {
    "net_arch",
    "activation_fn",
    "features_extractor_class",
    "features_extractor_kwargs",
    "share_features_extractor",
    "normalize_images",
    "log_std_init",
    "ortho_init",
    "optimizer_class",
    "optimizer_kwargs",
}


def _pickled_global(blob: str) -> tuple[str, str] | None:
    """``(module, name)`` of a class that cloudpickle stored by reference, read without unpickling; else None."""
    try:
        ops = list(pickletools.genops(base64.b64decode(blob)))
    except Exception:  # noqa: BLE001  (not base64, not a pickle)
        return None
    harmless = {"PROTO", "FRAME", "MEMOIZE", "STOP", "SHORT_BINUNICODE", "BINUNICODE", "STACK_GLOBAL", "GLOBAL"}
    if any(op.name not in harmless for op, _, _ in ops):
        return None  # anything but a reference to an importable class (cloudpickle's by-value code, say)
    glob = [arg for op, arg, _ in ops if op.name == "GLOBAL"]
    if glob:
        module, _, name = str(glob[0]).partition(" ")
        return module, name
    strings = [arg for op, arg, _ in ops if op.name in ("SHORT_BINUNICODE", "BINUNICODE")]
    return (strings[0], strings[1]) if len(strings) == 2 else None


def _class_path(text: Any) -> str | None:
    """``"pkg.mod.Class"`` from SB3's readable form of a class, ``"<class 'pkg.mod.Class'>"``."""
    match = re.fullmatch(r"<class '([\w.]+)'>", text) if isinstance(text, str) else None
    return match.group(1) if match else None


def _layer_widths(weights: dict[str, th.Tensor], prefix: str) -> list[int]:
    """Output widths of the Linear layers ``<prefix>.<i>.weight`` (activations sit between, at odd i)."""
    indices = sorted(
        int(k[len(prefix) + 1 :].split(".")[0]) for k in weights if k.startswith(prefix + ".") and k.endswith(".weight")
    )
    return [int(weights[f"{prefix}.{i}.weight"].shape[0]) for i in indices]


def _infer_policy_kwargs(
    data: dict,
    weights: dict[str, th.Tensor],
    unsupported: Callable[[str], Exception],
    obs_space: spaces.Dict,
    act_space: spaces.Box,
) -> dict[str, Any]:
    """The ``policy_kwargs`` that rebuild the checkpoint's network: read from SB3's readable metadata
    (classes by name, plain values) and from the weights' shapes; never unpickled."""
    policy_class = _pickled_global(data["policy_class"][":serialized:"])
    if policy_class not in _POLICY_CLASSES:
        shown = ".".join(policy_class) if policy_class else "a class stored by value (code)"
        raise unsupported(f"its policy class is {shown}, not SB3's MultiInputPolicy")
    if data.get("use_sde"):
        raise unsupported("it was trained with gSDE (use_sde=True)")
    spaces_text = data["observation_space"].get("spaces")
    if spaces_text is not None and spaces_text != str(dict(obs_space.spaces)):
        raise unsupported(f"it was trained on observations {spaces_text}, not {dict(obs_space.spaces)}")
    shape = data["action_space"].get("_shape")
    if shape is not None and list(shape) != list(act_space.shape):
        raise unsupported(f"its actions have shape {tuple(shape)}, not {act_space.shape}")

    stored = {k: v for k, v in data["policy_kwargs"].items() if not k.startswith(":")}
    unknown = sorted(set(stored) - _KNOWN_POLICY_KWARGS)
    if unknown:
        raise unsupported(f"its policy_kwargs set {unknown}")
    extractor_path = _class_path(
        stored.get("features_extractor_class", "<class 'stable_baselines3.common.torch_layers.CombinedExtractor'>")
    )
    kind = _EXTRACTORS.get(extractor_path or "")
    if kind is None:
        raise unsupported(f"its feature extractor is {stored['features_extractor_class']}")
    activation = _class_path(stored.get("activation_fn", "<class 'torch.nn.modules.activation.Tanh'>"))
    module, _, name = (activation or "").rpartition(".")
    if not module.startswith("torch.nn.modules") or name not in _ACTIVATIONS:
        raise unsupported(f"its activation is {stored['activation_fn']}")
    extractor_kwargs = stored.get("features_extractor_kwargs", {})
    if not isinstance(extractor_kwargs, dict):
        extractor_kwargs = {}

    def width(key: str, dim: int = 0) -> int:
        if key not in weights:
            raise unsupported(f"its weights have no {key!r} (they are not of a {extractor_path} network)")
        return int(weights[key].shape[dim])

    features: dict[str, Any]
    extractor_class: type[BaseFeaturesExtractor]
    if kind == "nnplan":
        layers = sum(1 for k in weights if re.fullmatch(r"features_extractor\.plan\.encoder\.lstm\.weight_ih_l\d+", k))
        features = {"latent_dim": width("features_extractor.plan.encoder.project.weight"), "lstm_layers": layers}
        if extractor_kwargs.get("trainable", "all") not in NNPlanExtractor.TRAINABLE:
            raise unsupported(f"its NNPlanExtractor has trainable={extractor_kwargs['trainable']!r}")
        features["trainable"] = extractor_kwargs.get("trainable", "all")
        extractor_class = NNPlanExtractor
    elif kind == "combined" and "image" not in obs_space.spaces:
        features = {}  # flattened state boxes: no weights
        extractor_class = CombinedExtractor
    elif kind == "combined":
        features = {"cnn_output_dim": width("features_extractor.extractors.image.linear.0.weight")}
        if isinstance(extractor_kwargs.get("normalized_image"), bool):
            features["normalized_image"] = extractor_kwargs["normalized_image"]
        extractor_class = CombinedExtractor
    else:
        width("features_extractor.cnn.0.weight")  # raises when the weights are not a VideoCNN's
        features = {
            "features_dim": width("features_extractor.linear.0.weight"),
            "channels": tuple(_layer_widths(weights, "features_extractor.cnn")),
        }
        extractor_class = VideoCNN
    shared = all(
        th.equal(weights[k], weights.get("vf_" + k, weights[k])) for k in weights if k.startswith("features_extractor.")
    )
    inferred: dict[str, Any] = {
        "features_extractor_class": extractor_class,
        "features_extractor_kwargs": features,
        "net_arch": {
            "pi": _layer_widths(weights, "mlp_extractor.policy_net"),
            "vf": _layer_widths(weights, "mlp_extractor.value_net"),
        },
        "activation_fn": getattr(nn, name),
        "share_features_extractor": shared,
    }
    if isinstance(stored.get("normalize_images"), bool):
        inferred["normalize_images"] = stored["normalize_images"]
    return inferred


def load_ppo_model(
    path: str | os.PathLike = DEFAULT_CHECKPOINT,
    config: SceneConfig = DEFAULT_CONFIG,
    *,
    observation: str = "pixels",
    regenerate: str | None = None,
) -> PPO:
    """Load an SB3 PPO checkpoint without unpickling (see the module docstring).

    Besides the zoo's own checkpoints this loads a PPO that a user trained on
    :class:`dlm_gym.wrappers.StackVideoChannels` with SB3's ``MultiInputPolicy``
    and either SB3's default feature extractor (``CombinedExtractor``, NatureCNN
    on the image) or :class:`~policies.rl.extractors.VideoCNN`: the network sizes (extractor widths,
    ``net_arch``, whether actor and critic share the extractor) are inferred
    from the weights, the classes (policy, extractor, activation) are read by
    name from SB3's readable metadata and matched against a fixed list.

    ``observation="markov_state"`` loads a state agent (``MultiInputPolicy`` with SB3's default
    extractor, which flattens the boxes) trained on :class:`~dlm_gym.wrappers.MarkovState`; see
    :data:`OBSERVATIONS`. ``regenerate`` is the command named in the errors (default: the ``ppo`` one).

    Raises:
        CheckpointError: if the file is missing, is not a readable SB3 zip, or holds a network the
            loader does not rebuild (:data:`SUPPORTED_CHECKPOINTS`).
    """
    path = Path(path)
    hint = f"regenerate it with `{regenerate}`" if regenerate else _regenerate_hint(path)
    if not path.is_file():
        raise CheckpointError(f"PPO checkpoint {path} not found; {hint}")
    obs_space, act_space = policy_spaces(config, observation)
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data").decode("utf-8"))
    except Exception as exc:  # noqa: BLE001  (zipfile, zlib, a bad CRC, UTF-8 and JSON errors: a damaged file)
        raise CheckpointError(
            f"PPO checkpoint {path} is corrupt or not an SB3 zip ({type(exc).__name__}: {exc}); {hint}"
        ) from None
    _check_data(data, path, hint)
    try:
        with zipfile.ZipFile(path) as archive:
            weights = th.load(io.BytesIO(archive.read("policy.pth")), map_location="cpu", weights_only=True)
        if not (isinstance(weights, dict) and all(isinstance(v, th.Tensor) for v in weights.values())):
            raise TypeError(f"policy.pth holds a {type(weights).__name__}, not a state dict of tensors")
    except Exception as exc:  # noqa: BLE001  (a missing or damaged policy.pth)
        raise CheckpointError(
            f"PPO checkpoint {path} has no readable policy weights ({type(exc).__name__}: {exc}); {hint}"
        ) from None

    def unsupported(problem: str) -> CheckpointError:
        return CheckpointError(f"PPO checkpoint {path} is not supported: {problem}; {SUPPORTED_CHECKPOINTS}")

    inferred = _infer_policy_kwargs(data, weights, unsupported, obs_space, act_space)
    known = {
        "policy_class": MultiInputActorCriticPolicy,
        "policy_kwargs": inferred,
        "observation_space": obs_space,
        "action_space": act_space,
        "learning_rate": 0.0,
        "lr_schedule": LinearSchedule(0.0),
        "clip_range": LinearSchedule(0.0),
        "clip_range_vf": None,
    }
    custom = dict(known)
    for key, item in data.items():
        if isinstance(item, dict) and ":serialized:" in item and key not in known:
            custom[key] = None  # never unpickle: anything else serialized is not needed for inference
    try:
        model = PPO.load(path, device="cpu", custom_objects=custom)
    except Exception as exc:  # noqa: BLE001  (SB3 raises many kinds for bad archives)
        raise CheckpointError(
            f"PPO checkpoint {path} could not be loaded ({type(exc).__name__}: {exc}); {hint}"
        ) from exc
    return model
