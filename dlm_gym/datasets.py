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
``checksum``                  (), str (hex)               SHA-256 of all other arrays (:func:`array_checksum`);
                                                          optional: files written before it load unchecked
============================  ==========================  ==========================================

:func:`load_split` checks all of this (shapes for the scene's T, frame size and
finger count, dtypes, finite floats, 3 <= n_vertices <= V, at least one task,
the checksum) and raises :class:`DatasetError` naming the file and the array.
Files are written atomically (a temporary file, then a rename).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.atomic import atomic_write
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
    "add_checksum",
    "array_checksum",
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


_EXPECTED_KEYS = ("polygon", "n_vertices", "trajectory", "seed", "video", "commands", "oracle_cost",
                  "oracle_solve_s", "oracle_loss")
_FLOAT_ARRAYS = ("polygon", "trajectory", "commands", "oracle_cost", "oracle_solve_s", "oracle_loss")
_INT_ARRAYS = ("n_vertices", "seed")
_CHECKSUM = "checksum"

_CACHE: dict[tuple, Split] = {}


def array_checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 (hex) of a split's arrays: their names, dtypes, shapes and bytes, in name order.

    The ``checksum`` entry itself is left out, and so is the zip container
    (member order, timestamps, compression): the same arrays always give the
    same checksum, and a changed bit in any of them gives another.
    """
    digest = hashlib.sha256(b"dlm-gym split arrays v1\0")
    for name in sorted(arrays):
        if name == _CHECKSUM:
            continue
        a = np.ascontiguousarray(arrays[name])
        digest.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode() + b"\0")
        digest.update(a.tobytes())
    return digest.hexdigest()


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file; any failure to read it is a DatasetError naming the file."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc})") from None
    if magic == b"\x93NUMPY":
        raise DatasetError(f"{path}: a single .npy array, not an .npz split file; regenerate it")
    if not magic.startswith(b"PK"):
        raise DatasetError(
            f"{path}: not an .npz split file (no zip signature: empty, truncated or another format); regenerate it"
        )
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001  (zipfile, zlib, OSError, numpy's header parser: many types)
        raise _unreadable(path, exc) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DatasetError(f"{path}: a single .npy array, not an .npz split file; regenerate it")
    try:
        with npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001  (a damaged member: zlib.error, Bad CRC-32, pickled data, ...)
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: Exception) -> DatasetError:
    return DatasetError(f"{path}: not a readable .npz split file ({type(exc).__name__}: {exc}); regenerate it")


def _param_shapes(config: SceneConfig) -> dict[str, tuple[int, ...]]:
    """Per-keyframe shape of each known ``param/<name>`` (the fields of the mechanical parameters P(t))."""
    from dlm_gym.mechanics import vector_layout

    return {**dict(vector_layout(config)), "finger_positions": (config.num_fingers, 2)}


def _expected_shapes(n: int, width: int, config: SceneConfig) -> dict[str, tuple[tuple[int, ...], str]]:
    """Array name -> (shape, what the axes mean), for a split of ``n`` tasks padded to ``width`` vertices."""
    T, S, N = config.horizon, config.frame_size, config.num_fingers
    return {
        "polygon": ((n, width, 2), "tasks, padded vertices, (x, y)"),
        "n_vertices": ((n,), "tasks"),
        "trajectory": ((n, T, 3), f"tasks, T={T} keyframes, (x, y, theta)"),
        "seed": ((n,), "tasks"),
        "video": ((n, T, S, S, 3), f"tasks, T={T} frames, {S} x {S} pixels, RGB"),
        "commands": ((n, T, N, 4), f"tasks, T={T} keyframes, N={N} fingers, (x, y, f_x, f_y)"),
        "oracle_cost": ((n,), "tasks"),
        "oracle_solve_s": ((n,), "tasks"),
        "oracle_loss": ((n,), "tasks"),
    }


_REGENERATE = "regenerate the split (examples/generate_dataset.py)"


def _check_arrays(path: Path, data: dict[str, np.ndarray], config: SceneConfig, fix: str = _REGENERATE) -> dict:
    """Check every array against the format (module docstring) and return the parsed ``meta``.

    Loading used to accept many broken files and fail later, far from the
    cause (an IndexError at step 4, "cannot reshape" in training); each check
    raises a DatasetError naming the file, the array and what was expected,
    followed by ``fix``.
    """
    _check_checksum(path, data, fix)
    meta = _check_header(path, data, fix)
    width = _check_shapes(path, data, config, fix)
    _check_values(path, data, width, fix)
    return meta


def _bad(path: Path, name: str, problem: str, fix: str) -> DatasetError:
    return DatasetError(f"{path}: array {name!r} {problem}; {fix}")


def _check_checksum(path: Path, data: dict[str, np.ndarray], fix: str) -> None:
    """First, so that a damaged file is called damaged rather than blamed on whichever array the damage hit."""
    if _CHECKSUM not in data:
        return  # written before splits carried checksums
    stored = data[_CHECKSUM]
    if stored.shape != () or stored.dtype.kind != "U":
        raise _bad(path, _CHECKSUM, f"must be a hex string, got dtype {stored.dtype} and shape {stored.shape}", fix)
    if str(stored) != array_checksum(data):
        raise DatasetError(
            f"{path}: checksum mismatch, the arrays changed after the file was written (a damaged or edited "
            f"file); {fix}, or restore the file from the repository"
        )


def _check_header(path: Path, data: dict[str, np.ndarray], fix: str) -> dict:
    """Every array is there, ``format_version`` is this version as a scalar integer, ``meta`` is a JSON object."""
    missing = [k for k in ("format_version", "meta", *_EXPECTED_KEYS) if k not in data]
    if missing:
        raise DatasetError(f"{path}: missing array(s) {missing}; the file is truncated or not a dlm-gym split")
    version = data["format_version"]
    if version.shape != () or version.dtype.kind not in "iu":
        problem = f"must be a scalar integer, got dtype {version.dtype} and shape {version.shape}"
        raise _bad(path, "format_version", problem, fix)
    if int(version) != FORMAT_VERSION:
        raise DatasetError(
            f"{path}: format version {int(version)}, this dlm-gym reads version {FORMAT_VERSION}; regenerate the split"
        )
    meta = data["meta"]
    if meta.shape != () or meta.dtype.kind != "U":
        raise _bad(path, "meta", f"must be a JSON string, got dtype {meta.dtype} and shape {meta.shape}", fix)
    try:
        value = json.loads(str(meta))
    except ValueError as exc:
        raise _bad(path, "meta", f"is not valid JSON ({exc})", fix) from None
    if not isinstance(value, dict):
        raise _bad(path, "meta", f"must be a JSON object, got a JSON {type(value).__name__}", fix)
    return value


def _check_shapes(path: Path, data: dict[str, np.ndarray], config: SceneConfig, fix: str) -> int:
    """Shapes for the scene's T, frame size and finger count, at least one task; returns the padded polygon width."""
    traj, polygon, T = data["trajectory"], data["polygon"], config.horizon
    if traj.ndim != 3:
        problem = f"has shape {traj.shape}, expected (n, {T}, 3) (tasks, T={T} keyframes, (x, y, theta))"
        raise _bad(path, "trajectory", problem, fix)
    n = traj.shape[0]
    if n == 0:
        raise DatasetError(f"{path}: the split has no tasks, a split needs at least one; {fix}")
    if polygon.ndim != 3:
        problem = f"has shape {polygon.shape}, expected ({n}, V, 2) (tasks, padded vertices, (x, y))"
        raise _bad(path, "polygon", problem, fix)
    width = polygon.shape[1]
    for name, (shape, axes) in _expected_shapes(n, width, config).items():
        if data[name].shape != shape:
            raise _bad(path, name, f"has shape {data[name].shape}, expected {shape} ({axes})", fix)
    known = _param_shapes(config)
    for key in sorted(k for k in data if k.startswith("param/")):
        shape, inner = data[key].shape, known.get(key.split("/", 1)[1])
        if len(shape) < 2 or shape[:2] != (n, T) or (inner is not None and shape[2:] != inner):
            want = (n, T, *inner) if inner is not None else f"({n}, {T}, ...)"
            raise _bad(path, key, f"has shape {shape}, expected {want} (tasks, T={T} keyframes, ...)", fix)
    return width


def _check_values(path: Path, data: dict[str, np.ndarray], width: int, fix: str) -> None:
    """Dtypes, finite floats, non-negative losses and times, and 3 <= n_vertices <= the padded width."""
    if data["video"].dtype != np.uint8:
        raise _bad(path, "video", f"has dtype {data['video'].dtype}, expected uint8 (pixel values 0-255)", fix)
    for name in _INT_ARRAYS:
        if data[name].dtype.kind not in "iu":
            raise _bad(path, name, f"has dtype {data[name].dtype}, expected integers", fix)
    for name in (*_FLOAT_ARRAYS, *sorted(k for k in data if k.startswith("param/"))):
        a = data[name]
        if a.dtype.kind != "f":
            raise _bad(path, name, f"has dtype {a.dtype}, expected floating point numbers", fix)
        finite = np.isfinite(a)
        if not finite.all():
            where = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise _bad(path, name, f"has NaN or inf (first at index {where}), expected finite numbers", fix)
    for name in ("oracle_solve_s", "oracle_loss"):
        negative = data[name] < 0
        if negative.any():
            raise _bad(path, name, f"has a negative entry (task {int(np.argmax(negative))}), expected values >= 0", fix)
    counts = data["n_vertices"]
    wrong = (counts < 3) | (counts > width)
    if wrong.any():
        i = int(np.argmax(wrong))
        problem = f"is {int(counts[i])} for task {i}, expected 3 to {width} (the padded width of 'polygon')"
        raise _bad(path, "n_vertices", problem, fix)


def _tasks(path: Path, data: dict[str, np.ndarray]) -> list[Task]:
    """The split's tasks; a polygon or trajectory that :class:`Task` refuses is a DatasetError naming task and file."""
    tasks = []
    for i in range(data["trajectory"].shape[0]):
        try:
            tasks.append(
                Task(
                    data["polygon"][i, : int(data["n_vertices"][i])],
                    data["trajectory"][i],
                    seed=int(data["seed"][i]),
                    name=f"{path.stem}/{i}",
                )
            )
        except ValueError as exc:  # InvalidPolygonError is a ValueError too
            raise DatasetError(
                f"{path}: task {i} ('polygon' / 'trajectory') is invalid: {exc}; regenerate the split"
            ) from None
    return tasks


def load_split(name: str | os.PathLike, data_dir: Path | str = DATA_DIR, *, config: SceneConfig | None = None) -> Split:
    """Load a split by name (``"train"``, ``"family"``, ...) or by ``.npz`` path.

    Every array is checked against the format for ``config`` (default
    :data:`~dlm_gym.config.DEFAULT_CONFIG`: T, frame size and finger count):
    shapes, dtypes, finiteness, vertex counts, at least one task, and the
    stored checksum when the file has one (files written before checksums
    load without that check; :func:`add_checksum` adds one). Loaded splits
    are cached per file, modification time and config; treat them as read-only.

    Raises:
        TypeError: if ``name`` is not a string or path.
        DatasetError: naming the file and, for bad content, the array and what
            was expected, if the file is missing, unreadable, damaged, of
            another format version or inconsistent.
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str):
        raise TypeError(f"a split is a name such as 'train' or a .npz path, got {type(name).__name__} {name!r}")
    config = config or DEFAULT_CONFIG
    path = split_path(name, data_dir)
    if not path.is_file():
        have = ", ".join(available_splits(data_dir)) or "none"
        what = "is a directory, not a split file" if path.is_dir() else "does not exist"
        raise DatasetError(
            f"split file {path} {what} (available splits: {have}); "
            "run `python examples/generate_dataset.py` to make the splits"
        )
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, config)
    if key in _CACHE:
        return _CACHE[key]
    data = _read_arrays(path)
    meta = _check_arrays(path, data, config)
    split = Split(
        name=path.stem,
        tasks=_tasks(path, data),
        videos=data["video"],
        commands=data["commands"],
        oracle_cost=data["oracle_cost"],
        oracle_solve_s=data["oracle_solve_s"],
        oracle_loss=data["oracle_loss"],
        params={k.split("/", 1)[1]: v for k, v in data.items() if k.startswith("param/")},
        meta=meta,
    )
    _CACHE[key] = split
    return split


def _write_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` atomically (:func:`dlm_gym.atomic.atomic_write`; its hidden ``.tmp`` file is ignored
    by :func:`available_splits`)."""
    with atomic_write(path) as handle:
        np.savez_compressed(handle, **arrays)


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
    *,
    config: SceneConfig | None = None,
) -> Path:
    """Write a split file (see the module docstring for the layout) with its checksum, atomically; returns its path.

    The arrays get the checks :func:`load_split` applies before anything is
    written, so a file this writes always loads.

    Raises:
        DatasetError: naming ``path`` and the array, if the content does not fit the format.
    """
    path = Path(path)
    n = len(tasks)
    width = max((t.n_facets for t in tasks), default=3)
    polygon = np.zeros((n, width, 2))
    for i, t in enumerate(tasks):
        polygon[i, : t.n_facets] = t.polygon
    arrays = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "meta": np.array(json.dumps(meta, sort_keys=True)),
        "polygon": polygon,
        "n_vertices": np.array([t.n_facets for t in tasks], dtype=np.int64),
        "trajectory": np.stack([t.trajectory for t in tasks]) if tasks else np.zeros((0, 0, 3)),
        "seed": np.array([-1 if t.seed is None else t.seed for t in tasks], dtype=np.int64),
        "video": np.asarray(videos, dtype=np.uint8),
        "commands": np.asarray(commands, dtype=np.float64),
        "oracle_cost": np.asarray(oracle_cost, dtype=np.float64),
        "oracle_solve_s": np.asarray(oracle_solve_s, dtype=np.float64),
        "oracle_loss": np.asarray(oracle_loss, dtype=np.float64),
    }
    arrays.update({f"param/{k}": np.asarray(v, dtype=np.float64) for k, v in params.items()})
    _check_arrays(path, arrays, config or DEFAULT_CONFIG, fix="not written: fix the code that built these arrays")
    arrays[_CHECKSUM] = np.array(array_checksum(arrays))
    _write_atomically(path, arrays)
    return path


def add_checksum(path: Path | str, *, config: SceneConfig | None = None) -> Path:
    """Re-save a split file with the checksum of its arrays (the same arrays, atomically); returns its path.

    For files written before splits carried checksums (the shipped ones up to
    now). The file must pass every check of :func:`load_split` first, so a
    damaged file is never given a checksum that would vouch for it. A file
    that already has a valid checksum is rewritten unchanged in content.
    """
    path = Path(path)
    data = _read_arrays(path)
    config = config or DEFAULT_CONFIG
    _check_arrays(path, data, config)
    _tasks(path, data)
    data[_CHECKSUM] = np.array(array_checksum(data))
    _write_atomically(path, data)
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
    bar = tqdm(total=spec.size, desc=f"{name}", disable=None if progress else True, unit="task")  # None: off unless a terminal
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
        config=config,
    )
    return path, stats
