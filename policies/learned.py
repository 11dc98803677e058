"""The learned policies of Section 5 as zoo members: mdr, cvx, dlm (DLMNet) and nn, nnm (NNNet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from policies.base import OpenLoopPolicy
from policies.models import CHECKPOINT_DIR, CheckpointKindError, load_checkpoint
from policies.networks import video_to_tensor
from policies.registry import register_policy

__all__ = ["LearnedPolicy", "LEARNED_POLICIES"]

LEARNED_POLICIES = {
    "nn": "encoder + MLP to actions, trained on L_NN",
    "nnm": "NN fine-tuned on L_sim over the finetune split",
    "mdr": "mechanical derendering trained on L_P; the QP solves for actions",
    "cvx": "MDR then trained through the QP on L_QP",
    "dlm": "CVX then fine-tuned on L_sim over the finetune split",
}


PAPER_SUFFIX = "_paper"
"""Checkpoints trained on the paper's 20 training tasks are the ``<name>_paper`` zoo members; until the
large-data models ship, the plain names are aliases of them."""


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

    make.__doc__ = f"{name}: {LEARNED_POLICIES[architecture]} (20 training tasks, the paper's protocol)."
    return make


for _name in LEARNED_POLICIES:
    register_policy(_name + PAPER_SUFFIX)(_factory(_name + PAPER_SUFFIX, _name))
    # an alias of <name>_paper until the large-data models ship
    register_policy(_name, alias_of=_name + PAPER_SUFFIX)(_factory(_name, _name))
