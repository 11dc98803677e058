"""Training corpora: resumable shards of oracle-labelled tasks, their manifest, and minibatch streaming."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dlm_gym.atomic import atomic_write
from dlm_gym.config import DEFAULT_CONFIG, SceneConfig
from dlm_gym.datasets.generation import (
    SEED_RANGES,
    SplitSpec,
    _label_seeds,
    _labeller,
    _progress_bar,
    _save_labelled,
    _stats,
)
from dlm_gym.datasets.splits import (
    _CHECKSUM,
    CorpusError,
    DatasetError,
    Split,
    SplitItem,
    _check_arrays,
    _concat,
    _index,
    _read_arrays,
    _split_from_arrays,
    array_checksum,
    content_checksum,
)

# ------------------------------------------------------------------ corpora

CORPUS_MANIFEST = "manifest.json"
"""The name of a corpus directory's manifest."""
CORPUS_FORMAT = "dlm-gym corpus"
CORPUS_VERSION = 1
DEFAULT_SHARD_SIZE = 1000
"""Tasks per corpus shard: 1,000 tasks are about 2.5 MB of compressed file and 40 MB of memory when streamed."""
CORPUS_SEED_STRIDE = 4
"""Candidate seeds per task in each shard's seed block: a shard of ``s`` tasks draws from ``4 s`` seeds
(the generator's rejection rate is about 1 %; a block that runs out is an error, never a silent spill-over)."""

_SPEC_KEYS = ("shard_size", "first_seed", "n_facets", "shape", "time_limit")
"""The settings that determine a shard's content (``size`` only says how many shards there are)."""


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
    """How a corpus is drawn: ``size`` tasks in shards of ``shard_size``, shard ``k`` from a fixed seed block.

    Shard ``k`` holds the first ``shard_size`` tasks (fewer for the last shard)
    that the oracle solves among the seeds ``first_seed + k * B`` to
    ``first_seed + (k + 1) * B``, ``B = shard_size *`` :data:`CORPUS_SEED_STRIDE`.
    So a shard depends only on its index and these settings, never on how many
    workers made it, on which backend, or on the other shards; a larger
    ``size`` keeps every full shard of a smaller one.
    """

    size: int
    shard_size: int = DEFAULT_SHARD_SIZE
    first_seed: int = SEED_RANGES["corpus"][0]
    n_facets: int | tuple[int, int] = (4, 6)
    shape: str = "polygon"
    time_limit: float = 30.0

    def __post_init__(self) -> None:
        for field in ("size", "shard_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise CorpusError(f"corpus {field} must be a positive integer, got {value!r}")
        lo, hi = SEED_RANGES["corpus"]
        last = self.seed_block(self.n_shards - 1).stop
        if not (lo <= self.first_seed and last <= hi):
            raise CorpusError(
                f"a corpus of {self.size} tasks in shards of {self.shard_size} draws seeds {self.first_seed} to "
                f"{last}, outside the 'corpus' seed range [{lo}, {hi}); use a smaller --size or --seed-offset"
            )

    @property
    def n_shards(self) -> int:
        return -(-self.size // self.shard_size)

    def shard_tasks(self, k: int) -> int:
        """How many tasks shard ``k`` holds."""
        return min(self.shard_size, self.size - k * self.shard_size)

    def seed_block(self, k: int) -> range:
        """The candidate seeds of shard ``k``."""
        width = self.shard_size * CORPUS_SEED_STRIDE
        return range(self.first_seed + k * width, self.first_seed + (k + 1) * width)

    def shard_name(self, k: int) -> str:
        return f"shard-{k:05d}"

    def shard_meta(self, k: int) -> dict:
        """What shard ``k``'s ``meta["corpus"]`` records: its place and the settings that made it."""
        block = self.seed_block(k)
        return {
            "shard": k,
            "tasks": self.shard_tasks(k),
            "seed_block": [block.start, block.stop],
            **{key: _jsonable(getattr(self, key)) for key in _SPEC_KEYS},
        }

    def command(self, path: Path | str) -> str:
        """The command that (re)generates this corpus at ``path``; it resumes an interrupted run.

        ``examples/generate_dataset.py`` for the generator's default shapes, else
        the :func:`generate_corpus` call (the script has no shape options).
        """
        if (_jsonable(self.n_facets), self.shape) != ([4, 6], "polygon"):
            return f'python -c "from dlm_gym.datasets import *; generate_corpus({str(path)!r}, {self!r})"'
        parts = [f"python examples/generate_dataset.py --corpus {path} --size {self.size}"]
        parts.append(f"--shard-size {self.shard_size}")
        offset = self.first_seed - SEED_RANGES["corpus"][0]
        if offset:
            parts.append(f"--seed-offset {offset}")
        if self.time_limit != 30.0:
            parts.append(f"--time-limit {self.time_limit!r}")
        return " ".join(parts)


def _jsonable(value):
    """Tuples as lists, as JSON gives them back, so that settings compare equal after a round trip."""
    return list(value) if isinstance(value, tuple) else value


def _read_manifest(path: Path) -> dict | None:
    """A corpus directory's manifest, or None if there is none or it is not a readable JSON object."""
    try:
        manifest = json.loads((path / CORPUS_MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == CORPUS_FORMAT else None


def _check_same_settings(path: Path, manifest: dict | None, spec: CorpusSpec) -> None:
    """Refuse to resume a corpus made with other settings: its shards would be silently replaced."""
    if manifest is None:
        return
    old = manifest.get("spec", {})
    differ = [k for k in _SPEC_KEYS if k in old and old[k] != _jsonable(getattr(spec, k))]
    if differ:
        was = ", ".join(f"{k}={old[k]!r}" for k in differ)
        now = ", ".join(f"{k}={_jsonable(getattr(spec, k))!r}" for k in differ)
        raise CorpusError(
            f"{path} holds a corpus made with {was}, not {now}; resume it with its own settings "
            f"(`{manifest.get('command', '')}`) or write the new corpus to another directory"
        )


def _valid_shard(file: Path, spec: CorpusSpec, k: int, config: SceneConfig) -> dict | None:
    """The manifest entry of shard ``k`` if ``file`` is a complete, undamaged shard of this spec, else None."""
    if not file.is_file():
        return None
    try:
        data = _read_arrays(file)
        meta = _check_arrays(file, data, config)
    except DatasetError:
        return None
    if meta.get("corpus") != spec.shard_meta(k) or data["trajectory"].shape[0] != spec.shard_tasks(k):
        return None
    return _shard_entry(file, spec, k, data, meta)


def time_limited_solves(meta: dict) -> int:
    """Solves of a generation that reached the time limit: kept with a gap, or rejected for time.

    Their outcome depends on the machine's speed and load, so a split or corpus
    that has any is reproducible from its seeds only up to them.
    """
    return int(meta.get("feasible_with_gap", 0)) + int(meta.get("rejected", {}).get("TIME_LIMIT", 0))


def _shard_entry(file: Path, spec: CorpusSpec, k: int, data: dict[str, np.ndarray], meta: dict) -> dict:
    block = spec.seed_block(k)
    return {
        "file": file.name,
        "tasks": int(data["trajectory"].shape[0]),
        "seed_block": [block.start, block.stop],
        "candidates": meta["candidates"],
        "rejected": meta["rejected"],
        "time_limited": time_limited_solves(meta),
        "checksum": array_checksum(data),
        "content_checksum": content_checksum(data),
    }


def _write_manifest(path: Path, spec: CorpusSpec, shards: list[dict | None], backend: str) -> dict:
    """Write the manifest atomically (after every shard, so that an interrupted run keeps its progress)."""
    done = [s for s in shards if s is not None]
    complete = len(done) == spec.n_shards
    candidates = sum(s["candidates"] for s in done)
    rejected: dict[str, int] = {}
    for s in done:
        for status, count in s["rejected"].items():
            rejected[status] = rejected.get(status, 0) + count
    digest = hashlib.sha256(b"dlm-gym corpus content v1\0")
    for s in done:
        digest.update(s["content_checksum"].encode())
    manifest = {
        "format": CORPUS_FORMAT,
        "version": CORPUS_VERSION,
        "complete": complete,
        "size": spec.size,
        "n_shards": spec.n_shards,
        "spec": {k: _jsonable(getattr(spec, k)) for k in _SPEC_KEYS},
        "seed_stride": CORPUS_SEED_STRIDE,
        "command": spec.command(path),
        "backend": backend,
        "tasks": sum(s["tasks"] for s in done),
        "candidates": candidates,
        "rejected": rejected,
        "rejection_rate": sum(rejected.values()) / candidates if candidates else 0.0,
        "time_limited": sum(s.get("time_limited", 0) for s in done),
        "content_checksum": digest.hexdigest() if complete else None,
        "shards": shards,
    }
    with atomic_write(path / CORPUS_MANIFEST, "w") as handle:
        json.dump(manifest, handle, indent=1)
        handle.write("\n")
    return manifest


def generate_corpus(
    path: Path | str,
    spec: CorpusSpec,
    *,
    workers: int = 1,
    backend: str = "pool",
    address: str | None = None,
    progress: bool = True,
    config: SceneConfig | None = None,
) -> tuple[dict, int]:
    """Generate (or finish) the corpus ``spec`` in the directory ``path``: shard files and a manifest.

    Resumable: shards already in ``path`` that are complete, pass every check
    of :func:`load_split` (their checksum included) and were made with these
    settings are kept; missing, damaged or foreign ones are (re)generated.
    Each shard is written atomically and the manifest is updated after it, so
    a run killed at any point loses at most the shard it was labelling. A run
    that resumes makes the same shards as one that never stopped (the same
    :func:`content_checksum`).

    Returns:
        The manifest and how many shards this run generated.

    Raises:
        CorpusError: if ``path`` holds a corpus made with other settings.
        BackendError, MissingExtraError: see :func:`_labeller`.
    """
    path = Path(path)
    config = config or DEFAULT_CONFIG
    if path.exists() and not path.is_dir():
        raise CorpusError(f"{path} is a file; a corpus is a directory")
    _check_same_settings(path, _read_manifest(path), spec)
    path.mkdir(parents=True, exist_ok=True)
    files = [path / f"{spec.shard_name(k)}.npz" for k in range(spec.n_shards)]
    shards = [_valid_shard(f, spec, k, config) for k, f in enumerate(files)]
    todo = [k for k, s in enumerate(shards) if s is None]
    manifest = _write_manifest(path, spec, shards, backend)
    if not todo:
        return manifest, 0
    done = spec.size - sum(spec.shard_tasks(k) for k in todo)
    bar = _progress_bar(spec.size, path.name or "corpus", progress, initial=done)
    try:
        with _labeller(backend, workers, address) as labeller:
            for k in todo:
                name, block = spec.shard_name(k), spec.seed_block(k)
                shard_spec = SplitSpec(spec.shard_tasks(k), spec.n_facets, spec.shape, seed=block.start)
                exhausted = CorpusError(
                    f"corpus shard {k} found fewer than {spec.shard_tasks(k)} solvable tasks among its "
                    f"{len(block)} seeds {block.start}-{block.stop - 1}: the oracle rejected over "
                    f"{1 - 1 / CORPUS_SEED_STRIDE:.0%} of them; raise --time-limit ({spec.time_limit:g} s)"
                )
                labelled = _label_seeds(
                    name, shard_spec, spec.shard_tasks(k), block, exhausted, labeller, spec.time_limit, config, bar
                )
                meta = {**_stats(name, shard_spec, labelled, backend, spec.time_limit), "corpus": spec.shard_meta(k)}
                _save_labelled(files[k], name, labelled.kept, meta, config)
                data = _read_arrays(files[k])
                shards[k] = _shard_entry(files[k], spec, k, data, meta)
                manifest = _write_manifest(path, spec, shards, backend)
    finally:
        bar.close()
    return manifest, len(todo)


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A generated corpus (:func:`load_corpus`): its shards are read one at a time, never all at once.

    ``len(corpus)`` is its number of tasks; ``for item in corpus`` streams every
    :class:`SplitItem` shard by shard; :meth:`shard` loads one shard as a
    :class:`Split`; :meth:`iter_minibatches` streams shuffled minibatches.
    """

    path: Path
    manifest: dict
    config: SceneConfig = DEFAULT_CONFIG

    def __len__(self) -> int:
        return sum(s["tasks"] for s in self.manifest["shards"])

    @property
    def n_shards(self) -> int:
        return len(self.manifest["shards"])

    @property
    def shard_sizes(self) -> list[int]:
        return [s["tasks"] for s in self.manifest["shards"]]

    @property
    def command(self) -> str:
        """The command that regenerates this corpus."""
        return self.manifest["command"]

    def shard(self, k: int) -> Split:
        """Shard ``k`` as a :class:`Split` (read from disk each time, not cached).

        Raises:
            CorpusError: if the file is missing, damaged, or not the one the manifest lists.
        """
        k = _index(k, self.n_shards, str(self.path))
        entry = self.manifest["shards"][k]
        file = self.path / entry["file"]
        fix = f"regenerate it with `{self.command}` (it redoes only missing or damaged shards)"
        if not file.is_file():
            raise CorpusError(f"{file}: corpus shard {k} is missing; {fix}")
        try:
            data = _read_arrays(file)
            meta = _check_arrays(file, data, self.config, fix=fix)
        except DatasetError as exc:  # as a CorpusError, whose callers catch corpus problems in one place
            raise CorpusError(str(exc)) from None
        if str(data.get(_CHECKSUM, "")) != entry["checksum"]:
            raise CorpusError(f"{file}: not the shard the manifest lists (another checksum); {fix}")
        return _split_from_arrays(file, data, meta)

    def __iter__(self) -> Iterator[SplitItem]:
        for k in range(self.n_shards):
            yield from self.shard(k)

    def iter_minibatches(
        self, batch_size: int, *, seed: int, epochs: int | None = 1, drop_last: bool = False
    ) -> Iterator[Split]:
        """Stream shuffled minibatches, each a :class:`Split` of ``batch_size`` tasks, every task once per epoch.

        Each epoch visits the shards in a random order and each shard's tasks
        in a random order (both from ``seed`` and the epoch number, so the
        stream is reproducible); a minibatch may span the end of one shard and
        the start of the next. Only one shard is in memory at a time (plus the
        copied tasks of one minibatch). Since shards are disjoint blocks of
        i.i.d. task seeds, shuffling within shards mixes as well as a global
        shuffle would.

        Args:
            batch_size: tasks per minibatch.
            seed: the shuffling seed (required, so that every run says which stream it trained on).
            epochs: passes over the corpus; None streams forever.
            drop_last: drop each epoch's last minibatch if it is short (default: yield it).

        Minibatches are named after the corpus directory, with
        ``meta = {"corpus": path, "epoch": e}``; task names say which shard and
        row they come from (``"shard-00003/17"``).
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1):
            raise ValueError(f"epochs must be a positive integer or None (forever), got {epochs!r}")
        for epoch in itertools.count() if epochs is None else range(epochs):
            rng = np.random.default_rng([int(seed), epoch])
            meta = {"corpus": str(self.path), "epoch": epoch}
            pending: list[Split] = []
            waiting = 0
            for k in rng.permutation(self.n_shards):
                shard = self.shard(int(k))
                order = rng.permutation(len(shard))
                start = 0
                while start < len(order):
                    take = min(batch_size - waiting, len(order) - start)
                    pending.append(shard.take(order[start : start + take]))
                    waiting += take
                    start += take
                    if waiting == batch_size:
                        yield _concat(pending, self.path.name, meta)
                        pending, waiting = [], 0
                del shard  # before the next one is read
            if pending and not drop_last:
                yield _concat(pending, self.path.name, meta)


def load_corpus(path: Path | str, *, config: SceneConfig | None = None) -> Corpus:
    """Open a corpus directory made by :func:`generate_corpus` (``examples/generate_dataset.py --corpus``).

    Only the manifest is read here; shards are read and checked (against their
    own checksum and the manifest's) when streamed.

    Raises:
        CorpusError: naming the directory and the command that (re)makes it, if
            there is no manifest, it is unreadable, or the corpus is incomplete.
    """
    path = Path(path)
    make = f"`python examples/generate_dataset.py --corpus {path} --size N`"
    if not (path / CORPUS_MANIFEST).is_file():
        what = "does not exist" if not path.exists() else f"has no {CORPUS_MANIFEST}"
        raise CorpusError(f"corpus directory {path} {what}; generate it with {make}")
    manifest = _read_manifest(path)
    if manifest is None or manifest.get("version") != CORPUS_VERSION:
        raise CorpusError(
            f"{path / CORPUS_MANIFEST} is not a dlm-gym corpus manifest of version {CORPUS_VERSION}; "
            f"regenerate the corpus with {make}"
        )
    shards = manifest.get("shards") or []
    done = [s for s in shards if s is not None and (path / s["file"]).is_file()]
    if not manifest.get("complete") or len(done) != len(shards):
        raise CorpusError(
            f"corpus {path} is incomplete ({len(done)} of {len(shards)} shards); finish it with "
            f"`{manifest.get('command', make)}` (generation resumes where it stopped)"
        )
    return Corpus(path=path, manifest=manifest, config=config or DEFAULT_CONFIG)
