#!/usr/bin/env python
"""Can a network read a task's motion off its video to millimetres? The paper's encoder against a localising one.

Derendering is the bottleneck of the learned DLM: the paper's encoder (a CNN
per frame, a bidirectional LSTM into one pooled latent, eq. 3) loses where the
object is. This study trains two encoders with the same loss, data and time
budget to regress, from the target video alone, what a video shows:

- each keyframe's centroid position ``(x, y)`` in the world frame, and
- each keyframe's rotation relative to keyframe 0, ``theta_t - theta_0``
  wrapped to (-pi, pi], as ``(sin, cos)`` (an unseen polygon's own frame,
  hence its absolute angle, cannot be seen).

Models (``--models``):

- ``paper``: :class:`~policies.dlm.networks.VideoEncoder` (the paper's
  sizes) + :class:`~policies.dlm.networks.MLP` head to ``T x 4`` outputs;
- ``keypoint``: :class:`~policies.dlm.networks.KeypointEncoder` (CoordConv,
  one stride-2 layer, spatial soft-argmax keypoints in world metres) +
  :class:`~policies.dlm.networks.PoseHead`.

Loss (cm^2, per keyframe): ``|dp|^2 + (R |d(sin, cos)|)^2`` with positions in
cm and ``R = --rotation-radius`` (20 cm, the objects' circumradius: a small
rotation error then costs what it moves a vertex); keyframe 0's rotation is
exact by construction and not in the loss. Adam, cosine decay of the learning
rate over the budget (``--train-seconds`` of training time, validations not
counted, or ``--max-steps``).

Training data: a corpus (``--corpus``, :func:`dlm_gym.datasets.load_corpus`,
streamed with ``iter_minibatches``). If the corpus is still being generated,
its complete shards (those the manifest lists) are read with ``load_split``
and shuffled in memory; the summary says which and how many tasks.
Validation: split files of our own seeds (``--val``), never the shipped
test/family/xl splits, e.g.::

    python examples/generate_dataset.py --split family --size 300 --seed-offset 450000 \\
        --out runs/encoder_study/val --workers 1        # seeds 850,000...
    python examples/generate_dataset.py --split test --size 300 --seed-offset 560000 \\
        --out runs/encoder_study/val --workers 1        # 12 facets, seeds 860,000...

Reference: image moments (``policies.oracle.derender.estimate_task``, the
classical derenderer) on the same validation tasks (``--moments-tasks``).

Metrics per validation split: position error (mm) over every keyframe of
every task, median and mean; relative-rotation error (degrees) over
keyframes 1..T-1, median and mean; and, as ``examples/derender_study.py``
reports, the median over tasks of the largest error over keyframes.

Outputs in ``--out``: per model ``<model>_curve.csv`` (the zoo's curve format,
:mod:`policies.common.curves`, stage ``L_P``, objective = mean training loss
since the previous row), ``<model>_val.csv`` (the validation metrics at each
validation), ``<model>.pt`` (state dict and config), ``<model>_summary.json``;
``moments_summary.json``; and ``results.md``, the table of every summary in
``--out`` (so models trained by separate runs share one table). ``--bench``
times the saved models' forward passes in turns, so that a shared machine's
load hits them alike (``bench.json``; the table then shows these times).

Examples:
    python examples/encoder_study.py --corpus runs/corpus --models keypoint --train-seconds 1500
    python examples/encoder_study.py --models paper --moments-tasks 0 --train-seconds 1500
    python examples/encoder_study.py --models none --moments-tasks 300      # the image-moments reference only
    python examples/encoder_study.py --bench                                 # forward times of the trained models
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from dlm_gym import cli

MODELS = ("paper", "keypoint")
STAGE = "L_P"
DEFAULT_VAL = ("runs/encoder_study/val/family.npz", "runs/encoder_study/val/test.npz")


def _model_list(text: str) -> tuple[str, ...]:
    """``paper,keypoint``, one of them, or ``none`` (only the image-moments reference)."""
    if text.strip() == "none":
        return ()
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in MODELS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model {', '.join(bad) or repr(text)}; give a comma list of {', '.join(MODELS)}, or none"
        )
    return names


def _split_files(text: str) -> tuple[Path, ...]:
    """A comma list of existing split files (``.npz``)."""
    paths = tuple(cli.existing_file(t.strip()) for t in text.split(",") if t.strip())
    if not paths:
        raise argparse.ArgumentTypeError("give at least one validation split file")
    return paths


@dataclasses.dataclass
class Config:
    """The study's one configuration; every field is a command-line flag (``--train-seconds`` for ``train_seconds``)."""

    corpus: Path = dataclasses.field(
        default=Path("runs/corpus"), metadata={"help": "training corpus directory", "type": cli.existing_dir}
    )
    val: tuple[Path, ...] = dataclasses.field(
        default=tuple(Path(p) for p in DEFAULT_VAL),
        metadata={"help": "comma list of validation split files (our own seeds)", "type": _split_files},
    )
    out: Path = dataclasses.field(
        default=Path("runs/encoder_study"), metadata={"help": "output folder", "type": cli.output_dir}
    )
    models: tuple[str, ...] = dataclasses.field(
        default=MODELS, metadata={"help": "comma list of paper, keypoint; or none", "type": _model_list}
    )
    train_seconds: float = dataclasses.field(
        default=1500.0,
        metadata={"help": "training time per model, validations not counted", "type": cli.finite_positive_float},
    )
    max_steps: int = dataclasses.field(
        default=0,
        metadata={"help": "stop after this many steps (0: only --train-seconds)", "type": cli.non_negative_int},
    )
    batch_size: int = dataclasses.field(default=64, metadata={"help": "minibatch size", "type": cli.positive_int})
    learning_rate: float = dataclasses.field(
        default=2e-3, metadata={"help": "Adam learning rate at the start", "type": cli.finite_positive_float}
    )
    final_lr_fraction: float = dataclasses.field(
        default=0.02,
        metadata={"help": "the cosine decay ends at this fraction of the learning rate", "type": cli.finite_float},
    )
    rotation_radius: float = dataclasses.field(
        default=0.2, metadata={"help": "R in metres: weight of the rotation error", "type": cli.finite_positive_float}
    )
    keypoints: int = dataclasses.field(default=8, metadata={"help": "keypoint model: K", "type": cli.positive_int})
    channels: int = dataclasses.field(
        default=16, metadata={"help": "keypoint model: convolution width", "type": cli.positive_int}
    )
    depth: int = dataclasses.field(
        default=2, metadata={"help": "keypoint model: convolutions before the heatmaps", "type": cli.positive_int}
    )
    hidden: int = dataclasses.field(
        default=64, metadata={"help": "keypoint model: PoseHead MLP width", "type": cli.positive_int}
    )
    eval_every: float = dataclasses.field(
        default=150.0,
        metadata={"help": "seconds of training between validations", "type": cli.finite_positive_float},
    )
    log_every: int = dataclasses.field(
        default=50, metadata={"help": "steps between curve rows", "type": cli.positive_int}
    )
    val_tasks: int = dataclasses.field(
        default=0,
        metadata={"help": "validate on the first N tasks of each split (0: all)", "type": cli.non_negative_int},
    )
    moments_tasks: int = dataclasses.field(
        default=300,
        metadata={
            "help": "image-moments reference on the first N tasks of each split (0: skip)",
            "type": cli.non_negative_int,
        },
    )
    max_train_tasks: int = dataclasses.field(
        default=0,
        metadata={
            "help": "train on at most N tasks of the corpus (0: all); forces in-memory loading",
            "type": cli.non_negative_int,
        },
    )
    seed: int = dataclasses.field(
        default=0, metadata={"help": "seeds torch and the shuffling", "type": cli.non_negative_int}
    )
    threads: int = dataclasses.field(default=1, metadata={"help": "torch threads", "type": cli.positive_int})
    progress: bool = dataclasses.field(default=False, metadata={"help": "print a line per validation"})
    bench: bool = dataclasses.field(
        default=False,
        metadata={"help": "only time the forward passes of the trained --models in --out, interleaved (bench.json)"},
    )


def build_parser() -> cli.ArgumentParser:
    """The command line of :class:`Config`: one flag per field, ``--x/--no-x`` for the booleans."""
    return cli.dataclass_parser(Config, __doc__)


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Parse ``argv`` into a :class:`Config`; a bad value exits 2 with one line."""
    p = build_parser()
    cfg = Config(**vars(p.parse_args(argv)))
    if not 0 <= cfg.final_lr_fraction <= 1:
        p.error(f"--final-lr-fraction must be in [0, 1], got {cfg.final_lr_fraction}")
    from dlm_gym.datasets import DATA_DIR

    for path in cfg.val:
        if path.resolve().parent == Path(DATA_DIR).resolve():
            p.error(f"{path} is a shipped split; validate on splits of your own seeds (see --help)")
    return cfg


# ------------------------------------------------------------------ targets and metrics
def wrap_angle(a):
    """Angles wrapped to (-pi, pi] (NumPy or torch)."""
    return math.pi - (math.pi - a) % (2 * math.pi)


def pose_targets(trajectories: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(B, T, 3)`` trajectories -> positions ``(B, T, 2)`` and relative rotations ``(B, T)`` (theta_t - theta_0)."""
    traj = np.asarray(trajectories, dtype=np.float64)
    return traj[..., :2], wrap_angle(traj[..., 2] - traj[..., :1, 2])


def error_stats(position_m: np.ndarray, rotation_rad: np.ndarray) -> dict[str, float]:
    """Errors ``(N, T)`` (rotation: keyframes 1..T-1 are used) -> mm and degree statistics."""
    pos_mm, rot_deg = 1e3 * np.asarray(position_m), np.degrees(np.asarray(rotation_rad)[:, 1:])
    return {
        "pos_median_mm": float(np.median(pos_mm)),
        "pos_mean_mm": float(np.mean(pos_mm)),
        "pos_task_max_median_mm": float(np.median(pos_mm.max(1))),
        "rot_median_deg": float(np.median(rot_deg)),
        "rot_mean_deg": float(np.mean(rot_deg)),
        "rot_task_max_median_deg": float(np.median(rot_deg.max(1))),
    }


# ------------------------------------------------------------------ data
class TrainingData:
    """Minibatches ``(videos (B, T, S, S, 3) uint8, trajectories (B, T, 3))`` forever, from a corpus.

    A complete corpus is streamed shard by shard (``Corpus.iter_minibatches``);
    an incomplete one (still being generated) is read from its complete
    shards and shuffled in memory.
    """

    def __init__(self, path: Path, max_tasks: int = 0) -> None:
        from dlm_gym.datasets import CorpusError, load_corpus, load_split

        self.corpus = None
        try:
            corpus = load_corpus(path)
        except CorpusError as exc:
            manifest_file = path / "manifest.json"
            try:
                manifest = json.loads(manifest_file.read_text())
            except (OSError, ValueError):
                raise exc from None
            done = [s for s in manifest.get("shards") or [] if s is not None and (path / s["file"]).is_file()]
            if not done:
                raise CorpusError(f"corpus {path} has no complete shard yet; wait for its first shard") from None
            self.files = [path / s["file"] for s in done]
            self.source = (
                f"complete shards of an incomplete corpus ({len(done)} of {manifest.get('n_shards')}), "
                "read with load_split"
            )
        else:
            self.corpus = corpus
            self.files = [path / s["file"] for s in corpus.manifest["shards"]]
            self.source = f"load_corpus, {corpus.n_shards} shards, streamed with iter_minibatches"
        if self.corpus is None or max_tasks:
            videos, trajectories = [], []
            for f in self.files:
                split = load_split(f)
                videos.append(np.asarray(split.videos))
                trajectories.append(np.stack([t.trajectory for t in split.tasks]))
            self.videos, self.trajectories = np.concatenate(videos), np.concatenate(trajectories)
            if max_tasks:
                self.videos, self.trajectories = self.videos[:max_tasks], self.trajectories[:max_tasks]
                self.source += f", first {len(self.videos)} tasks in memory"
            self.n_tasks = len(self.videos)
            self.corpus = None
        else:
            self.n_tasks = len(self.corpus)

    def batches(self, batch_size: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self.corpus is not None:
            drop = len(self.corpus) >= batch_size
            for split in self.corpus.iter_minibatches(batch_size, seed=seed, epochs=None, drop_last=drop):
                yield split.videos, np.stack([t.trajectory for t in split.tasks])
            return
        for epoch in range(sys.maxsize):
            order = np.random.default_rng([seed, epoch]).permutation(self.n_tasks)
            stop = max(len(order) - batch_size + 1, 1)
            for start in range(0, stop, batch_size):
                idx = np.sort(order[start : start + batch_size])
                yield self.videos[idx], self.trajectories[idx]


def load_validation(paths: Sequence[Path], max_tasks: int) -> dict[str, tuple]:
    """``{label: (split, videos, trajectories)}``; the label is the file's stem (made unique)."""
    from dlm_gym.datasets import load_split

    out: dict[str, tuple] = {}
    for path in paths:
        split = load_split(path)
        if max_tasks:
            split = split[:max_tasks]
        label, k = path.stem, 1
        while label in out:
            k += 1
            label = f"{path.stem}{k}"
        out[label] = (split, np.asarray(split.videos), np.stack([t.trajectory for t in split.tasks]))
    return out


# ------------------------------------------------------------------ models
def build_model(name: str, cfg: Config):
    """The ``paper`` or ``keypoint`` pose regressor: ``model(video float (B, T, 3, S, S))`` -> position, rotation."""
    import torch
    from torch import nn

    from dlm_gym.config import DEFAULT_CONFIG
    from policies.dlm.networks import MLP, KeypointEncoder, PoseHead, VideoEncoder

    T = DEFAULT_CONFIG.horizon
    (x0, x1), (y0, y1) = DEFAULT_CONFIG.view_x, DEFAULT_CONFIG.view_y

    class PaperRegressor(nn.Module):
        """VideoEncoder -> MLP -> per keyframe (x, y) (0.1 m units about the view's centre) and (sin, cos)."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = VideoEncoder(frame_size=DEFAULT_CONFIG.frame_size)
            self.head = MLP(self.encoder.latent_dim, 4 * T)
            self.register_buffer("centre", torch.tensor([(x0 + x1) / 2, (y0 + y1) / 2]), persistent=False)

        def forward(self, video):
            out = self.head(self.encoder(video)).reshape(-1, T, 4)
            raw = out[..., 2:] + torch.tensor([0.0, 1.0])
            rot = raw / torch.sqrt((raw**2).sum(-1, keepdim=True) + 1e-12)
            first = torch.tensor([0.0, 1.0]).expand(rot.shape[0], 1, 2)
            return {"position": self.centre + 0.1 * out[..., :2], "rotation": torch.cat([first, rot[:, 1:]], 1)}

    class KeypointRegressor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = KeypointEncoder(cfg.keypoints, cfg.channels, cfg.depth, DEFAULT_CONFIG)
            self.head = PoseHead(cfg.keypoints, cfg.channels, cfg.hidden)

        def forward(self, video):
            return self.head(self.encoder(video))

    if name == "paper":
        return PaperRegressor()
    if name == "keypoint":
        return KeypointRegressor()
    raise ValueError(f"unknown model {name!r}")


def pose_loss(pred: dict, positions, rel_angles, rotation_radius: float):
    """Mean over keyframes of ``|dp|^2 + (R |d(sin, cos)|)^2`` in cm^2 (keyframe 0's rotation left out)."""
    import torch

    pos = ((pred["position"] - positions) / 0.01).pow(2).sum(-1)  # (B, T) cm^2
    target = torch.stack([torch.sin(rel_angles), torch.cos(rel_angles)], -1)
    rot = ((pred["rotation"][:, 1:] - target[:, 1:]) * (rotation_radius / 0.01)).pow(2).sum(-1)
    return pos.mean() + rot.mean() * (rot.shape[1] / pos.shape[1])


def predict(model, videos: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(N, T, 2)`` and relative angles ``(N, T)`` of uint8 videos, in eval mode."""
    import torch

    from policies.dlm.networks import video_to_tensor

    was = model.training
    model.eval()
    pos, ang = [], []
    with torch.no_grad():
        for i in range(0, len(videos), batch_size):
            out = model(video_to_tensor(videos[i : i + batch_size]))
            pos.append(out["position"].double().numpy())
            ang.append(torch.atan2(out["rotation"][..., 0], out["rotation"][..., 1]).double().numpy())
    model.train(was)
    return np.concatenate(pos), np.concatenate(ang)


def evaluate(model, val: dict) -> dict[str, dict[str, float]]:
    out = {}
    for label, (_, videos, trajectories) in val.items():
        pos, ang = predict(model, videos)
        true_pos, true_ang = pose_targets(trajectories)
        out[label] = error_stats(np.linalg.norm(pos - true_pos, axis=-1), np.abs(wrap_angle(ang - true_ang)))
    return out


def forward_ms(model, videos: np.ndarray, batch: int = 32, repeats: int = 20) -> float:
    """Median over ``repeats`` of the eval-mode forward time per datapoint (ms) at ``batch`` (float frames ready)."""
    import torch

    from policies.dlm.networks import video_to_tensor

    x = video_to_tensor(np.resize(videos, (batch, *videos.shape[1:])))
    model.eval()
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    model.train()
    return 1e3 * float(np.median(times)) / batch


# ------------------------------------------------------------------ runs
def _lr_factor(progress: float, final: float) -> float:
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train_model(name: str, cfg: Config, data: TrainingData, val: dict) -> dict:
    import torch

    from policies.common.curves import CurveLog
    from policies.dlm.networks import video_to_tensor

    torch.manual_seed(cfg.seed)
    model = build_model(name, cfg)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    val_columns = ["step", "seconds", "train_seconds"] + [
        f"{label}_{key}" for label in val for key in error_stats(np.zeros((1, 2)), np.zeros((1, 2)))
    ]
    cfg.out.mkdir(parents=True, exist_ok=True)
    val_path = cfg.out / f"{name}_val.csv"
    start = time.perf_counter()
    train_s, step, next_eval, window = 0.0, 0, 0.0, []
    history = []

    def validate() -> dict:
        metrics = evaluate(model, val)
        row = {"step": step, "seconds": time.perf_counter() - start, "train_seconds": train_s}
        row.update({f"{label}_{k}": v for label, m in metrics.items() for k, v in m.items()})
        writer.writerow(row)
        handle.flush()
        history.append(row)
        if cfg.progress:
            text = "  ".join(
                f"{label}: {m['pos_median_mm']:.2f} mm {m['rot_median_deg']:.2f} deg" for label, m in metrics.items()
            )
            print(f"[{name}] step {step:6d}  train {train_s:7.1f} s  {text}", flush=True)
        return metrics

    with CurveLog(cfg.out / f"{name}_curve.csv", splits=[]) as log, val_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=val_columns)
        writer.writeheader()
        batches = data.batches(cfg.batch_size, cfg.seed)
        while True:
            done = train_s >= cfg.train_seconds or (cfg.max_steps and step >= cfg.max_steps)
            if train_s >= next_eval or done:
                metrics = validate()
                next_eval = train_s + cfg.eval_every
            if done:
                break
            t0 = time.perf_counter()
            videos, trajectories = next(batches)
            positions, rel = pose_targets(trajectories)
            progress = train_s / cfg.train_seconds
            if cfg.max_steps:
                progress = max(progress, step / cfg.max_steps)
            for group in opt.param_groups:
                group["lr"] = cfg.learning_rate * _lr_factor(progress, cfg.final_lr_fraction)
            pred = model(video_to_tensor(videos))
            loss = pose_loss(
                pred, torch.as_tensor(positions).float(), torch.as_tensor(rel).float(), cfg.rotation_radius
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            window.append(float(loss.detach()))
            train_s += time.perf_counter() - t0
            if step % cfg.log_every == 0:
                log.write(STAGE, step, time.perf_counter() - start, float(np.mean(window)))
                window = []
        if window:
            log.write(STAGE, step, time.perf_counter() - start, float(np.mean(window)))
        ms = forward_ms(model, next(iter(val.values()))[1])
        torch.save({"model": name, "state_dict": model.state_dict(), "config": _jsonable(cfg)}, cfg.out / f"{name}.pt")
        log.publish()
    summary = {
        "model": name,
        "train_tasks": data.n_tasks,
        "train_source": data.source,
        "steps": step,
        "batch_size": cfg.batch_size,
        "epochs": step * cfg.batch_size / data.n_tasks,
        "train_seconds": train_s,
        "wall_seconds": time.perf_counter() - start,
        "forward_ms_per_datapoint_b32": ms,
        "params": n_params,
        "validation": metrics,
        "validation_tasks": {label: len(v[0]) for label, v in val.items()},
        "config": _jsonable(cfg),
        "command": " ".join(["python", "examples/encoder_study.py", *sys.argv[1:]]),
    }
    (cfg.out / f"{name}_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def run_bench(cfg: Config, val: dict, rounds: int = 30, batch: int = 32) -> dict:
    """Forward ms per datapoint at ``batch`` of the saved models, timed in turns (so load hits them alike)."""
    import torch

    from policies.dlm.networks import video_to_tensor

    models = {}
    for name in cfg.models:
        file = cfg.out / f"{name}.pt"
        if not file.is_file():
            raise FileNotFoundError(f"no trained {name} model in {cfg.out} ({file.name}); train it first")
        saved = torch.load(file, weights_only=True)
        arch = {k: saved["config"][k] for k in ("keypoints", "channels", "depth", "hidden")}
        model = build_model(name, dataclasses.replace(cfg, **arch))
        model.load_state_dict(saved["state_dict"])
        models[name] = model.eval()
    videos = next(iter(val.values()))[1]
    x = video_to_tensor(np.resize(videos, (batch, *videos.shape[1:])))
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():
            model(x)
        for _ in range(rounds):
            for name, model in models.items():
                t = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - t)
    out = {
        "batch": batch,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "forward_ms_per_datapoint": {n: 1e3 * float(np.median(t)) / batch for n, t in times.items()},
        "forward_ms_per_datapoint_min": {n: 1e3 * float(np.min(t)) / batch for n, t in times.items()},
        "command": " ".join(["python", "examples/encoder_study.py", *sys.argv[1:]]),
    }
    (cfg.out / "bench.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def run_moments(cfg: Config, val: dict) -> dict:
    """The image-moments derenderer on the first ``moments_tasks`` tasks of each validation split."""
    from policies import DerenderError
    from policies.oracle.derender import estimate_task, pose_errors

    out, counts, seconds = {}, {}, {}
    for label, (split, videos, _) in val.items():
        n = min(cfg.moments_tasks, len(split))
        pos, rot, failed = [], [], 0
        t = time.perf_counter()
        for i in range(n):
            try:
                errors = pose_errors(estimate_task(videos[i]), split.tasks[i])
            except DerenderError:
                failed += 1
                continue
            pos.append(errors["position_m"])
            rot.append(errors["rotation_rad"])
        seconds[label] = (time.perf_counter() - t) / max(n, 1)
        counts[label] = {"tasks": n, "failed": failed}
        out[label] = error_stats(np.array(pos), np.array(rot)) if pos else {}
        if cfg.progress:
            print(f"[moments] {label}: {out[label]}", flush=True)
    summary = {
        "model": "moments",
        "validation": out,
        "validation_tasks": counts,
        "seconds_per_task": seconds,
        "command": " ".join(["python", "examples/encoder_study.py", *sys.argv[1:]]),
    }
    (cfg.out / "moments_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _jsonable(cfg: Config) -> dict:
    return {
        k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if isinstance(v, tuple) else v)
        for k, v in dataclasses.asdict(cfg).items()
    }


def write_table(out: Path) -> Path:
    """``results.md``: one row per summary in ``out`` and validation split."""
    rows = []
    for name in ("moments", *MODELS):
        file = out / f"{name}_summary.json"
        if file.is_file():
            rows.append(json.loads(file.read_text()))
    bench_file = out / "bench.json"
    bench = json.loads(bench_file.read_text())["forward_ms_per_datapoint"] if bench_file.is_file() else {}
    head = (
        "| model | val split | train tasks | steps | train time (s) | position mm (median / mean) "
        "| rel. rotation deg (median / mean) | task-max median (mm / deg) | forward ms/datapoint (b32) | params |"
    )
    lines = [head, "|" + "---|" * 10]
    for s in rows:
        trained = s["model"] != "moments"
        cells = [str(s["train_tasks"]), str(s["steps"]), f"{s['train_seconds']:.0f}"] if trained else ["-", "-", "-"]
        ms = bench.get(s["model"], s.get("forward_ms_per_datapoint_b32"))
        tail = [f"{ms:.3f}", str(s["params"])] if trained else ["-", "-"]
        for label, m in s["validation"].items():
            if not m:
                continue
            metrics = [
                f"{m['pos_median_mm']:.2f} / {m['pos_mean_mm']:.2f}",
                f"{m['rot_median_deg']:.2f} / {m['rot_mean_deg']:.2f}",
                f"{m['pos_task_max_median_mm']:.2f} / {m['rot_task_max_median_deg']:.2f}",
            ]
            lines.append(
                "| " + " | ".join([s["model"], f"{label} ({_count(s, label)})", *cells, *metrics, *tail]) + " |"
            )
    path = out / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _count(summary: dict, label: str) -> str:
    n = summary["validation_tasks"][label]
    if isinstance(n, dict):
        return f"{n['tasks'] - n['failed']} of {n['tasks']}"
    return str(n)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(argv)
    import torch

    from dlm_gym.datasets import DatasetError

    torch.set_num_threads(cfg.threads)
    try:
        val = load_validation(cfg.val, cfg.val_tasks)
        cfg.out.mkdir(parents=True, exist_ok=True)
        if cfg.bench:
            bench = run_bench(cfg, val)
            print(json.dumps(bench["forward_ms_per_datapoint"]))
            write_table(cfg.out)
            return 0
        if cfg.moments_tasks:
            run_moments(cfg, val)
        if cfg.models:
            data = TrainingData(cfg.corpus, cfg.max_train_tasks)
            if cfg.progress:
                print(f"training data: {data.n_tasks} tasks ({data.source})", flush=True)
            for name in cfg.models:
                train_model(name, cfg, data, val)
    except (*cli.USER_ERRORS, DatasetError, FileNotFoundError) as exc:
        return cli.fail(exc)
    print(write_table(cfg.out).read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
