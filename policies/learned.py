"""The learned policies of Section 5 as zoo members: mdr, cvx, dlm (DLMNet) and nn, nnm (NNNet)."""

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
from policies.dlm.models import load_checkpoint
from policies.dlm.networks import video_to_tensor

__all__ = ["LearnedPolicy"]


class LearnedPolicy(OpenLoopPolicy):
    """Plans all keyframe commands from the video with a trained network.

    Args:
        name: the zoo name (``"dlm"``, ``"dlm_paper"``, ``"nn"``, ...).
        checkpoint: path of the checkpoint; defaults to the shipped ``policies/checkpoints/<name>_paper.pt``.
    """

    def __init__(self, name: str, checkpoint: str | Path | None = None, config: SceneConfig = DEFAULT_CONFIG) -> None:
        super().__init__(config)
        self.name = name
        architecture = name.removesuffix(PAPER_SUFFIX)
        default = CHECKPOINT_DIR / f"{architecture}{PAPER_SUFFIX}.pt"
        self.checkpoint = Path(checkpoint) if checkpoint is not None else default
        self.model, self.meta = load_checkpoint(self.checkpoint, config)
        trained_as = self.meta.get("policy")
        if trained_as != architecture:  # same network, other stage (mdr as dlm) is refused too: kind = both
            raise CheckpointKindError(
                f"{self.checkpoint} holds a {trained_as!r} model, not {architecture!r}; pass a {architecture} "
                f"checkpoint or train one with `python examples/train.py --policy {architecture}`"
            )

    @torch.no_grad()
    def plan_batch(self, videos: np.ndarray) -> np.ndarray:
        """Commands ``(B, T, N, 4)`` for a batch of uint8 videos ``(B, T, H, W, 3)``."""
        self.model.eval()
        return self.model.commands(video_to_tensor(videos)).double().numpy()

    def plan(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
        return self.plan_batch(obs["video"][None])[0]


def _factory(name: str, architecture: str):
    def make(checkpoint: str | Path | None = None, config: SceneConfig = DEFAULT_CONFIG) -> LearnedPolicy:
        return LearnedPolicy(name, checkpoint, config)

    make.__doc__ = f"{name}: {ARCHITECTURES[architecture].summary} (20 training tasks, the paper's protocol)."
    return make


for _name in ARCHITECTURES:
    register_policy(_name + PAPER_SUFFIX)(_factory(_name + PAPER_SUFFIX, _name))
    # an alias of <name>_paper until the large-data models ship
    register_policy(_name, alias_of=_name + PAPER_SUFFIX)(_factory(_name, _name))
