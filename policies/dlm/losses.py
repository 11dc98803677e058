"""The training losses of Section 5, L_P, L_QP, L_NN and L_sim, and the loop that runs one stage.

Which policy runs which stages, in which order, is
:data:`policies.dlm.architectures.ARCHITECTURES` (mdr: L_P; cvx: mdr, then
L_QP; dlm: cvx, then L_sim on finetune; nn: L_NN; nnm: nn, then L_sim); the
settings of a run are :class:`policies.dlm.config.TrainConfig`; the trainer
that puts them together is :func:`policies.dlm.trainer.train_policy`.

An iteration is one Adam step on the whole split (20 tasks) unless the trainer
draws minibatches. Every stage logs its loss and, every ``eval_every``
iterations, the object-trajectory loss of the current model executed in the
simulator on each logged split (Fig. 6), to a :class:`policies.common.curves.CurveLog`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.datasets import Split, load_split
from dlm_gym.geometry import polar_moment
from dlm_gym.mechanics import MechanicalParameters, to_vector
from dlm_gym.metrics import object_trajectory_loss
from dlm_gym.task import Task
from policies.common.curves import CurveLog
from policies.dlm.models import DLMNet, NNNet, command_scale
from policies.dlm.networks import video_to_tensor
from policies.dlm.simgrad import simulate

__all__ = [
    "SplitData",
    "split_data",
    "lp_loss",
    "lqp_loss",
    "lnn_loss",
    "make_lsim_loss",
    "executed_losses",
    "executed_loss",
    "train_stage",
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


def split_data(name: str | Path | Split, config: SceneConfig = DEFAULT_CONFIG) -> SplitData:
    """A split as training tensors: a shipped split's name, the path of a split ``.npz`` file, or a ``Split``."""
    split = name if isinstance(name, Split) else load_split(str(name))
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
    _, scale = command_scale(model.config)
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
def executed_losses(model: torch.nn.Module, data: SplitData) -> np.ndarray:
    """Object-trajectory loss (cm^2) per task of the model's commands executed in the pymunk scene, as in the env.

    The network runs in eval mode (no dropout, batch-norm running statistics), as it acts; its mode is restored.
    """
    was_training = model.training
    model.eval()
    commands = model.commands(data.videos).double().numpy()
    model.train(was_training)
    sim = simulate(data.tasks, commands, model.config)  # clipped to the action box, as the env does
    targets = np.stack([t.trajectory for t in data.tasks])
    return np.asarray(object_trajectory_loss(sim, targets), dtype=float)


def executed_loss(model: torch.nn.Module, data: SplitData) -> float:
    """Mean of :func:`executed_losses` over the split's tasks."""
    return float(np.mean(executed_losses(model, data)))


# ----------------------------------------------------------------- training
def train_stage(
    model: torch.nn.Module,
    stage: str,
    loss_fn: Callable[[torch.nn.Module, SplitData], torch.Tensor],
    data: SplitData,
    *,
    iterations: int = 100,
    lr: float = 1e-4,
    log: CurveLog | None = None,
    eval_sets: Sequence[SplitData] = (),
    eval_every: int = 10,
    progress: bool = True,
    weight_decay: float = 0.0,
    grad_clip: float | None = None,
    cosine: bool = False,
    clock_start: float | None = None,
) -> list[float]:
    """Run ``iterations`` Adam steps of ``loss_fn`` on ``data``; log losses and executed losses.

    ``weight_decay`` (AdamW-style, decoupled) and ``grad_clip`` (max global
    gradient norm) default to off, the paper's plain Adam; ``cosine`` decays
    the learning rate to zero over the stage (default off: constant).

    Every ``eval_every`` iterations and at the last, a row goes to ``log``: the
    iteration, the seconds since ``clock_start`` (a ``time.perf_counter()``
    value; default this stage's start), the loss, and the mean and standard
    deviation over the tasks of :func:`executed_losses` on each of ``eval_sets``.
    """
    if weight_decay:
        optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(iterations, 1)) if cosine else None
    history = []
    disable = None if progress else True  # None: off unless a terminal
    bar = tqdm(range(iterations), desc=stage, disable=disable, leave=False)
    start = time.perf_counter() if clock_start is None else clock_start
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
            seconds = time.perf_counter() - start
            executed = {}
            for ev in eval_sets:
                losses = executed_losses(model, ev)
                executed[ev.name] = (float(np.mean(losses)), float(np.std(losses)))
            log.write(stage, it, seconds, objective=loss.item(), executed=executed)
    return history
