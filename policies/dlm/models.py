"""The learned architectures of Section 5 and their checkpoints.

* :class:`DLMNet` - video encoder -> mechanical parameters P(t) (eq. 4) ->
  differentiable QP (eq. 6) -> finger commands. The ``mdr``, ``cvx`` and
  ``dlm`` policies are this network after successive training stages.
* :class:`NNNet` - the same encoder with a 3-layer MLP straight to finger
  commands. The ``nn`` and ``nnm`` policies.

Both map uint8 videos ``(B, T, 50, 50, 3)`` to keyframe commands
``(B, T, N, 4)`` (contact point in metres, force on the object in newtons),
which :class:`policies.common.base.OpenLoopPolicy` plays back.

Checkpoints are plain ``torch.save`` dicts of tensors, strings and numbers, read
back with ``torch.load(..., weights_only=True)``. They carry a SHA-256 content
hash of their weights (:func:`content_hash`), checked on load, so that a
damaged file is refused instead of acting with altered weights; files written
before hashes existed load without that check (:func:`add_content_hash` adds
one). Every failure raises :class:`CheckpointError` naming the file and the
command that rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlm_gym.actions import action_scale_offset
from dlm_gym.atomic import atomic_write
from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.dynamics import acceleration_operator, wrench
from dlm_gym.mechanics import NUM_ENV_CONTACTS, vector_dim, vector_layout
from policies.common.errors import CheckpointError
from policies.common.paths import CHECKPOINT_DIR
from policies.dlm.architectures import ARCHITECTURES
from policies.dlm.keypoint_dlm import KeypointDLM
from policies.dlm.networks import MLP, VideoEncoder
from policies.dlm.qp import InverseDynamicsQP, QPSolution, reference_points_from_jacobian

__all__ = [
    "DLMNet",
    "NNNet",
    "content_hash",
    "save_checkpoint",
    "load_checkpoint",
    "add_content_hash",
    "rebuild_hint",
]

CHECKPOINT_VERSION = 1


def command_scale(config: SceneConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Offset and scale (float32 ``(4,)``) of the action box (:mod:`dlm_gym.actions`): commands in unit range."""
    scale, offset = action_scale_offset(config, like=torch.zeros(()))
    return offset, scale


class DLMNet(nn.Module):
    """Video -> P(t) -> QP -> commands (paper Fig. 2).

    The decoder regresses the 55 numbers per keyframe of
    :func:`dlm_gym.mechanics.to_vector` (standardised with the training
    split's statistics) plus the object's log inertia, which the QP needs for
    ``M = diag(m, m, I)`` in its wrench ``M r''(t) + G``.
    """

    kind = "dlm"
    HPARAMS = ("latent_dim", "lstm_layers")
    hparams: dict[str, int]
    # buffers (registered in __init__), declared for type checkers
    p_mean: torch.Tensor
    p_std: torch.Tensor
    log_inertia_stats: torch.Tensor
    accel: torch.Tensor

    def __init__(self, config: SceneConfig = DEFAULT_CONFIG, latent_dim: int = 75, lstm_layers: int = 5) -> None:
        super().__init__()
        self.config = config
        T = config.horizon
        self.dim = vector_dim(config)
        self.encoder = VideoEncoder(config.frame_size, latent_dim, lstm_layers)
        self.decoder = MLP(latent_dim, T * self.dim + 1)
        # Torques (N m) are ~10x smaller than forces (N) at a 10 cm lever: weigh their slack 100x
        # more, or the QP would rather leave a torque residual than use the lever arms.
        self.qp = InverseDynamicsQP(
            "torch", num_fingers=config.num_fingers, num_env_contacts=NUM_ENV_CONTACTS, q_eps=(1e4, 1e4, 1e6)
        )
        self.register_buffer("p_mean", torch.zeros(T * self.dim))
        self.register_buffer("p_std", torch.ones(T * self.dim))
        self.register_buffer("log_inertia_stats", torch.tensor([0.0, 1.0]))
        self.register_buffer(
            "accel", torch.as_tensor(np.array(acceleration_operator(T, config.dt)), dtype=torch.float32)
        )
        self.hparams = {"latent_dim": latent_dim, "lstm_layers": lstm_layers}

    def set_label_statistics(self, p_vectors: np.ndarray, log_inertia: np.ndarray) -> None:
        """Standardise the regression targets with training-split statistics (std floored for constant entries)."""
        p = torch.as_tensor(p_vectors, dtype=torch.float32)
        self.p_mean.copy_(p.mean(0))
        self.p_std.copy_(p.std(0).clamp_min(1e-3))
        li = torch.as_tensor(log_inertia, dtype=torch.float32)
        self.log_inertia_stats.copy_(torch.stack([li.mean(), li.std().clamp_min(1e-3)]))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Float video ``(B, T, 3, H, W)`` -> standardised prediction ``(B, T * 55 + 1)``."""
        return self.decoder(self.encoder(video))

    def unpack(self, prediction: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Standardised prediction -> P(t) fields ``{name: (B, T, ...)}`` and the inertia ``(B,)``."""
        B, T = prediction.shape[0], self.config.horizon
        p = prediction[:, :-1] * self.p_std + self.p_mean
        p = p.reshape(B, T, self.dim)
        fields, start = {}, 0
        for name, shape in vector_layout(self.config):
            size = int(np.prod(shape))
            fields[name] = p[..., start : start + size].reshape(B, T, *shape)
            start += size
        mean, std = self.log_inertia_stats
        inertia = torch.exp(prediction[:, -1] * std + mean)
        return fields, inertia

    def wrench(self, trajectory: torch.Tensor, inertia: torch.Tensor) -> torch.Tensor:
        """``M r''(t) + G`` ``(B, T, 3)`` from a trajectory with the dynamics model of :mod:`dlm_gym.dynamics`."""
        acc = torch.einsum("st,btc->bsc", self.accel.to(trajectory.dtype), trajectory)
        return wrench(acc, inertia, self.config)

    def solve(self, fields: dict[str, torch.Tensor], inertia: torch.Tensor) -> QPSolution:
        """The QP layer on decoded parameters."""
        r = fields["trajectory"]
        ref = reference_points_from_jacobian(fields["jacobian"], r[..., :2], self.config.num_fingers)
        return self.qp(
            self.wrench(r, inertia),
            fields["jacobian"],
            fields["finger_facets"],
            fields["finger_cones"],
            fields["env_cones"],
            ref,
        )

    def commands(self, video: torch.Tensor) -> torch.Tensor:
        """Float video -> keyframe commands ``(B, T, N, 4)`` in metres and newtons."""
        fields, inertia = self.unpack(self(video))
        sol = self.solve(fields, inertia)
        return torch.cat([sol.finger_positions, sol.finger_forces], dim=-1)


class NNNet(nn.Module):
    """The NN baseline: encoder + 3-layer MLP straight to (normalised) finger commands."""

    kind = "nn"
    HPARAMS = ("latent_dim", "lstm_layers")
    hparams: dict[str, int]
    offset: torch.Tensor
    scale: torch.Tensor

    def __init__(self, config: SceneConfig = DEFAULT_CONFIG, latent_dim: int = 75, lstm_layers: int = 5) -> None:
        super().__init__()
        self.config = config
        self.encoder = VideoEncoder(config.frame_size, latent_dim, lstm_layers)
        self.head = MLP(latent_dim, config.horizon * config.num_fingers * 4)
        offset, scale = command_scale(config)
        self.register_buffer("offset", offset)
        self.register_buffer("scale", scale)
        self.hparams = {"latent_dim": latent_dim, "lstm_layers": lstm_layers}

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Float video -> normalised commands ``(B, T, N, 4)`` (the action scale)."""
        cfg = self.config
        return self.head(self.encoder(video)).reshape(-1, cfg.horizon, cfg.num_fingers, 4)

    def commands(self, video: torch.Tensor) -> torch.Tensor:
        return self(video) * self.scale + self.offset

    def normalise(self, commands: torch.Tensor) -> torch.Tensor:
        return (commands - self.offset) / self.scale


_KINDS: dict[str, type[DLMNet] | type[NNNet] | type[KeypointDLM]] = {
    "dlm": DLMNet,
    "nn": NNNet,
    "keypoint_dlm": KeypointDLM,
}
"""Network kind -> class; each class names its constructor's integer hyperparameters in ``HPARAMS``."""


def content_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of a state dict: every tensor's name, dtype, shape and bytes, in name order.

    A function of the weights alone, not of the pickle around them, so it
    survives re-saving and catches a changed bit in any tensor.
    """
    digest = hashlib.sha256(b"dlm-gym state_dict v1\0")
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        digest.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode() + b"\0")
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def rebuild_hint(path: Path | str, payload: Any = None) -> str:
    """``rebuild it with `<command>` `` for a checkpoint: the command it records, else one guessed from its name."""
    if isinstance(payload, dict) and isinstance(payload.get("command"), str) and payload["command"]:
        return f"rebuild it with `{payload['command']}`"
    path = Path(path)
    paper = path.stem.endswith("_paper")
    name = path.stem.removesuffix("_paper")
    if not paper and name in ARCHITECTURES and ARCHITECTURES[name].large_network == "keypoint_dlm":
        return "rebuild it with `python examples/train_large.py` (README, 'The large-data protocol')"
    policy = name if name in ARCHITECTURES else "<" + "|".join(ARCHITECTURES) + ">"
    default = path.parent.resolve() == CHECKPOINT_DIR and paper
    return f"rebuild it with `python examples/train.py --policy {policy}" + ("`" if default else f" --out {path}`")


def _write_atomically(payload: dict, path: Path) -> None:
    """``torch.save`` atomically (:func:`dlm_gym.atomic.atomic_write`): a crash never leaves half a checkpoint."""
    with atomic_write(path) as handle:
        torch.save(payload, handle)


def save_checkpoint(
    model: DLMNet | NNNet | KeypointDLM, path: Path | str, *, policy: str, command: str, extra: dict | None = None
) -> Path:
    """Write ``model`` with what is needed to rebuild it, the command that trained it and its content hash."""
    path = Path(path)
    state_dict = model.state_dict()
    payload = {
        "version": CHECKPOINT_VERSION,
        "kind": model.kind,
        "policy": policy,
        "command": command,
        "hparams": dict(model.hparams),
        "state_dict": state_dict,
        "content_hash": content_hash(state_dict),
        "extra": extra or {},
    }
    _write_atomically(payload, path)
    return path


def _check_payload(path: Path, payload: Any) -> None:
    """Check what the loader relies on before a network is built from it; raise CheckpointError naming the fault."""
    if not isinstance(payload, dict) or payload.get("kind") not in _KINDS:
        raise CheckpointError(f"{path} is not a dlm-gym model checkpoint; {rebuild_hint(path)}")
    hint = rebuild_hint(path, payload)
    _check_identity(path, payload, hint)
    _check_hparams(path, payload, hint)
    _check_weights(path, payload, hint)


def _check_identity(path: Path, payload: dict, hint: str) -> None:
    """This checkpoint version, and a policy that goes with the network kind (an nn policy in a DLMNet is damage)."""
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')!r}, expected {CHECKPOINT_VERSION}; {hint}"
        )
    policy, kind = payload.get("policy"), payload["kind"]
    if policy not in ARCHITECTURES or kind not in ARCHITECTURES[policy].networks:
        known = "; ".join(f"{n} in {' or '.join(a.networks)}" for n, a in ARCHITECTURES.items())
        raise CheckpointError(
            f"{path} says it holds policy {policy!r} in a {kind!r} network, which does not go together "
            f"(known: {known}); {hint}"
        )


def _check_hparams(path: Path, payload: dict, hint: str) -> None:
    """Exactly the kind's ``HPARAMS``, positive integers (torch would raise TypeError or ValueError)."""
    hparams, names = payload.get("hparams"), _KINDS[payload["kind"]].HPARAMS
    if not isinstance(hparams, dict):
        raise CheckpointError(
            f"{path}: 'hparams' must be a dict of {', '.join(names)}, got {type(hparams).__name__}; {hint}"
        )
    if set(hparams) != set(names):
        raise CheckpointError(
            f"{path}: 'hparams' has keys {sorted(map(str, hparams))}, expected {sorted(names)}; {hint}"
        )
    for key, value in hparams.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CheckpointError(f"{path}: hparams[{key!r}] must be a positive integer, got {value!r}; {hint}")


def _check_weights(path: Path, payload: dict, hint: str) -> None:
    """A name -> tensor dict, matching the content hash when the file has one, and finite."""
    state = payload.get("state_dict")
    if not (
        isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise CheckpointError(f"{path}: 'state_dict' must map names to tensors, got {type(state).__name__}; {hint}")
    stored = payload.get("content_hash")
    if stored is not None and stored != content_hash(state):
        raise CheckpointError(
            f"{path}: content hash mismatch, the weights changed after the file was written (a damaged or "
            f"edited file); {hint}, or restore the file from the repository"
        )
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: weight {name!r} holds NaN or inf (training diverged?); {hint}")


def load_checkpoint(
    path: Path | str, config: SceneConfig = DEFAULT_CONFIG
) -> tuple[DLMNet | NNNet | KeypointDLM, dict[str, Any]]:
    """Rebuild a model from a checkpoint (``weights_only`` loading: no code is unpickled).

    Checks, in order: the file is a dlm-gym model checkpoint of this version;
    its policy goes with its network kind; ``hparams`` are positive integers;
    ``state_dict`` maps names to tensors; the content hash, when the file has
    one, matches the weights; the weights are finite and fit the network.

    Raises:
        CheckpointError: naming the file and the command that rebuilds it, for any of those failures.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a checkpoint" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {path} {what}; {rebuild_hint(path)}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (torch raises many types for a damaged file)
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a torch file ({type(exc).__name__}: {exc}); {rebuild_hint(path)}"
        ) from None
    _check_payload(path, payload)
    hint = rebuild_hint(path, payload)
    try:
        model = _KINDS[payload["kind"]](config, **payload["hparams"])
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the model ({exc}); {hint}") from None
    model.eval()
    return model, payload


def add_content_hash(path: Path | str) -> Path:
    """Re-save a checkpoint with the content hash of its weights (weights unchanged, atomically); returns its path.

    For checkpoints written before hashes existed. The file must load first
    (every check of :func:`load_checkpoint`), so a damaged file never gets a
    hash that would vouch for it; a file with a hash already is verified and rewritten as is.
    """
    path = Path(path)
    _, payload = load_checkpoint(path)
    payload["content_hash"] = content_hash(payload["state_dict"])
    _write_atomically(payload, path)
    return path
