"""Dataset splits: tasks with their video, mechanical parameters and oracle actions.

One compressed ``.npz`` file per split (DESIGN.md section 3). The shipped
splits live in ``dlm_gym/data/`` and are made by ``examples/generate_dataset.py``.

File layout (format version :data:`FORMAT_VERSION`), ``n`` tasks, ``T``
keyframes, ``N`` fingers, polygons zero-padded to ``V`` vertices:

============================  ==========================  ==========================================
key                           shape, dtype                meaning
============================  ==========================  ==========================================
``format_version``            (), int64                   :data:`FORMAT_VERSION`
``meta``                      (), str (JSON)              generator settings, seeds, rejection rate
``polygon``                   (n, V, 2), float64          object-frame vertices (CCW, centroid at 0)
``n_vertices``                (n,), int64                 vertices actually used per polygon
``trajectory``                (n, T, 3), float64          target poses r(t)
``seed``                      (n,), int64                 the seed each task was sampled with
``video``                     (n, T, S, S, 3), uint8      the target video
``commands``                  (n, T, N, 4), float64       oracle plan: p_c(t) (m) and lambda_c(t) (N)
``oracle_cost``               (n,), float64               optimal value of eq. 11
``oracle_solve_s``            (n,), float64               oracle wall time per task
``oracle_loss``               (n,), float64               object-trajectory loss of the oracle plan run in the env
                                                          (as float32 actions, exactly what ``miqp`` scores)
``param/<name>``              (n, T, ...), float64        mechanical parameters P(t), see mechanics
============================  ==========================  ==========================================
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np

from dlm_gym.task import Task

__all__ = [
    "FORMAT_VERSION",
    "DATA_DIR",
    "SPLIT_NAMES",
    "PAPER_SPLITS",
    "XL_SPLITS",
    "SEED_RANGES",
    "seed_range_of",
    "DatasetError",
    "Split",
    "available_splits",
    "split_path",
    "load_split",
    "save_split",
    "SplitSpec",
    "SPLIT_SPECS",
    "generate_split",
]

FORMAT_VERSION = 1
DATA_DIR = Path(__file__).resolve().parent / "data"
SPLIT_NAMES = ("train", "finetune", "test", "family", "smooth", "family_xl", "test_xl", "smooth_xl")
"""The shipped splits, in the order tables show them."""
PAPER_SPLITS = ("train", "finetune", "test", "family", "smooth")
"""The paper-sized splits of the reproduction (Section 5)."""
XL_SPLITS = ("family_xl", "test_xl", "smooth_xl")
"""The held-out evaluation splits: quality claims are measured here."""


class DatasetError(ValueError):
    """A split file is missing, corrupt, truncated or of another format version."""


@dataclasses.dataclass
class Split:
    """A loaded split. ``tasks[i]`` goes with ``videos[i]``, ``commands[i]`` and ``params[k][i]``."""

    name: str
    tasks: list[Task]
    videos: np.ndarray
    commands: np.ndarray
    oracle_cost: np.ndarray
    oracle_solve_s: np.ndarray
    oracle_loss: np.ndarray
    params: dict[str, np.ndarray]
    meta: dict

    def __len__(self) -> int:
        return len(self.tasks)


def available_splits(data_dir: Path | str = DATA_DIR) -> list[str]:
    """Names of the splits present in ``data_dir``, in :data:`SPLIT_NAMES` order first."""
    found = {p.stem for p in Path(data_dir).glob("*.npz")}
    return [s for s in SPLIT_NAMES if s in found] + sorted(found - set(SPLIT_NAMES))


def split_path(name: str, data_dir: Path | str = DATA_DIR) -> Path:
    """Where the split ``name`` lives (a path ending in ``.npz`` is taken as is)."""
    if name.endswith(".npz"):
        return Path(name)
    return Path(data_dir) / f"{name}.npz"


_REQUIRED = {
    "format_version": 0,
    "meta": 0,
    "polygon": 3,
    "n_vertices": 1,
    "trajectory": 3,
    "seed": 1,
    "video": 5,
    "commands": 4,
    "oracle_cost": 1,
    "oracle_solve_s": 1,
    "oracle_loss": 1,
}

_CACHE: dict[tuple[str, float], Split] = {}


def load_split(name: str, data_dir: Path | str = DATA_DIR) -> Split:
    """Load a split by name (``"train"``, ``"family"``, ...) or by ``.npz`` path.

    Loaded splits are cached per file and modification time; treat them as read-only.

    Raises:
        DatasetError: naming the file, if it is missing, corrupt, truncated,
            of another format version or has inconsistent shapes.
    """
    path = split_path(name, data_dir)
    if not path.exists():
        have = ", ".join(available_splits(data_dir)) or "none"
        raise DatasetError(
            f"no split file {path} (available splits: {have}); "
            "run `python examples/generate_dataset.py` to make the splits"
        )
    key = (str(path.resolve()), path.stat().st_mtime)
    if key in _CACHE:
        return _CACHE[key]
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise DatasetError(f"{path}: not a readable .npz split file ({exc}); regenerate it") from None
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise DatasetError(f"{path}: missing array(s) {missing}; the file is truncated or not a dlm-gym split")
    version = int(data["format_version"])
    if version != FORMAT_VERSION:
        raise DatasetError(
            f"{path}: format version {version}, this dlm-gym reads version {FORMAT_VERSION}; regenerate the split"
        )
    for k, ndim in _REQUIRED.items():
        if data[k].ndim != ndim:
            raise DatasetError(f"{path}: array {k!r} has {data[k].ndim} dimensions, expected {ndim}")
    n = data["trajectory"].shape[0]
    for k in _REQUIRED:
        if k not in ("format_version", "meta") and data[k].shape[0] != n:
            raise DatasetError(f"{path}: array {k!r} has {data[k].shape[0]} rows, expected {n}")
    params = {k.split("/", 1)[1]: v for k, v in data.items() if k.startswith("param/")}
    for k, v in params.items():
        if v.shape[0] != n:
            raise DatasetError(f"{path}: parameter {k!r} has {v.shape[0]} rows, expected {n}")
    try:
        meta = json.loads(str(data["meta"]))
        stem = path.stem
        tasks = [
            Task(
                data["polygon"][i, : int(data["n_vertices"][i])],
                data["trajectory"][i],
                seed=int(data["seed"][i]),
                name=f"{stem}/{i}",
            )
            for i in range(n)
        ]
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: invalid content ({exc}); regenerate the split") from None
    split = Split(
        name=path.stem,
        tasks=tasks,
        videos=data["video"],
        commands=data["commands"],
        oracle_cost=data["oracle_cost"],
        oracle_solve_s=data["oracle_solve_s"],
        oracle_loss=data["oracle_loss"],
        params=params,
        meta=meta,
    )
    _CACHE[key] = split
    return split


def save_split(
    path: Path | str,
    tasks: list[Task],
    videos: np.ndarray,
    commands: np.ndarray,
    oracle_cost: np.ndarray,
    oracle_solve_s: np.ndarray,
    oracle_loss: np.ndarray,
    params: dict[str, np.ndarray],
    meta: dict,
) -> Path:
    """Write a split file (see the module docstring for the layout); returns its path."""
    path = Path(path)
    n = len(tasks)
    width = max(t.n_facets for t in tasks)
    polygon = np.zeros((n, width, 2))
    for i, t in enumerate(tasks):
        polygon[i, : t.n_facets] = t.polygon
    arrays = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "meta": np.array(json.dumps(meta, sort_keys=True)),
        "polygon": polygon,
        "n_vertices": np.array([t.n_facets for t in tasks], dtype=np.int64),
        "trajectory": np.stack([t.trajectory for t in tasks]),
        "seed": np.array([-1 if t.seed is None else t.seed for t in tasks], dtype=np.int64),
        "video": np.asarray(videos, dtype=np.uint8),
        "commands": np.asarray(commands, dtype=np.float64),
        "oracle_cost": np.asarray(oracle_cost, dtype=np.float64),
        "oracle_solve_s": np.asarray(oracle_solve_s, dtype=np.float64),
        "oracle_loss": np.asarray(oracle_loss, dtype=np.float64),
    }
    arrays.update({f"param/{k}": np.asarray(v, dtype=np.float64) for k, v in params.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)  # atomic: a crash never leaves a half-written split behind
    return path


# --------------------------------------------------------------- generation


@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """How a split is drawn: its size, shapes and the first task seed (DESIGN.md section 3)."""

    size: int
    n_facets: int | tuple[int, int] = (4, 6)
    shape: str = "polygon"
    seed: int = 0


SEED_RANGES: dict[str, tuple[int, int]] = {
    "train": (100_000, 200_000),
    "finetune": (200_000, 300_000),
    "test": (300_000, 400_000),
    "family": (400_000, 500_000),
    "smooth": (500_000, 600_000),
    "validation": (800_000, 1_000_000),  # tuning and training-time validation: ours, never a shipped split
    "family_xl": (2_000_000, 2_100_000),
    "test_xl": (2_100_000, 2_200_000),
    "smooth_xl": (2_200_000, 2_300_000),
    "generated": (10_000_000, 100_000_000),  # evaluate.py --generated
    "corpus": (100_000_000, 1_000_000_000),  # large training corpora, regenerated by command
    "env": (1_000_000_000, 2**31 - 1),  # the tasks env.reset() draws at random
}
"""Every task seed the project uses, as half-open ``[first, stop)`` ranges that never overlap (a test checks).

A split draws candidate seeds from the first of its range on (rejected candidates use seeds too) and
must not run past its end; a new use of seeds gets a new row here."""

SPLIT_SPECS: dict[str, SplitSpec] = {
    "train": SplitSpec(20, (4, 6), "polygon", seed=SEED_RANGES["train"][0]),
    "finetune": SplitSpec(20, (4, 6), "polygon", seed=SEED_RANGES["finetune"][0]),
    "test": SplitSpec(40, 12, "polygon", seed=SEED_RANGES["test"][0]),
    "family": SplitSpec(40, (4, 6), "polygon", seed=SEED_RANGES["family"][0]),
    "smooth": SplitSpec(20, (4, 6), "smooth", seed=SEED_RANGES["smooth"][0]),
    "family_xl": SplitSpec(500, (4, 6), "polygon", seed=SEED_RANGES["family_xl"][0]),
    "test_xl": SplitSpec(500, 12, "polygon", seed=SEED_RANGES["test_xl"][0]),
    "smooth_xl": SplitSpec(200, (4, 6), "smooth", seed=SEED_RANGES["smooth_xl"][0]),
}
"""The paper's split sizes (Section 5), ``smooth`` after Appendix B, and the held-out ``*_xl`` evaluation
splits, large enough to resolve differences of a few cm^2; each draws from its own :data:`SEED_RANGES` row."""


def seed_range_of(seed: int) -> str | None:
    """The :data:`SEED_RANGES` row a seed belongs to, if any."""
    for name, (lo, hi) in SEED_RANGES.items():
        if lo <= seed < hi:
            return name
    return None


def _label(args: tuple) -> dict:
    """Sample one candidate task, solve its oracle problem, render its video and run the plan in the env."""
    seed, spec, name, config, time_limit = args
    from dlm_gym.actions import as_executed
    from dlm_gym.oracle import solve_oracle
    from dlm_gym.render import Renderer
    from dlm_gym.scene import Scene
    from dlm_gym.metrics import object_trajectory_loss
    from dlm_gym.task import sample_task

    task = sample_task(seed, n_facets=spec.n_facets, shape=spec.shape, config=config)
    plan = solve_oracle(task, config, time_limit=time_limit)
    out = {"seed": seed, "status": plan.status.name, "solve_s": plan.solve_time_s}
    if not plan.ok:
        return out
    commands = plan.commands()
    out.update(
        task=task,
        video=Renderer(config).video(task.polygon, task.trajectory),
        commands=commands,
        cost=plan.cost,
        params=plan.params.as_dict(),
        loss=float(object_trajectory_loss(
            Scene(config).rollout(task.polygon, task.trajectory[0], as_executed(commands, config)), task.trajectory
        )),
    )
    return out


def generate_split(
    name: str,
    spec: SplitSpec,
    *,
    out_dir: Path | str = DATA_DIR,
    workers: int = 1,
    time_limit: float = 30.0,
    progress: bool = True,
    config=None,
) -> tuple[Path, dict]:
    """Draw candidate tasks from ``spec.seed`` on, keep the first ``spec.size`` the oracle solves, and save them.

    Candidates are labelled in seed order (a process pool keeps that order),
    so the split depends only on the spec, never on ``workers``. Tasks whose
    oracle problem is infeasible or times out are rejected and counted.

    Returns:
        The file written and its statistics (candidates, rejections by status,
        rejection rate, solve times).
    """
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    from dlm_gym.config import DEFAULT_CONFIG

    config = config or DEFAULT_CONFIG
    kept: list[dict] = []
    rejected: dict[str, int] = {}
    solve_times: list[float] = []
    bar = tqdm(total=spec.size, desc=f"{name}", disable=not progress, unit="task")
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        next_seed = spec.seed
        home = seed_range_of(spec.seed)
        stop = SEED_RANGES[home][1] if home is not None else None
        while len(kept) < spec.size:
            if stop is not None and next_seed >= stop:
                raise RuntimeError(
                    f"split {name!r} ran out of its seed range {home!r} (stops at {stop}); give it a larger range"
                )
            batch = [(s, spec, name, config, time_limit) for s in range(next_seed, next_seed + max(workers, 1) * 4)]
            next_seed += len(batch)
            results = pool.map(_label, batch) if pool else map(_label, batch)
            for r in results:
                if len(kept) == spec.size:
                    break
                solve_times.append(r["solve_s"])
                if "task" in r:
                    kept.append(r)
                    bar.update(1)
                else:
                    rejected[r["status"]] = rejected.get(r["status"], 0) + 1
                bar.set_postfix(rejected=sum(rejected.values()))
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)
    candidates = len(kept) + sum(rejected.values())
    stats = {
        "split": name,
        "size": len(kept),
        "candidates": candidates,
        "rejected": rejected,
        "rejection_rate": sum(rejected.values()) / candidates,
        "first_seed": spec.seed,
        "n_facets": spec.n_facets,
        "shape": spec.shape,
        "solve_s_median": float(np.median(solve_times)),
        "solve_s_p90": float(np.percentile(solve_times, 90)),
    }
    tasks = [dataclasses.replace(r["task"], name=f"{name}/{i}") for i, r in enumerate(kept)]
    params = {k: np.stack([r["params"][k] for r in kept]) for k in kept[0]["params"]}
    path = save_split(
        Path(out_dir) / f"{name}.npz",
        tasks,
        videos=np.stack([r["video"] for r in kept]),
        commands=np.stack([r["commands"] for r in kept]),
        oracle_cost=np.array([r["cost"] for r in kept]),
        oracle_solve_s=np.array([r["solve_s"] for r in kept]),
        oracle_loss=np.array([r["loss"] for r in kept]),
        params=params,
        meta=stats,
    )
    return path, stats
