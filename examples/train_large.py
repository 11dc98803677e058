"""Train the large-data DLM on a corpus: mdr (poses + contact mode + QP), cvx (+ L_QP), dlm (+ L_sim).

The network is :class:`policies.dlm.keypoint_dlm.KeypointDLM` (design: ``docs/design.md`` section 10).
Its pose network is trained first, by the encoder study on the corpus (25 min on one core)::

    python examples/encoder_study.py --models keypoint --moments-tasks 0 --train-seconds 100000 \\
        --max-steps 5600 --seed 0 --out runs/pose_seeds/seed0

then this script, top to bottom:

1. **mdr**: the pose weights are loaded; the first ``--mode-tasks`` corpus
   tasks are derendered by the network (learned poses, the first frame's
   outline); each gets the contact-mode classifier's inputs and a soft target
   over candidate pairs from the oracle's contacts; the classifier is trained
   by cross-entropy. The epoch with the lowest validation cross-entropy is kept.
2. **cvx**: the QP solves every training task on the classifier's proposals;
   the residual force head is trained on L_QP (squared distance to the
   oracle's commands, in action units) over the tasks whose chosen contacts
   are the oracle's. Kept at the step with the lowest executed validation loss
   (step 0, no correction, included).
3. **dlm**, L_sim over ``--sim-tasks`` corpus tasks no earlier stage saw:
   (a) each task's top ``--proposals`` pairs are planned by the QP and played
   in pymunk, and the classifier learns to rank them by their executed losses
   (cross-entropy against a softmin of the losses); it then picks the
   best-scored feasible proposal, if validation says that beats the QP's
   cheapest; (b) the force head is fine-tuned on the first ``--fd-tasks`` of
   them by central finite differences through pymunk
   (:func:`policies.dlm.simgrad.fd_gradient`). Each part is kept at its epoch
   with the lowest validation loss (epoch 0 included).

Validation uses split files of our own seeds (never a shipped split); the
executed loss plays the commands in the same physics as the environment
(:func:`policies.dlm.simgrad.simulate`, bit for bit). Writes to ``--out``:
``mdr.pt``, ``cvx.pt``, ``dlm.pt`` (zoo checkpoints), ``curve.csv`` (the zoo's
learning-curve format) and ``summary.json``. About 20 minutes on 2 cores.

Example (the shipped checkpoints, seeds 0, 1, 2)::

    python examples/train_large.py --pose runs/pose_seeds/seed0/keypoint.pt --seed 0 --out runs/large_dlm/seed0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dlm_gym import cli

DEFAULT_VAL = ("runs/encoder_study/val/family.npz", "runs/encoder_study/val/test.npz")


def _split_files(text: str) -> tuple[Path, ...]:
    paths = tuple(cli.existing_file(t.strip()) for t in text.split(",") if t.strip())
    if not paths:
        raise argparse.ArgumentTypeError("give at least one validation split file")
    return paths


@dataclasses.dataclass(frozen=True)
class Config:
    """The run's one configuration and record; every field is a flag (``--mode-tasks`` for ``mode_tasks``)."""

    pose: Path = dataclasses.field(
        default=Path("runs/pose_seeds/seed0/keypoint.pt"),
        metadata={"help": "pose network from examples/encoder_study.py (keypoint.pt)", "type": cli.existing_file},
    )
    corpus: Path = dataclasses.field(
        default=Path("runs/corpus"), metadata={"help": "training corpus directory", "type": cli.existing_dir}
    )
    val: tuple[Path, ...] = dataclasses.field(
        default=tuple(Path(p) for p in DEFAULT_VAL),
        metadata={"help": "comma list of validation split files of your own seeds", "type": _split_files},
    )
    val_tasks: int = dataclasses.field(
        default=150, metadata={"help": "first N tasks of each validation split", "type": cli.positive_int}
    )
    out: Path = dataclasses.field(
        default=Path("runs/large_dlm/seed0"), metadata={"help": "output folder", "type": cli.output_dir}
    )
    mode_tasks: int = dataclasses.field(
        default=4000, metadata={"help": "corpus tasks for the contact-mode classifier", "type": cli.positive_int}
    )
    mode_epochs: int = dataclasses.field(default=40, metadata={"help": "classifier epochs", "type": cli.positive_int})
    mode_lr: float = dataclasses.field(
        default=1e-3, metadata={"help": "classifier Adam learning rate", "type": cli.finite_positive_float}
    )
    batch_size: int = dataclasses.field(default=64, metadata={"help": "minibatch size", "type": cli.positive_int})
    qp_tasks: int = dataclasses.field(
        default=2000,
        metadata={"help": "first N mode tasks solved by the QP for L_QP", "type": cli.non_negative_int},
    )
    qp_steps: int = dataclasses.field(
        default=400, metadata={"help": "L_QP steps of the command head", "type": cli.non_negative_int}
    )
    qp_lr: float = dataclasses.field(
        default=3e-4, metadata={"help": "L_QP Adam learning rate", "type": cli.finite_positive_float}
    )
    sim_tasks: int = dataclasses.field(
        default=1000,
        metadata={"help": "corpus tasks after the mode tasks for L_sim", "type": cli.non_negative_int},
    )
    mode_sim_epochs: int = dataclasses.field(
        default=30,
        metadata={"help": "L_sim epochs of the contact mode (ranking its proposals)", "type": cli.non_negative_int},
    )
    mode_sim_lr: float = dataclasses.field(
        default=3e-4, metadata={"help": "Adam learning rate of that ranking", "type": cli.finite_positive_float}
    )
    sim_temperature: float = dataclasses.field(
        default=1.0,
        metadata={
            "help": "cm^2: softmin temperature of the executed losses (the ranking target)",
            "type": cli.finite_positive_float,
        },
    )
    fd_tasks: int = dataclasses.field(
        default=300,
        metadata={
            "help": "first N sim tasks for the command head's finite-difference L_sim",
            "type": cli.non_negative_int,
        },
    )
    sim_epochs: int = dataclasses.field(
        default=10,
        metadata={"help": "finite-difference L_sim epochs of the command head", "type": cli.non_negative_int},
    )
    sim_lr: float = dataclasses.field(
        default=1e-4, metadata={"help": "L_sim Adam learning rate", "type": cli.finite_positive_float}
    )
    sim_batch: int = dataclasses.field(default=20, metadata={"help": "L_sim minibatch size", "type": cli.positive_int})
    proposals: int = dataclasses.field(
        default=8, metadata={"help": "contact pairs the classifier hands to the QP", "type": cli.positive_int}
    )
    seed: int = dataclasses.field(
        default=0, metadata={"help": "seeds torch and the shuffling", "type": cli.non_negative_int}
    )
    threads: int = dataclasses.field(default=1, metadata={"help": "torch threads", "type": cli.positive_int})
    progress: bool = dataclasses.field(default=False, metadata={"help": "print a line per epoch and stage"})

    def command(self) -> str:
        parts = ["python examples/train_large.py"]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                parts.append(flag if value else "--no-" + f.name.replace("_", "-"))
            elif isinstance(value, tuple):
                parts.append(f"{flag} {','.join(map(str, value))}")
            else:
                parts.append(f"{flag} {value}")
        return " ".join(parts)


def parse_config(argv: Sequence[str] | None = None) -> Config:
    p = cli.dataclass_parser(Config, __doc__)
    cfg = Config(**vars(p.parse_args(argv)))
    from dlm_gym.datasets import DATA_DIR

    for path in cfg.val:
        if path.resolve().parent == Path(DATA_DIR).resolve():
            p.error(f"{path} is a shipped split; validate on splits of your own seeds")
    if cfg.qp_tasks > cfg.mode_tasks:
        p.error(f"--qp-tasks ({cfg.qp_tasks}) must not exceed --mode-tasks ({cfg.mode_tasks})")
    return cfg


# ------------------------------------------------------------------ data
def corpus_items(corpus, start: int, stop: int) -> list:
    """Corpus tasks ``start .. stop - 1`` as SplitItems, reading only the shards that hold them."""
    items, seen = [], 0
    for k, size in enumerate(corpus.shard_sizes):
        if seen + size > start and seen < stop:
            shard = corpus.shard(k)
            items.extend(shard[max(start - seen, 0) : min(stop - seen, size)])
        seen += size
        if seen >= stop:
            break
    if len(items) < stop - start:
        raise ValueError(f"the corpus has {len(corpus)} tasks, fewer than the {stop} these settings need")
    return items


def featurize(model, items, batch: int = 64) -> dict:
    """Derender every item; the classifier's inputs (ragged, as object arrays) and its soft targets."""
    from policies.dlm.contact_mode import soft_pair_target

    out = {"cand": [], "ctx": [], "target": [], "points": [], "ok": []}
    tasks_est = []
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        der = model.derender(np.stack([it.video for it in chunk]))
        inputs = model.mode_inputs(der.tasks)
        for b, it in enumerate(chunk):
            task = der.tasks[b]
            tasks_est.append(task)
            if task is None:  # two invalid rows (the last feature, validity, is 0): never a target, never chosen
                out["cand"].append(np.zeros((2, inputs.candidates.shape[2]), np.float32))
                out["ctx"].append(inputs.context[b].numpy())
                out["target"].append(None)
                out["points"].append(None)
                out["ok"].append(False)
                continue
            pts = inputs.points[b]
            C = len(pts)
            valid = inputs.valid[b, :C].numpy()
            target = soft_pair_target(pts, valid, np.asarray(it.commands)[0, :, :2])
            out["cand"].append(inputs.candidates[b, :C].numpy())
            out["ctx"].append(inputs.context[b].numpy())
            out["target"].append(target)
            out["points"].append(pts)
            out["ok"].append(target is not None)
    out["tasks"] = tasks_est
    return out


def pad_batch(feats: dict, idx: np.ndarray):
    """Padded classifier inputs and targets ``(B, P)`` for the given tasks."""
    import torch

    from policies.dlm.contact_mode import pair_index

    C = max(len(feats["cand"][i]) for i in idx)
    F = feats["cand"][idx[0]].shape[1]
    cand = np.zeros((len(idx), C, F), np.float32)
    valid = np.zeros((len(idx), C), bool)
    target = np.zeros((len(idx), len(pair_index(C))), np.float32)
    for b, i in enumerate(idx):
        c = feats["cand"][i]
        n = len(c)
        cand[b, :n] = c
        valid[b, :n] = c[:, -1] > 0.5
        t = feats["target"][i]
        if t is not None:
            own = pair_index(n)  # the task's own pairs sit at these rows of the padded index
            pos = own[:, 0] * C - own[:, 0] * (own[:, 0] + 1) // 2 + own[:, 1] - own[:, 0] - 1
            target[b, pos] = t
    ctx = np.stack([feats["ctx"][i] for i in idx])
    return torch.from_numpy(cand), torch.from_numpy(ctx), torch.from_numpy(valid), torch.from_numpy(target)


def mode_cross_entropy(model, feats: dict, idx: np.ndarray):
    import torch

    cand, ctx, valid, target = pad_batch(feats, idx)
    logits = model.contact_mode(cand, ctx, valid)
    logp = torch.log_softmax(logits, dim=-1)
    return -(target * torch.where(target > 0, logp, torch.zeros_like(logp))).sum(-1).mean(), logits, target


def executed(tasks, commands) -> np.ndarray:
    """Object-trajectory losses (cm^2) of commands played in the environment's physics."""
    from dlm_gym.metrics import object_trajectory_loss
    from policies.dlm.simgrad import simulate

    sim = simulate(tasks, commands)
    return np.array([object_trajectory_loss(s, t.trajectory) for s, t in zip(sim, tasks, strict=True)])


# ------------------------------------------------------------------ the run
def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(argv)
    try:
        return run(cfg)
    except (*cli.USER_ERRORS, ValueError) as exc:
        return cli.fail(exc)


def run(cfg: Config) -> int:  # noqa: C901  (one readable script, top to bottom)
    import torch

    from dlm_gym.actions import noop_commands
    from dlm_gym.datasets import load_corpus, load_split
    from policies.common.curves import CurveLog
    from policies.dlm.keypoint_dlm import PLANNED, KeypointDLM
    from policies.dlm.models import save_checkpoint

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    say = print if cfg.progress else (lambda *a, **k: None)
    record = {"train_config": {k: str(v) for k, v in dataclasses.asdict(cfg).items()}}

    # ---- the model, with the pose network of the encoder study
    model = KeypointDLM(proposals=cfg.proposals)
    pose = torch.load(cfg.pose, map_location="cpu", weights_only=False)
    if not isinstance(pose, dict) or pose.get("model") != "keypoint":
        raise ValueError(f"{cfg.pose} is not a keypoint pose network of examples/encoder_study.py")
    missing = model.load_state_dict(pose["state_dict"], strict=False)
    if missing.unexpected_keys or any(k.startswith(("encoder.", "head.")) for k in missing.missing_keys):
        raise ValueError(f"{cfg.pose}: pose weights do not fit ({missing})")
    record["pose_command"] = pose.get("command", "") or "python examples/encoder_study.py"

    # ---- data: mode tasks, L_sim tasks (after them), validation tasks of our own seeds
    corpus = load_corpus(cfg.corpus)
    items = corpus_items(corpus, 0, cfg.mode_tasks)
    sim_items = corpus_items(corpus, cfg.mode_tasks, cfg.mode_tasks + cfg.sim_tasks) if cfg.sim_tasks else []
    val_items = [it for path in cfg.val for it in load_split(path)[: cfg.val_tasks]]
    say(f"{len(items)} mode tasks, {len(sim_items)} L_sim tasks, {len(val_items)} validation tasks")
    feats = featurize(model, items)
    vfeats = featurize(model, val_items)
    sfeats = featurize(model, sim_items) if sim_items else None
    train_idx = np.flatnonzero(feats["ok"])
    val_idx = np.flatnonzero(vfeats["ok"])
    record["mode_labelled"] = {"train": int(len(train_idx)), "val": int(len(val_idx))}
    say(f"derendered and labelled in {time.perf_counter() - start:.0f} s: {record['mode_labelled']}")
    val_tasks_true = [it.task for it in val_items]

    log = CurveLog(cfg.out / "curve.csv", splits=["val"])

    def val_executed(commands: np.ndarray) -> tuple[float, float]:
        losses = executed(val_tasks_true, commands)
        return float(losses.mean()), float(losses.std())

    # ---- stage 1 (mdr): the contact-mode classifier on L_P's contact part
    opt = torch.optim.Adam(model.contact_mode.parameters(), lr=cfg.mode_lr)
    best = (np.inf, None, 0)
    for epoch in range(cfg.mode_epochs + 1):
        if epoch:
            model.train()
            order = rng.permutation(train_idx)
            for i in range(0, len(order), cfg.batch_size):  # the last batch may be smaller
                loss, _, _ = mode_cross_entropy(model, feats, order[i : i + cfg.batch_size])
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            ce, logits, target = mode_cross_entropy(model, vfeats, val_idx)
            top1 = float((target.gather(1, logits.argmax(1, keepdim=True)) > 0).float().mean())
        log.write("L_P", epoch, time.perf_counter() - start, float(ce))
        say(f"[mdr] epoch {epoch:3d}  val CE {float(ce):.3f}  top-1 on an oracle mode {top1:.3f}")
        if float(ce) < best[0]:
            best = (float(ce), {k: v.clone() for k, v in model.contact_mode.state_dict().items()}, epoch)
    model.contact_mode.load_state_dict(best[1])
    record["mode"] = {"best_epoch": best[2], "val_cross_entropy": best[0]}

    # ---- the QP on the classifier's proposals (its commands do not change after this stage)
    def qp_commands(f: dict) -> tuple[np.ndarray, list[str], torch.Tensor]:
        cmds, status = [], []
        idx_all = np.arange(len(f["tasks"]))
        for i in range(0, len(idx_all), cfg.batch_size):
            idx = idx_all[i : i + cfg.batch_size]
            cand, ctx, valid, _ = pad_batch(f, idx)
            with torch.no_grad():
                logits = model.contact_mode(cand, ctx, valid)
            c, s = model.solve([f["tasks"][j] for j in idx], logits, cand.shape[1])
            cmds.append(c)
            status += s
        ctx_all = torch.from_numpy(np.stack(f["ctx"]))
        return np.concatenate(cmds), status, ctx_all

    t0 = time.perf_counter()
    val_qp, val_status, val_ctx = qp_commands(vfeats)
    mdr_val = val_executed(val_qp)
    record["mdr_val_executed"] = mdr_val
    record["mdr_val_status"] = {s: val_status.count(s) for s in set(val_status)}
    log.write("L_P", best[2], time.perf_counter() - start, best[0], executed={"val": mdr_val})
    say(f"[mdr] executed validation loss {mdr_val[0]:.2f} (std {mdr_val[1]:.2f}); {record['mdr_val_status']}")
    save_checkpoint(model, cfg.out / "mdr.pt", policy="mdr", command=cfg.command(), extra=record)

    qp_items = items[: cfg.qp_tasks]
    qfeats = {k: v[: cfg.qp_tasks] for k, v in feats.items()}
    train_qp, train_status, train_ctx = qp_commands(qfeats)
    say(f"QP on {len(qp_items)} + {len(val_items)} tasks in {time.perf_counter() - t0:.0f} s")

    planned = lambda status: np.array([s in PLANNED for s in status])  # noqa: E731

    def head_commands(qp: np.ndarray, ctx: torch.Tensor, status: list[str]) -> torch.Tensor:
        cmd = model.corrected(torch.from_numpy(qp).float(), ctx)
        keep = torch.from_numpy(planned(status))[:, None, None, None]
        return torch.where(keep, cmd, torch.from_numpy(qp).float())

    def head_val() -> tuple[float, float]:
        with torch.no_grad():
            return val_executed(head_commands(val_qp, val_ctx, val_status).double().numpy())

    # ---- stage 2 (cvx): the command head on L_QP, over tasks whose chosen contacts are the oracle's
    oracle = np.stack([np.asarray(it.commands) for it in qp_items])
    same = planned(train_status) & (np.linalg.norm(train_qp[:, 0, :, :2] - oracle[:, 0, :, :2], axis=-1).max(-1) < 0.01)
    # the fingers are interchangeable: also accept the swapped assignment
    swapped = planned(train_status) & (
        np.linalg.norm(train_qp[:, 0, ::-1, :2] - oracle[:, 0, :, :2], axis=-1).max(-1) < 0.01
    )
    oracle[swapped & ~same] = oracle[swapped & ~same][:, :, ::-1]
    qp_idx = np.flatnonzero(same | swapped)
    record["lqp_tasks"] = int(len(qp_idx))
    opt = torch.optim.Adam(model.command_head.parameters(), lr=cfg.qp_lr)
    best_head = (head_val(), {k: v.clone() for k, v in model.command_head.state_dict().items()}, 0)
    log.write("L_QP", 0, time.perf_counter() - start, None, executed={"val": best_head[0]})
    say(f"[cvx] {len(qp_idx)} L_QP tasks; step 0 executed validation {best_head[0][0]:.2f}")
    eval_every = max(cfg.qp_steps // 8, 1)
    target_all = model.normalise(torch.from_numpy(oracle).float())
    for step in range(1, cfg.qp_steps + 1):
        if not len(qp_idx):
            break
        idx = rng.choice(qp_idx, size=min(cfg.batch_size, len(qp_idx)), replace=False)
        model.train()
        pred = model.normalise(model.corrected(torch.from_numpy(train_qp[idx]).float(), train_ctx[idx]))
        loss = ((pred - target_all[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == cfg.qp_steps:
            model.eval()
            v = head_val()
            log.write("L_QP", step, time.perf_counter() - start, loss.item(), executed={"val": v})
            say(f"[cvx] step {step:4d}  L_QP {loss.item():.4f}  executed validation {v[0]:.2f}")
            if v[0] < best_head[0][0]:
                best_head = (v, {k: t.clone() for k, t in model.command_head.state_dict().items()}, step)
    model.command_head.load_state_dict(best_head[1])
    record["cvx"] = {"best_step": best_head[2], "val_executed": best_head[0]}
    save_checkpoint(model, cfg.out / "cvx.pt", policy="cvx", command=cfg.command(), extra=record)

    # ---- stage 3 (dlm), part 1: the contact mode learns from the simulator which proposals execute best
    from policies.dlm.contact_mode import pair_index

    def proposals_executed(f: dict, true_tasks: list) -> list[tuple[int, np.ndarray, np.ndarray] | None]:
        """Per task: its top proposals as candidate pairs ``(M, 2)`` and their executed losses (inf where the
        QP has no plan), the command head applied; None for a task without a feasible proposal."""
        rows: list[tuple[int, np.ndarray, np.ndarray] | None] = []
        for i in range(0, len(f["tasks"]), cfg.batch_size):
            idx = np.arange(i, min(i + cfg.batch_size, len(f["tasks"])))
            cand, ctx, valid, _ = pad_batch(f, idx)
            with torch.no_grad():
                logits = model.contact_mode(cand, ctx, valid)
            for b, j in enumerate(idx):
                task = f["tasks"][j]
                if task is None:
                    rows.append(None)
                    continue
                pairs = pair_index(cand.shape[1])[model.ranked_pairs(logits[b])[: cfg.proposals]]
                plans = model.proposal_plans(task, pairs)
                ok = np.array([p.ok for p in plans])
                if not ok.any():
                    rows.append(None)
                    continue
                cmds = np.stack([p.commands() if p.ok else plans_noop for p in plans])
                with torch.no_grad():
                    cmds = model.corrected(torch.from_numpy(cmds).float(), ctx[b : b + 1].expand(len(cmds), -1))
                losses = executed([true_tasks[j]] * len(plans), cmds.double().numpy())
                rows.append((int(j), pairs, np.where(ok, losses, np.inf)))
        return rows

    def pair_positions(pairs: np.ndarray, width: int) -> np.ndarray:
        i, j = pairs[:, 0], pairs[:, 1]
        return i * width - i * (i + 1) // 2 + j - i - 1  # row of (i, j) in pair_index(width)

    def ranking_loss(f: dict, rows: list, batch: list[int]) -> torch.Tensor:
        idx = np.array([rows[r][0] for r in batch])
        cand, ctx, valid, _ = pad_batch(f, idx)
        logits = model.contact_mode(cand, ctx, valid)
        pos = torch.from_numpy(np.stack([pair_positions(rows[r][1], cand.shape[1]) for r in batch]))
        losses = torch.from_numpy(np.stack([rows[r][2] for r in batch])).float()
        chosen = logits.gather(1, pos).masked_fill(torch.isinf(losses), float("-inf"))
        target = torch.softmax(-losses / cfg.sim_temperature, dim=1)  # inf loss -> weight 0
        logp = torch.log_softmax(chosen, dim=1)
        return -(target * torch.where(target > 0, logp, torch.zeros_like(logp))).sum(1).mean()

    def ranked_val(rows: list) -> float:
        """Mean executed validation loss when each task plays its best-scored feasible proposal (the
        proposals fixed); tasks without a feasible proposal count with their cvx loss."""
        total = np.asarray(val_losses_cvx, dtype=np.float64).copy()
        have = [r for r, row in enumerate(rows) if row is not None]
        if have:
            idx = np.array([rows[r][0] for r in have])
            cand, ctx, valid, _ = pad_batch(vfeats, idx)
            with torch.no_grad():
                logits = model.contact_mode(cand, ctx, valid)
            for b, r in enumerate(have):
                j, pairs, losses = rows[r]
                scores = logits[b, torch.from_numpy(pair_positions(pairs, cand.shape[1]))].double().numpy()
                scores[np.isinf(losses)] = -np.inf
                total[j] = losses[int(np.argmax(scores))]
        return float(total.mean())

    plans_noop = noop_commands(model.config)
    with torch.no_grad():
        val_losses_cvx = executed(val_tasks_true, head_commands(val_qp, val_ctx, val_status).double().numpy())
    record["dlm"] = {}
    if sfeats is not None and cfg.mode_sim_epochs:
        t0 = time.perf_counter()
        sim_rows = proposals_executed(sfeats, [it.task for it in sim_items])
        val_rows = proposals_executed(vfeats, val_tasks_true)
        train_rows = [r for r, row in enumerate(sim_rows) if row is not None]
        say(f"[dlm] {len(train_rows)} tasks x {cfg.proposals} proposals executed in {time.perf_counter() - t0:.0f} s")
        opt = torch.optim.Adam(model.contact_mode.parameters(), lr=cfg.mode_sim_lr)
        state0 = {k: v.clone() for k, v in model.contact_mode.state_dict().items()}
        best_mode = (ranked_val(val_rows), state0, 0)
        log.write("L_sim", 0, time.perf_counter() - start, None, executed={"val": (best_mode[0], float("nan"))})
        say(
            f"[dlm] mode epoch 0  validation (best-scored proposal) {best_mode[0]:.2f}; QP-cheapest "
            f"{float(np.mean(val_losses_cvx)):.2f}"
        )
        for epoch in range(1, cfg.mode_sim_epochs + 1):
            model.train()
            order = rng.permutation(train_rows)
            batch_losses = []
            for i in range(0, len(order), cfg.batch_size):
                loss = ranking_loss(sfeats, sim_rows, list(order[i : i + cfg.batch_size]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                batch_losses.append(loss.item())
            model.eval()
            v = ranked_val(val_rows)
            log.write(
                "L_sim",
                epoch,
                time.perf_counter() - start,
                float(np.mean(batch_losses)),
                executed={"val": (v, float("nan"))},
            )
            say(f"[dlm] mode epoch {epoch}  ranking loss {np.mean(batch_losses):.3f}  validation {v:.2f}")
            if v < best_mode[0]:
                best_mode = (v, {k: t.clone() for k, t in model.contact_mode.state_dict().items()}, epoch)
        # Rank by score only where the whole pipeline (fresh proposals, fallbacks) beats the QP's
        # cheapest proposal on validation; the fixed-proposal figure above only picks the epoch.
        model.contact_mode.load_state_dict(best_mode[1])
        model.rank_by_score.fill_(True)
        ranked_qp, ranked_status, _ = qp_commands(vfeats)
        with torch.no_grad():
            ranked = val_executed(head_commands(ranked_qp, val_ctx, ranked_status).double().numpy())
        if ranked[0] >= float(np.mean(val_losses_cvx)):
            model.rank_by_score.fill_(False)
            model.contact_mode.load_state_dict(state0)
        record["dlm"]["mode"] = {
            "best_epoch": best_mode[2],
            "val_ranked_fixed_proposals": best_mode[0],
            "val_ranked": ranked[0],
            "val_qp_cheapest": float(np.mean(val_losses_cvx)),
            "rank_by_score": bool(model.rank_by_score),
            "tasks": len(train_rows),
        }
        say(
            f"[dlm] ranked by score: validation {ranked[0]:.2f} against {np.mean(val_losses_cvx):.2f}; "
            f"rank_by_score = {bool(model.rank_by_score)}"
        )

    # ---- stage 3 (dlm), part 2: the command head on L_sim, finite differences through pymunk
    from policies.dlm.simgrad import fd_gradient

    if sfeats is not None and cfg.sim_epochs:
        fd_items = sim_items[: cfg.fd_tasks]
        ffeats = {k: v[: cfg.fd_tasks] for k, v in sfeats.items()}
        val_qp, val_status, val_ctx = qp_commands(vfeats)  # the (possibly) re-ranked modes
        sim_qp, sim_status, sim_ctx = qp_commands(ffeats)
        sim_tasks_true = [it.task for it in fd_items]
        sim_idx = np.flatnonzero(planned(sim_status))
        opt = torch.optim.Adam(model.command_head.parameters(), lr=cfg.sim_lr)
        start_val = head_val()
        best_sim = (start_val, {k: v.clone() for k, v in model.command_head.state_dict().items()}, 0)
        log.write("L_sim", 0, time.perf_counter() - start, None, executed={"val": best_sim[0]})
        say(f"[dlm] head epoch 0  executed validation {start_val[0]:.2f}")
        for epoch in range(1, cfg.sim_epochs + 1):
            order = rng.permutation(sim_idx)
            losses = []
            for i in range(0, len(order), cfg.sim_batch):
                idx = order[i : i + cfg.sim_batch]
                model.train()
                cmd = model.corrected(torch.from_numpy(sim_qp[idx]).float(), sim_ctx[idx])
                loss_np, grad = fd_gradient([sim_tasks_true[j] for j in idx], cmd.detach().double().numpy())
                surrogate = (cmd * torch.from_numpy(grad).float()).sum() / len(idx)
                opt.zero_grad()
                surrogate.backward()
                opt.step()
                losses.append(float(np.mean(loss_np)))
            model.eval()
            v = head_val()
            log.write("L_sim", epoch, time.perf_counter() - start, float(np.mean(losses)), executed={"val": v})
            say(f"[dlm] head epoch {epoch}  L_sim {np.mean(losses):.2f}  executed validation {v[0]:.2f}")
            if v[0] < best_sim[0][0]:
                best_sim = (v, {k: t.clone() for k, t in model.command_head.state_dict().items()}, epoch)
        model.command_head.load_state_dict(best_sim[1])
        record["dlm"]["head"] = {"best_epoch": best_sim[2], "val_executed": best_sim[0], "tasks": int(len(sim_idx))}
    save_checkpoint(model, cfg.out / "dlm.pt", policy="dlm", command=cfg.command(), extra=record)
    log.publish()
    log.close()
    record["seconds"] = time.perf_counter() - start
    (cfg.out / "summary.json").write_text(json.dumps(record, indent=1, default=str))
    say(f"wrote {cfg.out}/mdr.pt, cvx.pt, dlm.pt in {record['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
