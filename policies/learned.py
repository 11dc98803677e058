"""The learned policies of Section 5 as zoo members, under both protocols.

- ``<name>_paper`` (mdr, cvx, dlm: :class:`~policies.dlm.models.DLMNet`; nn, nnm:
  :class:`~policies.dlm.models.NNNet`): the paper's protocol, 20 training tasks,
  ``policies/checkpoints/<name>_paper.pt``.
- ``<name>``: the large-data models, ``policies/checkpoints/<name>.pt``; mdr, cvx
  and dlm are :class:`~policies.dlm.keypoint_dlm.KeypointDLM` (``examples/train_large.py``),
  nn and nnm the NNNet trained on the 20,000-task corpus (``examples/train.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from policies.common.base import OpenLoopPolicy
from policies.common.errors import CheckpointKindError
from policies.common.paths import CHECKPOINT_DIR
from policies.common.registry import register_policy
from policies.dlm.architectures import ARCHITECTURES, PAPER_SUFFIX
from policies.dlm.keypoint_dlm import KeypointDLM
from policies.dlm.models import load_checkpoint
from policies.dlm.networks import video_to_tensor

__all__ = ["LearnedPolicy"]


class LearnedPolicy(OpenLoopPolicy):
    """Plans all keyframe commands from the video with a trained network.

    Args:
        name: the zoo name (``"dlm"``, ``"dlm_paper"``, ``"nn"``, ...).
        checkpoint: path of the checkpoint; defaults to the shipped ``policies/checkpoints/<name>.pt``.
    """

    last_status: list[str]
    """For a KeypointDLM: how each video of the last batch found its contact mode (``top``, ``wider``,
    ``infeasible``, ``not_derendered``; see :meth:`KeypointDLM.plan_videos`)."""

    def __init__(self, name: str, checkpoint: str | Path | None = None, config: SceneConfig = DEFAULT_CONFIG) -> None:
        super().__init__(config)
        self.name = name
        self.last_status = []
        architecture = name.removesuffix(PAPER_SUFFIX)
        default = CHECKPOINT_DIR / f"{name}.pt"
        self.checkpoint = Path(checkpoint) if checkpoint is not None else default
        self.model, self.meta = load_checkpoint(self.checkpoint, config)
        trained_as = self.meta.get("policy")
        if trained_as != architecture:  # same network, other stage (mdr as dlm) is refused too: kind = both
            raise CheckpointKindError(
                f"{self.checkpoint} holds a {trained_as!r} model, not {architecture!r}; pass a {architecture} "
                f"checkpoint or train one with `{_train_command(name)}`"
            )

    @torch.no_grad()
    def plan_batch(self, videos: np.ndarray) -> np.ndarray:
        """Commands ``(B, T, N, 4)`` for a batch of uint8 videos ``(B, T, H, W, 3)``."""
        self.model.eval()
        if isinstance(self.model, KeypointDLM):
            commands, self.last_status = self.model.plan_videos(videos)
            return commands
        return self.model.commands(video_to_tensor(videos)).double().numpy()

    def plan(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
        return self.plan_batch(obs["video"][None])[0]


def _train_command(name: str) -> str:
    """The script that trains a zoo name: the paper protocol and the large NNs by train.py, KeypointDLM by
    train_large.py."""
    architecture = name.removesuffix(PAPER_SUFFIX)
    if name == architecture and ARCHITECTURES[architecture].large_network == "keypoint_dlm":
        return "python examples/train_large.py (see its --help)"
    return f"python examples/train.py --policy {architecture}"


def _factory(name: str, summary: str):
    def make(checkpoint: str | Path | None = None, config: SceneConfig = DEFAULT_CONFIG) -> LearnedPolicy:
        return LearnedPolicy(name, checkpoint, config)

    make.__doc__ = f"{name}: {summary}."
    return make


for _name, _arch in ARCHITECTURES.items():
    register_policy(_name + PAPER_SUFFIX)(
        _factory(_name + PAPER_SUFFIX, f"{_arch.summary} (20 training tasks, the paper's protocol)")
    )
    register_policy(_name)(_factory(_name, f"{_arch.large_summary} (the large-data protocol)"))
