"""Train the learned policies of Section 5 (nn, nnm, mdr, cvx, dlm) through their stages.

:func:`train_policy` takes one :class:`policies.dlm.config.TrainConfig` (every
setting of the run; ``examples/train.py`` builds it from its flags), builds a
fresh network (or starts from a checkpoint of a prefix of the policy's
stages), runs the stages of :data:`policies.dlm.architectures.ARCHITECTURES`
in order, logs a learning curve (:mod:`policies.common.curves`: the stage's
loss, and the executed object-trajectory loss on the train, finetune and
``eval_splits`` splits) to ``<stem>_log.csv`` beside the checkpoint, and saves
the model with :func:`policies.dlm.models.save_checkpoint` together with its
config and the exact command that regenerates it (:meth:`TrainConfig.command`).

Presets: :data:`policies.dlm.config.PAPER` is the paper's literal schedule
(100 full-batch Adam steps per stage at learning rate 1e-4, the paper's
architecture); :data:`policies.dlm.config.DEFAULT` is what runs unless told
otherwise, chosen on validation tasks from fresh seeds (its docstring, and the
README's "Learned policies" section, give the study).

L_sim stages use the finite-difference gradient through the pymunk scene
(:func:`policies.dlm.simgrad.sim_loss_fd`, the paper's method) by default, or the
smoothed torch simulator (:func:`policies.dlm.diffsim.sim_loss_autodiff`) with
``sim_grad="autodiff"``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.datasets import load_corpus
from policies.common.curves import CurveLog
from policies.common.errors import CheckpointKindError
from policies.dlm.architectures import ARCHITECTURES, LEARNED
from policies.dlm.config import DEFAULT, PAPER, TrainConfig
from policies.dlm.losses import (
    SplitData,
    executed_losses,
    lnn_loss,
    lp_loss,
    lqp_loss,
    make_lsim_loss,
    split_data,
    train_stage,
)
from policies.dlm.models import DLMNet, NNNet, load_checkpoint, save_checkpoint

__all__ = [
    "LEARNED",
    "TrainConfig",
    "DEFAULT",
    "PAPER",
    "load_split_data",
    "build_model",
    "train_policy",
]

_NETWORKS = {"dlm": DLMNet, "nn": NNNet}
"""Network class of each :attr:`Architecture.network <policies.dlm.architectures.Architecture.network>`."""


# ------------------------------------------------------------------- data
load_split_data = split_data
"""A split as training tensors: names or .npz paths (e.g. validation sets from ``generate_split``)."""


def build_model(
    name: str, *, latent_dim: int = 75, lstm_layers: int = 5, scene_config: SceneConfig = DEFAULT_CONFIG
) -> DLMNet | NNNet:
    """A fresh network for policy ``name`` (DLMNet for mdr/cvx/dlm, NNNet for nn/nnm)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown learned policy {name!r}; choose from {', '.join(LEARNED)}")
    cls = _NETWORKS[ARCHITECTURES[name].network]
    return cls(scene_config, latent_dim=latent_dim, lstm_layers=lstm_layers)


def _sim_loss(kind: str, config: SceneConfig) -> Callable:
    if kind == "fd":
        from policies.dlm.simgrad import sim_loss_fd

        return lambda tasks, commands: sim_loss_fd(tasks, commands, config=config)
    if kind == "autodiff":
        from policies.dlm.diffsim import sim_loss_autodiff

        return lambda tasks, commands: sim_loss_autodiff(tasks, commands.double(), config=config).float()
    raise ValueError(f"sim_grad must be 'fd' or 'autodiff', got {kind!r}")


def _stage_loss(stage: str, sim_grad: str, config: SceneConfig) -> Callable:
    if stage == "L_P":
        return lp_loss
    if stage == "L_QP":
        return lqp_loss
    if stage == "L_NN":
        return lnn_loss
    if stage == "L_sim":
        return make_lsim_loss(_sim_loss(sim_grad, config))
    raise ValueError(stage)


def _minibatched(loss_fn, batch_size: int | None, generator: torch.Generator):
    """``loss_fn`` on a fresh random subset of ``batch_size`` tasks per call (``None``: the whole split)."""
    if batch_size is None:
        return loss_fn

    def loss(model, data: SplitData):
        n = len(data.tasks)
        if batch_size >= n:
            return loss_fn(model, data)
        idx = torch.randperm(n, generator=generator)[:batch_size]
        sub = SplitData(
            name=data.name,
            tasks=[data.tasks[i] for i in idx.tolist()],
            videos=data.videos[idx],
            p_vectors=data.p_vectors[idx],
            log_inertia=data.log_inertia[idx],
            commands=data.commands[idx],
        )
        return loss_fn(model, sub)

    return loss


def _streamed(loss_fn, corpus, batch_size: int, seed: int, config: SceneConfig):
    """``loss_fn`` on the next minibatch of a training corpus per call (one shard in memory at a time).

    The ``data`` argument the trainer passes (the corpus's first shard, which also gives the label statistics and
    the logged ``train`` curve) is ignored: every Adam step reads ``batch_size`` fresh tasks from the stream,
    shuffled per epoch by ``seed`` (:meth:`dlm_gym.datasets.Corpus.iter_minibatches`).
    """
    stream = corpus.iter_minibatches(batch_size, seed=seed, epochs=None, drop_last=True)

    def loss(model, data: SplitData):
        return loss_fn(model, split_data(next(stream), config))

    return loss


def _deterministic(loss_fn):
    """``loss_fn`` with dropout off and batch-norm on its running statistics: the network as it is executed."""

    def loss(model, data: SplitData):
        model.eval()
        return loss_fn(model, data)

    return loss


def _prefix_policy(name: str, stages_done: int) -> str | None:
    """The policy whose stages are the first ``stages_done`` of ``name``'s, if any."""
    stages = ARCHITECTURES[name].stages[:stages_done]
    for other, architecture in ARCHITECTURES.items():
        if len(architecture.stages) == stages_done and architecture.stages == stages:
            return other
    return None


# --------------------------------------------------------------- training
def train_policy(config: TrainConfig, *, progress: bool = True, scene_config: SceneConfig = DEFAULT_CONFIG) -> Path:
    """Train learned policy ``config.policy`` through its stages and write its checkpoint.

    Every setting of the run is a field of ``config`` (see :class:`policies.dlm.config.TrainConfig` for each;
    :data:`policies.dlm.config.PAPER` is the paper's schedule). In short: ``iterations``/``lr`` drive the
    supervised stages, ``sim_iterations``/``sim_lr`` the L_sim stage of dlm and nnm; ``init_checkpoint`` starts
    from a checkpoint of a policy whose stages are a prefix of ``config.policy``'s (a ``cvx`` checkpoint for
    ``dlm``), skipping those stages, and takes its network size from it; another kind raises
    :class:`policies.CheckpointKindError` (a CheckpointError and a ValueError). ``threads`` sets
    ``torch.set_num_threads`` while training (restored afterwards).

    The checkpoint goes to ``config.out`` (default ``policies/checkpoints/<policy>_paper.pt``) with the config it
    was trained with (``extra["train_config"]``, :meth:`TrainConfig.from_checkpoint` reads it back) and the
    command that rebuilds it; the learning curve (:mod:`policies.common.curves`) to ``<stem>_log.csv`` beside
    it, written as ``<stem>_log.csv.partial`` and renamed once the checkpoint is saved, so an interrupted run
    never truncates an existing log.

    Args:
        config: the run's settings.
        progress: show a progress bar per stage (on a terminal).
        scene_config: the scene the policy acts in.

    Returns:
        The checkpoint path.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"train_policy takes a TrainConfig, got {type(config).__name__}; e.g. "
            "train_policy(dataclasses.replace(policies.dlm.config.DEFAULT, policy='cvx'))"
        )
    name = config.policy
    out_path = config.checkpoint_path
    config = dataclasses.replace(config, out=str(out_path))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(config, name, out_path, progress, scene_config)
    finally:
        torch.set_num_threads(previous_threads)


def _train(config: TrainConfig, name: str, out_path: Path, progress: bool, scene_config: SceneConfig) -> Path:
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)

    generator = torch.Generator().manual_seed(config.seed)
    start_stage = 0
    if config.init_checkpoint is not None:
        model, meta = load_checkpoint(config.init_checkpoint, scene_config)
        done = len(ARCHITECTURES[meta["policy"]].stages) if meta["policy"] in ARCHITECTURES else 0
        if _prefix_policy(name, done) != meta["policy"]:
            prefixes = [p for p, a in ARCHITECTURES.items() if _prefix_policy(name, len(a.stages)) == p and p != name]
            raise CheckpointKindError(
                f"{config.init_checkpoint} is a {meta['policy']!r} checkpoint, not a prefix of {name!r}'s stages; "
                + (
                    f"start {name} from a {' or '.join(prefixes)} checkpoint (e.g. `python examples/train.py "
                    f"--policy {prefixes[-1]}`), or "
                    if prefixes
                    else ""
                )
                + "train it from scratch without --init-checkpoint"
            )
        start_stage = done
        # the network is the checkpoint's: record its size, not the config's
        config = dataclasses.replace(config, **{k: model.hparams[k] for k in ("latent_dim", "lstm_layers")})
    else:
        model = build_model(
            name, latent_dim=config.latent_dim, lstm_layers=config.lstm_layers, scene_config=scene_config
        )

    cache: dict[str, SplitData] = {}
    # a training corpus (a directory) is streamed; TrainConfig has checked that it comes with a batch size
    corpus = load_corpus(config.train_split, config=scene_config) if Path(config.train_split).is_dir() else None

    def data(split: str) -> SplitData:
        if split not in cache:
            if corpus is not None and split == config.train_split:
                # the corpus's first shard stands for it: the label statistics and the logged train curve
                cache[split] = dataclasses.replace(split_data(corpus.shard(0), scene_config), name="train")
            else:
                cache[split] = load_split_data(split, scene_config)
        return cache[split]

    train, finetune = data(config.train_split), data(config.finetune_split)
    if isinstance(model, DLMNet) and config.init_checkpoint is None:
        model.set_label_statistics(train.p_vectors.numpy(), train.log_inertia.numpy())
    logged = (config.train_split, config.finetune_split)
    evals = [train, finetune] + [data(s) for s in config.eval_splits if s not in logged]

    # The curve is written to <log>.partial and published over the log only once the checkpoint is saved: an
    # interrupted run (or an error) leaves the previous log and checkpoint as they were, and the partial
    # curve beside them for a look.
    t0 = time.perf_counter()
    with CurveLog(config.log_path, [e.name for e in evals]) as log:
        for stage, split in ARCHITECTURES[name].stages[start_stage:]:
            sim = stage == "L_sim"
            stage_data = finetune if split == "finetune" else train
            stage_loss = _stage_loss(stage, config.sim_grad, scene_config)
            if corpus is not None and split == "train":
                assert config.batch_size is not None  # checked above
                loss_fn = _streamed(stage_loss, corpus, config.batch_size, config.seed, scene_config)
            else:
                loss_fn = _minibatched(stage_loss, config.batch_size, generator)
            if sim and config.sim_eval_mode:
                loss_fn = _deterministic(loss_fn)
            train_stage(
                model,
                stage,
                loss_fn,
                stage_data,
                iterations=config.sim_iterations if sim else config.iterations,
                lr=config.sim_lr if sim else config.lr,
                weight_decay=config.weight_decay,
                grad_clip=config.grad_clip,
                cosine=config.lr_schedule == "cosine",
                log=log,
                eval_sets=evals,
                eval_every=max(1, config.eval_every // 5) if sim else config.eval_every,
                progress=progress,
                clock_start=t0,
            )
        model.eval()
        seconds = time.perf_counter() - t0
        final = {e.name: executed_losses(model, e) for e in evals[:2]}
        extra = {
            "train_config": config.to_dict(),
            "train_seconds": seconds,
            "final_executed": {split: float(np.mean(losses)) for split, losses in final.items()},
            "final_executed_std": {split: float(np.std(losses)) for split, losses in final.items()},
        }
        saved = save_checkpoint(model, out_path, policy=name, command=config.command(), extra=extra)
        log.publish()
    return saved
