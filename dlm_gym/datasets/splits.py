"""Dataset splits: the stored format, its checks, the :class:`Split` sequence, loading and saving.

The file layout is documented in :mod:`dlm_gym.datasets`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import operator
import os
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from dlm_gym.atomic import atomic_write
from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.task import Task

FORMAT_VERSION = 1
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SPLIT_NAMES = ("train", "finetune", "test", "family", "smooth", "family_xl", "test_xl", "smooth_xl")
"""The shipped splits, in the order tables show them."""
PAPER_SPLITS = ("train", "finetune", "test", "family", "smooth")
"""The paper-sized splits of the reproduction (Section 5)."""
XL_SPLITS = ("family_xl", "test_xl", "smooth_xl")
"""The held-out evaluation splits: quality claims are measured here."""


class DatasetError(ValueError):
    """A split file is missing, corrupt, truncated or of another format version."""


class CorpusError(DatasetError):
    """A corpus directory is missing, incomplete, or was made with other settings than the ones asked for."""


class BackendError(RuntimeError):
    """A labelling backend cannot run (an unknown name, a Ray cluster that cannot be reached)."""


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the ``pip install`` that adds it."""


def _require(module: str, extra: str, what: str):
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{what} needs the {module!r} package ({exc}); install it with `pip install -e '.[{extra}]'`"
        ) from None


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a``: items hand out views of the cached split, which must not change."""
    view = a.view()
    view.flags.writeable = False
    return view


@dataclasses.dataclass(frozen=True, eq=False)
class SplitItem:
    """One task of a split with its labels: what ``split[i]`` and ``for item in split`` give.

    The arrays are read-only views into the split (no copy is made); ``params``
    is a read-only mapping. Items compare by identity (``eq=False``): two items
    of the same task are equal only when they are the same object.
    """

    task: Task
    """The task (object polygon and target trajectory); ``task.name`` is ``"<split>/<i>"``."""
    video: np.ndarray
    """``(T, S, S, 3)`` uint8, the target video."""
    commands: np.ndarray
    """``(T, N, 4)`` float64, the oracle plan: contact points (m) and forces (N) per keyframe."""
    params: Mapping[str, np.ndarray]
    """The mechanical parameters P(t) of the oracle's plan, name -> ``(T, ...)`` float64."""
    oracle_loss: float
    """Object-trajectory loss (cm^2) of the oracle plan run in the env as float32 actions."""
    oracle_cost: float
    """Optimal value of the oracle's problem (eq. 11)."""
    seed: int
    """The seed the task was sampled with (``-1`` if it had none)."""


def _index(index, n: int, name: str) -> int:
    """``index`` as a position in ``range(n)``; negative counts from the end, like a list."""
    if isinstance(index, (bool, np.bool_)):
        raise TypeError(f"split indices must be integers or slices, not {type(index).__name__}")
    try:
        i = operator.index(index)
    except TypeError:
        raise TypeError(f"split indices must be integers or slices, not {type(index).__name__}") from None
    if not -n <= i < n:
        raise IndexError(f"split {name!r} has {n} tasks; index {i} is out of range")
    return i + n if i < 0 else i


@dataclasses.dataclass
class Split:
    """A loaded split. ``tasks[i]`` goes with ``videos[i]``, ``commands[i]`` and ``params[k][i]``.

    A split is also a sequence of :class:`SplitItem`:

    - ``len(split)``: the number of tasks;
    - ``split[i]``: the i-th task with its labels (negative ``i`` counts from the end;
      ``IndexError`` out of range, ``TypeError`` for anything but an integer or a slice);
    - ``split[a:b:c]``: a :class:`Split` of those tasks (same name and meta; its arrays
      are views of this split's, no copy), so every column attribute works on it;
    - ``for item in split``: every item in order.

    :meth:`take` picks tasks by an array of indices (a copy). Loaded splits are
    cached and shared: treat the arrays as read-only.
    """

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

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._select(index, list(self.tasks[index]))
        i = _index(index, len(self), self.name)
        task = self.tasks[i]
        return SplitItem(
            task=task,
            video=_read_only(self.videos[i]),
            commands=_read_only(self.commands[i]),
            params=types.MappingProxyType({k: _read_only(v[i]) for k, v in self.params.items()}),
            oracle_loss=float(self.oracle_loss[i]),
            oracle_cost=float(self.oracle_cost[i]),
            seed=-1 if task.seed is None else int(task.seed),
        )

    def __iter__(self) -> Iterator[SplitItem]:
        for i in range(len(self)):
            yield self[i]

    def take(self, indices: Sequence[int] | np.ndarray) -> Split:
        """A :class:`Split` of the tasks at ``indices`` (integers, in that order, repeats allowed); arrays are copied.

        Raises:
            IndexError: naming the first index out of range.
            TypeError: if ``indices`` are not integers.
        """
        idx = np.asarray(indices)
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise TypeError(f"take() needs a 1-D sequence of integers, got dtype {idx.dtype} and shape {idx.shape}")
        positions = [_index(int(i), len(self), self.name) for i in idx]
        return self._select(np.array(positions, dtype=np.int64), [self.tasks[i] for i in positions])

    def _select(self, index: slice | np.ndarray, tasks: list[Task]) -> Split:
        return Split(
            name=self.name,
            tasks=tasks,
            videos=self.videos[index],
            commands=self.commands[index],
            oracle_cost=self.oracle_cost[index],
            oracle_solve_s=self.oracle_solve_s[index],
            oracle_loss=self.oracle_loss[index],
            params={k: v[index] for k, v in self.params.items()},
            meta=dict(self.meta),
        )


def _concat(parts: Sequence[Split], name: str, meta: dict) -> Split:
    """One :class:`Split` of the tasks of ``parts`` in order (they must share their ``params`` keys)."""
    return Split(
        name=name,
        tasks=[t for p in parts for t in p.tasks],
        videos=np.concatenate([p.videos for p in parts]),
        commands=np.concatenate([p.commands for p in parts]),
        oracle_cost=np.concatenate([p.oracle_cost for p in parts]),
        oracle_solve_s=np.concatenate([p.oracle_solve_s for p in parts]),
        oracle_loss=np.concatenate([p.oracle_loss for p in parts]),
        params={k: np.concatenate([p.params[k] for p in parts]) for k in parts[0].params},
        meta=meta,
    )


def available_splits(data_dir: Path | str = DATA_DIR) -> list[str]:
    """Names of the splits present in ``data_dir``, in :data:`SPLIT_NAMES` order first."""
    found = {p.stem for p in Path(data_dir).glob("*.npz")}
    return [s for s in SPLIT_NAMES if s in found] + sorted(found - set(SPLIT_NAMES))


def split_path(name: str, data_dir: Path | str = DATA_DIR) -> Path:
    """Where the split ``name`` lives (a path ending in ``.npz`` is taken as is)."""
    if name.endswith(".npz"):
        return Path(name)
    return Path(data_dir) / f"{name}.npz"


_EXPECTED_KEYS = (
    "polygon",
    "n_vertices",
    "trajectory",
    "seed",
    "video",
    "commands",
    "oracle_cost",
    "oracle_solve_s",
    "oracle_loss",
)
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


TIMING_ARRAYS = ("oracle_solve_s",)
"""Arrays that hold wall-clock measurements: they differ between two runs of the same generation."""
TIMING_META_KEYS = ("solve_s_median", "solve_s_p90", "backend")
"""``meta`` entries that depend on the run rather than on the seeds: timing statistics and the backend used."""


def content_checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 (hex) of a split's arrays without what depends on the run: :data:`TIMING_ARRAYS` and the
    :data:`TIMING_META_KEYS` of ``meta``.

    Two generations of the same seeds give the same content checksum whatever
    their workers, backend or machine load (as long as no oracle solve reaches
    its time limit), while their :func:`array_checksum` differs with the
    measured solve times.
    """
    content = {k: v for k, v in arrays.items() if k not in TIMING_ARRAYS and k != _CHECKSUM}
    if "meta" in content:
        meta = json.loads(str(content["meta"]))
        if isinstance(meta, dict):
            meta = {k: v for k, v in meta.items() if k not in TIMING_META_KEYS}
        content["meta"] = np.array(json.dumps(meta, sort_keys=True))
    return array_checksum(content)


def split_checksums(path: Path | str, *, config: SceneConfig | None = None) -> tuple[str, str]:
    """``(checksum, content checksum)`` of a split file (:func:`array_checksum`, :func:`content_checksum`).

    The file gets every check of :func:`load_split` first.

    Raises:
        DatasetError: naming the file, if it is missing, damaged or inconsistent.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"split file {path} does not exist; {_REGENERATE}")
    data = _read_arrays(path)
    _check_arrays(path, data, config or DEFAULT_CONFIG)
    return array_checksum(data), content_checksum(data)


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
    split = _load_uncached(path, config)
    _CACHE[key] = split
    return split


def _load_uncached(path: Path, config: SceneConfig) -> Split:
    """Read and check a split file without the cache (corpus shards are streamed, never kept)."""
    data = _read_arrays(path)
    return _split_from_arrays(path, data, _check_arrays(path, data, config))


def _split_from_arrays(path: Path, data: dict[str, np.ndarray], meta: dict) -> Split:
    """The :class:`Split` of a file's checked arrays."""
    return Split(
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


def _write_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` atomically (:func:`dlm_gym.atomic.atomic_write`; its hidden ``.tmp`` file is ignored
    by :func:`available_splits`)."""
    with atomic_write(path) as handle:
        np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]


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
