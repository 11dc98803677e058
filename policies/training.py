"""Training stages of Section 5: L_P, L_QP, L_NN and L_sim, and the staged schedules.

Schedule (paper Section 5; Adam, learning rate 1e-4, 100 iterations per stage):

=======  ====================================================
policy   stages
=======  ====================================================
mdr      L_P on train
cvx      mdr, then L_QP on train
dlm      cvx, then L_sim on finetune
nn       L_NN on train
nnm      nn, then L_sim on finetune
=======  ====================================================

An iteration is one Adam step on the whole split (20 tasks). Every stage logs
its loss and, every ``eval_every`` iterations, the object-trajectory loss of
the current model executed in the simulator on each logged split (Fig. 6).
"""

from __future__ import annotations

import csv
import dataclasses
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.datasets import load_split
from dlm_gym.geometry import polar_moment
from dlm_gym.mechanics import MechanicalParameters, to_vector
from dlm_gym.metrics import object_trajectory_loss
from dlm_gym.task import Task
from policies.models import DLMNet, NNNet, _command_scale
from policies.networks import video_to_tensor
from policies.simgrad import simulate

__all__ = [
    "SplitData",
    "split_data",
    "lp_loss",
    "lqp_loss",
    "lnn_loss",
    "make_lsim_loss",
    "executed_loss",
    "train_stage",
    "STAGES",
]

#: q of eq. 7: the weight of the slack |eps| in L_QP (the paper's q_eps = 0.1)
Q_SLACK = 0.1


@dataclasses.dataclass
class SplitData:
    """A split as training tensors."""

    name: str
    tasks: list[Task]
    videos: torch.Tensor  # (n, T, 3, H, W) float
    p_vectors: torch.Tensor  # (n, T * 55) P(t) labels
    log_inertia: torch.Tensor  # (n,)
    commands: torch.Tensor  # (n, T, N, 4) oracle commands


def split_data(name: str | Path, config: SceneConfig = DEFAULT_CONFIG) -> SplitData:
    """A split as training tensors: a shipped split's name or the path of a split ``.npz`` file."""
    split = load_split(str(name))
    params = MechanicalParameters.from_dict(split.params)
    return SplitData(
        name=split.name,
        tasks=split.tasks,
        videos=video_to_tensor(split.videos),
        p_vectors=torch.as_tensor(to_vector(params, config), dtype=torch.float32),
        log_inertia=torch.log(torch.tensor([polar_moment(t.polygon, config.mass) for t in split.tasks])).float(),
        commands=torch.as_tensor(split.commands, dtype=torch.float32),
    )


# ------------------------------------------------------------------ losses
def lp_loss(model: DLMNet, data: SplitData) -> torch.Tensor:
    """L_P (eq. 5): squared error of the standardised P(t) (and log inertia) against the oracle's labels."""
    pred = model(data.videos)
    target_p = (data.p_vectors - model.p_mean) / model.p_std
    mean, std = model.log_inertia_stats
    target = torch.cat([target_p, ((data.log_inertia - mean) / std)[:, None]], dim=1)
    return ((pred - target) ** 2).mean()


def lqp_loss(model: DLMNet, data: SplitData) -> torch.Tensor:
    """L_QP (eq. 7): ``q |eps| + ||p* - p||^2 + ||lambda* - lambda||^2`` through the QP layer.

    Positions and forces are measured in the action normalisation (view
    half-width, force limit) so that metres and newtons weigh alike.
    """
    fields, inertia = model.unpack(model(data.videos))
    sol = model.solve(fields, inertia)
    commands = torch.cat([sol.finger_positions, sol.finger_forces], dim=-1)
    _, scale = _command_scale(model.config)
    err = (commands - data.commands) / scale
    return Q_SLACK * sol.slack.abs().mean() + (err**2).mean()


def lnn_loss(model: NNNet, data: SplitData) -> torch.Tensor:
    """L_NN: squared error of the normalised finger commands (positions and forces) against the oracle's."""
    return ((model(data.videos) - model.normalise(data.commands)) ** 2).mean()


SimLoss = Callable[[Sequence[Task], torch.Tensor], torch.Tensor]


def make_lsim_loss(sim_loss: SimLoss) -> Callable[[torch.nn.Module, SplitData], torch.Tensor]:
    """L_sim (eq. 10): the object-trajectory loss of the model's commands run through a differentiable simulator."""

    def loss(model, data: SplitData) -> torch.Tensor:
        return sim_loss(data.tasks, model.commands(data.videos)).mean()

    return loss


@torch.no_grad()
def executed_loss(model: torch.nn.Module, data: SplitData) -> float:
    """Mean object-trajectory loss of the model's commands executed in the pymunk scene (as the env plays them)."""
    was_training = model.training
    model.eval()
    commands = model.commands(data.videos).double().numpy()
    model.train(was_training)
    sim = simulate(data.tasks, commands, model.config)  # clipped to the action box, as the env does
    targets = np.stack([t.trajectory for t in data.tasks])
    return float(np.mean(object_trajectory_loss(sim, targets)))


# ----------------------------------------------------------------- training
def train_stage(
    model: torch.nn.Module,
    stage: str,
    loss_fn: Callable[[torch.nn.Module, SplitData], torch.Tensor],
    data: SplitData,
    *,
    iterations: int = 100,
    lr: float = 1e-4,
    log: csv.writer | None = None,
    eval_sets: Sequence[SplitData] = (),
    eval_every: int = 10,
    progress: bool = True,
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    cosine: bool = False,
) -> list[float]:
    """Run ``iterations`` Adam steps of ``loss_fn`` on ``data``; log losses and executed losses.

    ``weight_decay`` (AdamW-style, decoupled) and ``grad_clip`` (max global
    gradient norm) default to off, the paper's plain Adam; ``cosine`` decays
    the learning rate to zero over the stage (default off: constant).
    """
    if weight_decay:
        optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(iterations, 1)) if cosine else None
    history = []
    bar = tqdm(range(iterations), desc=stage, disable=None if progress else True, leave=False)  # None: off unless a terminal
    start = time.perf_counter()
    for it in bar:
        model.train()
        optimiser.zero_grad()
        loss = loss_fn(model, data)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{stage}: loss became {loss.item()} at iteration {it}; lower the learning rate")
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimiser.step()
        if scheduler is not None:
            scheduler.step()
        history.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4g}")
        last = it == iterations - 1
        if log is not None and (it % eval_every == 0 or last):
            row = {"stage": stage, "iteration": it, "loss": loss.item(), "seconds": time.perf_counter() - start}
            for ev in eval_sets:
                row[f"executed_{ev.name}"] = executed_loss(model, ev)
            log.writerow(row)
    return history


STAGES = {
    "mdr": [("L_P", "train")],
    "cvx": [("L_P", "train"), ("L_QP", "train")],
    "dlm": [("L_P", "train"), ("L_QP", "train"), ("L_sim", "finetune")],
    "nn": [("L_NN", "train")],
    "nnm": [("L_NN", "train"), ("L_sim", "finetune")],
}
"""Each policy's stages from scratch: (loss, split)."""


def open_log(path: Path, eval_names: Sequence[str]):
    """A CSV learning-curve log with one column per evaluated split."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("w", newline="")
    fields = ["stage", "iteration", "loss", "seconds", *[f"executed_{n}" for n in eval_names]]
    writer = csv.DictWriter(handle, fieldnames=fields)
    writer.writeheader()
    return handle, writer
