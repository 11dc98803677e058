"""The learned architectures of Section 5: one table, read by the zoo, the trainer and the checkpoint loader.

Each entry names the network it trains (``DLMNet`` for the mechanical pipeline,
``NNNet`` for the neural baselines) and its stages from scratch as
``(loss, split)`` pairs, in the order the trainer runs them.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Architecture", "ARCHITECTURES", "LEARNED", "PAPER_SUFFIX", "architecture_of"]


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One learned policy: its name, network kind, training stages and a one-line summary."""

    name: str
    network: str
    """``"dlm"`` (``DLMNet``: video -> P(t) -> QP) or ``"nn"`` (``NNNet``: video -> actions)."""
    stages: tuple[tuple[str, str], ...]
    """``(loss, split)`` pairs from scratch: L_P, L_QP, L_NN on ``train``; L_sim on ``finetune``."""
    summary: str
    large_network: str
    """The network of the large-data model of this name: ``"keypoint_dlm"`` (:class:`~policies.dlm.keypoint_dlm.
    KeypointDLM`, trained by ``examples/train_large.py``) for mdr, cvx and dlm; ``"nn"`` for nn and nnm."""
    large_summary: str

    @property
    def networks(self) -> tuple[str, ...]:
        """The network kinds a checkpoint of this policy may hold: the paper protocol's, then the large-data one."""
        return tuple(dict.fromkeys((self.network, self.large_network)))


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            "mdr",
            "dlm",
            (("L_P", "train"),),
            "mechanical derendering trained on L_P; the QP solves for actions",
            "keypoint_dlm",
            "learned poses on the first frame's outline, a contact-mode classifier, the QP on its proposals",
        ),
        Architecture(
            "cvx",
            "dlm",
            (("L_P", "train"), ("L_QP", "train")),
            "MDR then trained through the QP on L_QP",
            "keypoint_dlm",
            "MDR with a residual command head trained on L_QP (the oracle's commands)",
        ),
        Architecture(
            "dlm",
            "dlm",
            (("L_P", "train"), ("L_QP", "train"), ("L_sim", "finetune")),
            "CVX then fine-tuned on L_sim over the finetune split",
            "keypoint_dlm",
            "CVX with the command head fine-tuned on L_sim (finite differences through pymunk)",
        ),
        Architecture(
            "nn",
            "nn",
            (("L_NN", "train"),),
            "encoder + MLP to actions, trained on L_NN",
            "nn",
            "encoder + MLP to actions, trained on L_NN over the 20,000-task corpus",
        ),
        Architecture(
            "nnm",
            "nn",
            (("L_NN", "train"), ("L_sim", "finetune")),
            "NN fine-tuned on L_sim over the finetune split",
            "nn",
            "the large-data NN fine-tuned on L_sim",
        ),
    )
}
"""Every learned architecture, by name, in the order tables list them."""

LEARNED = tuple(ARCHITECTURES)
"""The trainable learned policies: mdr, cvx, dlm, nn, nnm."""

PAPER_SUFFIX = "_paper"
"""Checkpoints trained on the paper's 20 training tasks are the ``<name>_paper`` zoo members; the plain
names are the large-data models (``policies/checkpoints/<name>.pt``)."""


def architecture_of(name: str) -> Architecture:
    """The architecture of a zoo name (``"dlm"`` and ``"dlm_paper"`` are both DLM); ValueError naming the choices."""
    try:
        return ARCHITECTURES[name.removesuffix(PAPER_SUFFIX)]
    except KeyError:
        raise ValueError(f"unknown learned policy {name!r}; choose from {', '.join(LEARNED)}") from None
