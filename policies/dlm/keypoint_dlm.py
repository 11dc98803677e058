"""The large-data DLM: derender what the video shows, choose the contact mode, solve the QP, correct by L_sim.

The paper's stages (Fig. 2), redesigned after what the measurements of issue 10 showed
(``docs/design.md`` section 10):

1. **Derendering P(t).** Only what a silhouette shows is estimated:

   - the poses, by :class:`~policies.dlm.networks.KeypointEncoder` and
     :class:`~policies.dlm.networks.PoseHead` (learned, L_P on the corpus):
     centroids in the world frame and rotations relative to the first
     keyframe (0.8 mm and 0.6 degrees median on validation tasks, where a
     pooled latent with a BiLSTM was 10.8 mm off and learned no rotation);
   - the geometry, as the first frame's outline in the world frame
     (:func:`policies.oracle.derender.first_frame_outline`, scikit-image);
   - the contact mode, by :class:`~policies.dlm.contact_mode.ContactModeNet`
     (learned, a classifier over the estimated task's candidate pairs).

2. **QP.** The oracle's keyframe QPs on the classifier's top ``proposals``
   pairs (:func:`dlm_gym.oracle.solve_oracle` with ``combos=``) keep the
   cheapest feasible one and give its points ``p_c(t)`` and forces
   ``lambda_c(t)``; a residual head on the forces (zero at initialisation) is
   trained on L_QP against the oracle's commands (``cvx``).

3. **L_sim** (``dlm``). The classifier learns from the simulator which of its
   proposals execute best (each proposal's plan, :func:`dlm_gym.oracle.plan_combos`,
   played in pymunk) and then picks the best-scored feasible proposal
   (``rank_by_score``); the force head is fine-tuned by finite differences
   through pymunk (:mod:`policies.dlm.simgrad`).

The zoo's ``mdr``, ``cvx`` and ``dlm`` are this network after stages 1, 2 and 3
(``examples/train_large.py``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from dlm_gym.actions import action_scale_offset, clip_command, noop_commands
from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.oracle import contact_candidates, keyframe_data, plan_combos, solve_oracle
from dlm_gym.task import Task
from policies.common.errors import DerenderError
from policies.dlm.contact_mode import ContactModeNet, context_feature_dim, mode_features, pair_index
from policies.dlm.networks import KeypointEncoder, PoseHead, video_to_tensor

__all__ = ["KeypointDLM", "ModeInputs", "Derendered", "PLANNED"]

PLANNED = ("top", "wider", "full")
"""Statuses of :meth:`KeypointDLM.solve` where the QP found a plan (the others leave the fingers clear)."""


@dataclasses.dataclass
class Derendered:
    """What the network reads off a batch of videos: estimated tasks (None where derendering failed)."""

    tasks: list[Task | None]
    positions: np.ndarray
    """``(B, T, 2)`` estimated centroids, world metres."""
    angles: np.ndarray
    """``(B, T)`` estimated rotations relative to keyframe 0."""
    errors: list[str | None]


@dataclasses.dataclass
class ModeInputs:
    """Padded inputs of the contact-mode classifier for a batch of estimated tasks."""

    candidates: torch.Tensor
    """``(B, C_max, candidate_feature_dim)``."""
    context: torch.Tensor
    """``(B, context_feature_dim)``."""
    valid: torch.Tensor
    """``(B, C_max)`` bool."""
    points: list[np.ndarray | None]
    """Per task, its candidates' keyframe-0 world points ``(C, 2)`` (None without a task)."""


class KeypointDLM(nn.Module):
    """Video -> (poses, outline) -> contact mode -> QP -> residual commands; see the module docstring.

    Args:
        config: the scene.
        keypoints, channels, depth, hidden: the pose network (:class:`KeypointEncoder`, :class:`PoseHead`).
        mode_hidden, mode_embed: the contact-mode classifier (:class:`ContactModeNet`).
        proposals: pairs handed to the QP, best first.
        command_hidden: width of the residual command head.
    """

    kind = "keypoint_dlm"
    HPARAMS = ("keypoints", "channels", "depth", "hidden", "mode_hidden", "mode_embed", "proposals", "command_hidden")
    hparams: dict[str, int]
    rank_by_score: torch.Tensor
    offset: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self,
        config: SceneConfig = DEFAULT_CONFIG,
        keypoints: int = 8,
        channels: int = 16,
        depth: int = 2,
        hidden: int = 64,
        mode_hidden: int = 128,
        mode_embed: int = 64,
        proposals: int = 8,
        command_hidden: int = 128,
    ) -> None:
        super().__init__()
        self.config = config
        self.encoder = KeypointEncoder(keypoints, channels, depth, config)
        self.head = PoseHead(keypoints, channels, hidden)
        self.contact_mode = ContactModeNet(config, mode_hidden, mode_embed)
        n_cmd = config.horizon * config.num_fingers * 4
        last = nn.Linear(command_hidden, n_cmd)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.command_head = nn.Sequential(
            nn.Linear(n_cmd + context_feature_dim(config), command_hidden), nn.ReLU(), last
        )
        scale, offset = action_scale_offset(config, like=torch.zeros(()))
        # False: the QP keeps the cheapest feasible proposal (mdr, cvx); True: the best-scored one, once
        # the classifier has learned from executed losses (dlm's L_sim stage)
        self.register_buffer("rank_by_score", torch.tensor(False))
        self.register_buffer("offset", offset)
        self.register_buffer("scale", scale)
        self.proposals = proposals
        self.hparams = {
            "keypoints": keypoints,
            "channels": channels,
            "depth": depth,
            "hidden": hidden,
            "mode_hidden": mode_hidden,
            "mode_embed": mode_embed,
            "proposals": proposals,
            "command_hidden": command_hidden,
        }

    # ------------------------------------------------------------------ stage 1: derendering
    def poses(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """Float video ``(B, T, 3, S, S)`` -> ``position`` ``(B, T, 2)``, ``rotation``, ``angle`` (PoseHead's dict)."""
        return self.head(self.encoder(video))

    @torch.no_grad()
    def derender(self, videos: np.ndarray) -> Derendered:
        """Estimated tasks of uint8 videos ``(B, T, S, S, 3)``: learned poses on the first frame's outline."""
        from policies.oracle.derender import first_frame_outline, task_from_poses

        out = self.poses(video_to_tensor(videos))
        positions, angles = out["position"].double().numpy(), out["angle"].double().numpy()
        tasks: list[Task | None] = []
        errors: list[str | None] = []
        for video, pos, ang in zip(videos, positions, angles, strict=True):
            try:
                tasks.append(task_from_poses(first_frame_outline(video, self.config), pos, ang))
                errors.append(None)
            except DerenderError as exc:
                tasks.append(None)
                errors.append(str(exc))
        return Derendered(tasks, positions, angles, errors)

    def mode_inputs(self, tasks: list[Task | None]) -> ModeInputs:
        """The classifier's padded inputs (a task that failed to derender gets no valid candidate)."""
        cfg = self.config
        feats: list[np.ndarray | None] = []
        ctxs: list[np.ndarray] = []
        points: list[np.ndarray | None] = []
        for task in tasks:
            if task is None:
                feats.append(None)
                ctxs.append(np.zeros(context_feature_dim(cfg), np.float32))
                points.append(None)
                continue
            cands = contact_candidates(task, cfg)
            cand, ctx = mode_features(task.trajectory, cands, keyframe_data(task, cands, cfg), cfg)
            feats.append(cand)
            ctxs.append(ctx)
            points.append(cands.positions[0])
        width = max([len(f) for f in feats if f is not None], default=2)
        dim = next((f.shape[1] for f in feats if f is not None), 1)
        cand_t = np.zeros((len(tasks), width, dim), np.float32)
        valid = np.zeros((len(tasks), width), bool)
        for b, f in enumerate(feats):
            if f is not None:
                cand_t[b, : len(f)] = f
                valid[b, : len(f)] = f[:, -1] > 0.5  # the last feature is the candidate's validity
        return ModeInputs(torch.from_numpy(cand_t), torch.from_numpy(np.stack(ctxs)), torch.from_numpy(valid), points)

    # ------------------------------------------------------------------ stage 2: the QP on proposed modes
    def solve(
        self, tasks: list[Task | None], logits: torch.Tensor, num_candidates: int
    ) -> tuple[np.ndarray, list[str]]:
        """QP commands ``(B, T, N, 4)`` on the top proposals per task, and what happened per task.

        ``logits`` are the classifier's ``(B, P)`` scores over :func:`pair_index` of ``num_candidates``.

        Among the top ``proposals`` pairs the QP keeps the cheapest feasible one (eq. 11's cost), or,
        once the classifier has been trained on L_sim (``rank_by_score``), the best-scored feasible
        one. If none is feasible, the next ``4 x proposals`` pairs; if none of those either, every pair
        (the oracle's enumeration on the estimated task: ``full``, rare and slower); if the estimate has
        no feasible pair at all, or the video was not derendered, the fingers stay clear (noop).
        """
        cfg = self.config
        out = np.repeat(noop_commands(cfg)[None], len(tasks), axis=0)
        status = []
        pairs = pair_index(num_candidates)
        for b, task in enumerate(tasks):
            if task is None:
                status.append("not_derendered")
                continue
            order = self.ranked_pairs(logits[b])
            stages: tuple[tuple[int, int, str], ...]
            if bool(self.rank_by_score):
                plans = self.proposal_plans(task, pairs[order[: self.proposals]])
                ok = next((p for p in plans if p.ok), None)
                if ok is not None:
                    out[b] = ok.commands()
                    status.append("top")
                    continue
                order = order[self.proposals :]
                stages = ((0, 4 * self.proposals, "wider"),)
            else:
                stages = ((0, self.proposals, "top"), (self.proposals, 5 * self.proposals, "wider"))
            for lo, hi, tag in stages:
                chosen = order[lo:hi]
                if chosen.size == 0:
                    continue
                plan = solve_oracle(task, cfg, combos=pairs[chosen], time_limit=10.0)
                if plan.ok:
                    out[b] = plan.commands()
                    status.append(tag)
                    break
            else:  # the classifier missed every feasible mode: search them all
                plan = solve_oracle(task, cfg, time_limit=10.0)
                if plan.ok:
                    out[b] = plan.commands()
                status.append("full" if plan.ok else "infeasible")
        return out, status

    @staticmethod
    def ranked_pairs(logits_row: torch.Tensor) -> np.ndarray:
        """Indices of one task's valid pairs, best score first (ties in pair order)."""
        row = logits_row.detach().double().numpy()
        return np.argsort(-row, kind="stable")[: int(np.isfinite(row).sum())]

    def proposal_plans(self, task: Task, combos: np.ndarray) -> list:
        """The QP's plan (:class:`dlm_gym.oracle.OraclePlan`) for each proposed pair on its own, in order."""
        return plan_combos(task, combos, self.config)

    # ------------------------------------------------------------------ stage 3: the command head
    def normalise(self, commands: torch.Tensor) -> torch.Tensor:
        return (commands - self.offset) / self.scale

    def corrected(self, qp_commands: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """QP commands ``(B, T, N, 4)`` with the head's residual on the forces, clipped to the action box.

        Only the forces ``lambda_c(t)`` are corrected: the contact points stay where the QP put them, on
        the estimated surface. A head that could move them learned, under L_sim, to push 14 % of them
        more than 5 mm inside the object, for a small gain the physics should not give (0.14 cm^2 of
        1.00 on 100 validation tasks, against their surface twins; ``examples/exploit_check.py``).
        """
        B = qp_commands.shape[0]
        x = torch.cat([self.normalise(qp_commands).reshape(B, -1), context], dim=-1)
        delta = self.command_head(x).reshape(qp_commands.shape)
        forces_only = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=delta.dtype)
        return clip_command(qp_commands + delta * forces_only * self.scale, self.config)

    # ------------------------------------------------------------------ the whole pipeline
    @torch.no_grad()
    def plan_videos(self, videos: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Keyframe commands ``(B, T, N, 4)`` (metres, newtons) for uint8 videos ``(B, T, S, S, 3)``, and
        per video how the contact mode was found (``top``, ``wider``, ``full``, ``infeasible``,
        ``not_derendered``; see :meth:`solve`)."""
        was = self.training
        self.eval()
        try:
            der = self.derender(np.asarray(videos))
            inputs = self.mode_inputs(der.tasks)
            logits = self.contact_mode(inputs.candidates, inputs.context, inputs.valid)
            qp, status = self.solve(der.tasks, logits, inputs.candidates.shape[1])
            cmd = self.corrected(torch.from_numpy(qp).float(), inputs.context).double().numpy()
            planned = np.array([s in PLANNED for s in status])
            return np.where(planned[:, None, None, None], cmd, qp), status  # noop stays noop
        finally:
            self.train(was)
