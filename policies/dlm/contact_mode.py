"""The contact-mode decision of the large-data DLM: which two candidate points the fingers take.

The oracle (:mod:`dlm_gym.oracle`) chooses N of the K candidate points per
facet (:func:`dlm_gym.oracle.contact_candidates`) by enumeration. Its choice
is often one of several nearly equivalent ones (paper Fig. 4: a square pushed
from either side), so regressing contact points averages the modes into a
point on no facet (measured: 99 % of the regressed points of a 5,000-task MDR
lay inside the object). Here the decision is a **classification over the
candidate pairs** of the task as estimated from the video:

- every candidate ``c`` gets features of what the QP of that contact would
  see (:func:`mode_features`): its friction-cone rays ``Gamma_c(t)`` and their
  torques, its lever arm ``p_c(t) - r(t)`` and height, per keyframe; every
  task gets a context: the required wrench ``M r''(t) + G``, the ground rays
  and which ground slots are empty, and the motion ``r(t) - r(0)``;
- :class:`ContactModeNet` embeds each candidate with the context and scores
  every unordered pair from the symmetric pair of embeddings; a softmax over
  the valid pairs is the mode distribution;
- it is trained with cross-entropy against a soft target over pairs
  (:func:`soft_pair_target`: the candidates near the oracle's contact points
  on the *estimated* polygon), so equivalent modes share probability mass and
  the argmax is one of them, never their average;
- at inference the top ``proposals`` pairs are handed to the oracle's
  keyframe QPs (``solve_oracle(..., combos=...)``), which keep the cheapest
  feasible one and solve its forces: the QP stage of the pipeline.

Lengths are in units of the object radius rho, forces in units of ``m g``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.oracle import ContactCandidates, KeyframeData

__all__ = [
    "candidate_feature_dim",
    "context_feature_dim",
    "mode_features",
    "pair_index",
    "soft_pair_target",
    "ContactModeNet",
    "LABEL_RADIUS",
]

LABEL_RADIUS = 0.01
"""Metres: sigma of the soft target, how far an estimated candidate may lie from the oracle's point and still
count for it (candidate spacing on a 10 cm facet is 1.7 cm; the estimated outline is 1-2 mm off)."""
_ENV_RAYS = 4  # 2 ground contacts x 2 rays (dlm_gym.mechanics.NUM_ENV_CONTACTS)


def candidate_feature_dim(config: SceneConfig = DEFAULT_CONFIG) -> int:
    """Per candidate: rays (T x 4), ray torques (T x 2), lever arm (T x 2), height (T), valid (1)."""
    return 9 * config.horizon + 1


def context_feature_dim(config: SceneConfig = DEFAULT_CONFIG) -> int:
    """Per task: wrench (T x 3), ground rays with torques (T x 3 x 4), empty slots (T x 4), motion (T x 3)."""
    return (3 + 3 * _ENV_RAYS + _ENV_RAYS + 3) * config.horizon


def mode_features(
    trajectory: np.ndarray, cands: ContactCandidates, data: KeyframeData, config: SceneConfig = DEFAULT_CONFIG
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate features ``(C, candidate_feature_dim)`` and context ``(context_feature_dim,)``, float32.

    Args:
        trajectory: ``(T, 3)`` the (estimated) task's poses.
        cands: its contact candidates.
        data: its keyframe QP data (:func:`dlm_gym.oracle.keyframe_data`), torques already divided by rho.
    """
    rho, mg = config.object_radius, config.mass * max(config.gravity, 1e-9)
    T, C = cands.positions.shape[:2]
    rays = np.transpose(data.G, (1, 0, 2, 3)).reshape(C, 4 * T)  # Gamma_c(t), unit rays
    torques = np.transpose(data.tq, (1, 0, 2)).reshape(C, 2 * T)
    lever = np.transpose(cands.positions - trajectory[:, None, :2], (1, 0, 2)).reshape(C, 2 * T) / rho
    height = cands.positions[..., 1].T / rho
    cand = np.concatenate([rays, torques, lever, height, cands.valid[:, None].astype(np.float64)], axis=1)
    motion = np.concatenate([(trajectory[:, :2] - trajectory[:1, :2]) / rho, trajectory[:, 2:] - trajectory[:1, 2:]], 1)
    context = np.concatenate([(data.w / mg).ravel(), data.Ae.ravel(), data.ce.ravel(), motion.ravel()])
    return cand.astype(np.float32), context.astype(np.float32)


@functools.lru_cache(maxsize=8)
def pair_index(num_candidates: int) -> np.ndarray:
    """``(P, 2)`` every unordered pair ``i < j`` of ``num_candidates``, in ``itertools.combinations`` order."""
    i, j = np.triu_indices(num_candidates, k=1)
    out = np.stack([i, j], axis=1).astype(np.int64)
    out.flags.writeable = False
    return out


def soft_pair_target(
    candidate_points: np.ndarray, valid: np.ndarray, oracle_points: np.ndarray, radius: float = LABEL_RADIUS
) -> np.ndarray | None:
    """The training target over the pairs of :func:`pair_index` (sums to 1), or None when no pair is near.

    Args:
        candidate_points: ``(C, 2)`` the estimated task's candidates at keyframe 0 (world metres).
        valid: ``(C,)`` which candidates clear the ground.
        oracle_points: ``(2, 2)`` the oracle's two contact points at keyframe 0 (world metres).
        radius: sigma of the Gaussian weight of a candidate's distance to an oracle point (cut at 2 sigma).

    A pair's weight is ``g_1(i) g_2(j) + g_2(i) g_1(j)``: the fingers are interchangeable.
    """
    d = np.linalg.norm(candidate_points[None, :, :] - oracle_points[:, None, :], axis=-1)  # (2, C)
    g = np.where((d < 2 * radius) & valid[None], np.exp(-0.5 * (d / radius) ** 2), 0.0)
    pairs = pair_index(len(candidate_points))
    w = g[0, pairs[:, 0]] * g[1, pairs[:, 1]] + g[1, pairs[:, 0]] * g[0, pairs[:, 1]]
    total = w.sum()
    return None if total <= 0 else (w / total).astype(np.float32)


class ContactModeNet(nn.Module):
    """Scores every unordered candidate pair of a task (paper Fig. 4's contact modes, as classes).

    ``h_c = phi([candidate_c, context])`` then ``s_ij = a(h_i) + a(h_j) + h_i^T S h_j`` with S symmetric: a
    unary preference per candidate and a bilinear complementarity of the two (opposite sides of a square,
    say), symmetric in the two fingers; the same weights serve any number of facets, and scoring all
    C (C - 1) / 2 pairs is one batched matrix product.

    Args:
        hidden: width of phi and psi.
        embed: size of the candidate embedding h.
    """

    def __init__(self, config: SceneConfig = DEFAULT_CONFIG, hidden: int = 128, embed: int = 64) -> None:
        super().__init__()
        n_in = candidate_feature_dim(config) + context_feature_dim(config)
        self.phi = nn.Sequential(
            nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, embed)
        )
        self.unary = nn.Linear(embed, 1)
        self.pairwise = nn.Parameter(torch.zeros(embed, embed))

    def forward(self, candidates: torch.Tensor, context: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Pair logits ``(B, P)`` over :func:`pair_index` of C; pairs with an invalid or padded candidate get -inf.

        Args:
            candidates: ``(B, C, candidate_feature_dim)`` (padded rows are ignored through ``valid``).
            context: ``(B, context_feature_dim)``.
            valid: ``(B, C)`` bool, False for invalid and padded candidates.
        """
        B, C, _ = candidates.shape
        h = self.phi(torch.cat([candidates, context[:, None].expand(B, C, -1)], dim=-1))  # (B, C, E)
        pairs = torch.from_numpy(pair_index(C).copy())
        S = 0.5 * (self.pairwise + self.pairwise.T)
        unary = self.unary(h).squeeze(-1)  # (B, C)
        scores = unary[:, :, None] + unary[:, None, :] + (h @ S) @ h.transpose(1, 2)  # (B, C, C), symmetric
        logits = scores[:, pairs[:, 0], pairs[:, 1]]
        ok = valid[:, pairs[:, 0]] & valid[:, pairs[:, 1]]
        return logits.masked_fill(~ok, float("-inf"))
