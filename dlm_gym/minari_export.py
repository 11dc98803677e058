"""Export episodes on a dataset split to a `Minari <https://minari.farama.org>`_ dataset (offline RL).

Two sources of episodes, one per task of the split:

- the split's stored oracle demonstrations: the MIQP oracle's commands replayed
  through the env as float32 actions (:func:`dlm_gym.actions.command_to_action`,
  exactly what the ``miqp`` policy plays), so each episode's
  object-trajectory loss is the split's stored ``oracle_loss`` to the bit;
- the rollouts of a policy of the zoo (:func:`policies.make_policy`).

Episodes are recorded with Minari's :class:`minari.DataCollector` around
``gym.make("dlm_gym/VideoPlanarManip-v0")``, with every ``info`` entry and
lossless images (no JPEG). Each episode is reset with
``options={"split": <name or absolute path>, "index": i}`` and ``seed=i``,
which Minari stores with it, so ``env.reset(seed=..., options=...)`` replays
it. The ``task`` reset option cannot be used under a DataCollector: Minari
writes reset options into HDF5 attributes, which cannot hold a
:class:`~dlm_gym.Task` (h5py raises ``TypeError: Object dtype dtype('O') has
no native HDF5 equivalent``).

Needs the ``minari`` extra (``pip install -e '.[minari]'``). Datasets go to
``data_path`` if given, else ``$MINARI_DATASETS_PATH``, else Minari's default
``~/.minari/datasets``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlm_gym.actions import command_to_action
from dlm_gym.config import DEFAULT_CONFIG
from dlm_gym.datasets import Split, load_split
from dlm_gym.datasets.splits import _index, _require

__all__ = ["ENV_ID", "ExportError", "MinariExport", "default_dataset_id", "export_split", "import_minari"]

ENV_ID = "dlm_gym/VideoPlanarManip-v0"
"""The env id the datasets record (Minari stores its spec, so ``dataset.recover_environment()`` works)."""

_DATASET_ID = re.compile(r"^(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+$")
"""Minari's ``(namespace/)name-v(version)``; the version is required here, so that a re-export bumps it."""


class ExportError(ValueError):
    """The export cannot start: a malformed or taken dataset id, or a policy the env cannot record."""


@dataclasses.dataclass(frozen=True)
class MinariExport:
    """What :func:`export_split` made: the dataset and each episode's object-trajectory loss (cm^2)."""

    dataset: Any
    """The :class:`minari.MinariDataset`."""
    losses: np.ndarray
    """``info["object_trajectory_loss"]`` at the end of each episode, in episode order."""
    indices: tuple[int, ...]
    """The split index of each episode."""


def import_minari():
    """The ``minari`` module, or :class:`~dlm_gym.datasets.MissingExtraError` naming ``pip install -e '.[minari]'``."""
    _require("h5py", "minari", "exporting to Minari")
    return _require("minari", "minari", "exporting to Minari")


def default_dataset_id(split: str, source: str) -> str:
    """``dlm_gym/<split>-<source>-v0``: e.g. ``dlm_gym/family-oracle-v0``, ``dlm_gym/test-noop-v0``."""
    stem = Path(split).stem if split.endswith(".npz") else split
    return f"dlm_gym/{_id_part(stem)}-{_id_part(source)}-v0"


def _id_part(text: str) -> str:
    """``text`` with every run of characters a dataset id cannot hold replaced by ``_``."""
    return re.sub(r"[^-\w]+", "_", text)


@contextlib.contextmanager
def _datasets_path(path: Path | str | None) -> Iterator[Path]:
    """Point Minari at ``path`` (``MINARI_DATASETS_PATH``) while exporting; yields the datasets root."""
    if path is None:
        yield Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(path).resolve())
    try:
        yield Path(path)
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _check_dataset_id(dataset_id: str, root: Path) -> None:
    if not isinstance(dataset_id, str) or not _DATASET_ID.match(dataset_id):
        raise ExportError(
            f"dataset id {dataset_id!r} is not of the form (namespace/)name-vN, e.g. 'dlm_gym/family-oracle-v0' "
            "(letters, digits, '-' and '_'; the version is required)"
        )
    if (root / dataset_id).exists():
        raise ExportError(
            f"a Minari dataset {dataset_id!r} already exists in {root}; bump its version (-v1, ...), pick "
            f"another --dataset-id, or delete it (`minari delete {dataset_id}`)"
        )


def _split_reference(split: str | os.PathLike) -> str:
    """The ``split`` reset option for a split name or file: a name as is, a file as an absolute path."""
    text = os.fspath(split)
    return str(Path(text).resolve()) if text.endswith(".npz") or os.sep in text else text


def _task_indices(split: Split, indices: Sequence[int] | None) -> tuple[int, ...]:
    """The split positions to record (negative ones count from the end); at least one."""
    if indices is None:
        return tuple(range(len(split)))
    try:
        picked = tuple(_index(i, len(split), split.name) for i in indices)
    except (IndexError, TypeError) as exc:
        raise ExportError(f"cannot export task {exc}") from None
    if not picked:
        raise ExportError("no tasks to export: give at least one index")
    return picked


Actor = Callable[[Any, dict, int], Callable[[Any], np.ndarray]]
"""Builds, from an episode's first observation, info and split index, the function that gives each step's action."""


def _oracle_actor(split: Split) -> Actor:
    """Replays the stored oracle commands as the float32 actions the ``miqp`` policy would send."""

    def start(obs, info, i: int):
        actions = command_to_action(split.commands[i], DEFAULT_CONFIG)
        return lambda obs: actions[int(obs["step"])]

    return start


def _policy_actor(policy, env) -> Actor:
    """Plays a zoo policy: ``reset(obs, info)`` once (privileged ones get ``info["task"]``), then ``act(obs)``."""

    def start(obs, info, i: int):
        if getattr(policy, "privileged", False):
            info = {**info, "task": env.unwrapped.task}
        policy.reset(obs, info)
        return policy.act

    return start


def _record(collector, reference: str, indices: Sequence[int], start: Actor, progress: bool) -> np.ndarray:
    """One episode per split index through the DataCollector; returns each episode's final loss."""
    from tqdm.auto import tqdm

    losses = []
    for i in tqdm(indices, desc="episodes", disable=None if progress else True, unit="episode"):
        obs, info = collector.reset(seed=i, options={"split": reference, "index": i})
        act = start(obs, info, i)
        terminated = truncated = False
        while not (terminated or truncated):
            obs, _, terminated, truncated, info = collector.step(act(obs))
        losses.append(float(info["object_trajectory_loss"]))
    return np.array(losses)


def export_split(
    split: str | os.PathLike,
    dataset_id: str | None = None,
    *,
    policy=None,
    indices: Sequence[int] | None = None,
    obs_type: str = "pixels",
    data_path: Path | str | None = None,
    author: str | None = None,
    author_email: str | None = None,
    code_permalink: str | None = None,
    progress: bool = True,
) -> MinariExport:
    """Record one episode per task of ``split`` and save them as the Minari dataset ``dataset_id``.

    Args:
        split: a split name (``"family"``) or a split ``.npz`` file.
        dataset_id: ``(namespace/)name-vN``; default :func:`default_dataset_id` (``dlm_gym/family-oracle-v0``).
        policy: None for the stored oracle demonstrations, or a zoo policy
            (:func:`policies.make_policy`) to record its rollouts; its ``obs_type`` wins over ``obs_type``.
        indices: the split's tasks to record (default: all, in order).
        obs_type: ``"pixels"`` or ``"state"`` observations, for the oracle demonstrations.
        data_path: the Minari datasets root to write into (default ``$MINARI_DATASETS_PATH``,
            else ``~/.minari/datasets``).
        author, author_email, code_permalink: Minari metadata (it warns about none of them when left out).
        progress: show a progress bar (only where the output is a terminal).

    Raises:
        ExportError: for a malformed or existing dataset id, or a policy built for another scene config.
        DatasetError: if the split cannot be loaded.
        MissingExtraError: if Minari is not installed.
    """
    minari = import_minari()
    import gymnasium as gym

    import dlm_gym

    loaded = load_split(os.fspath(split))
    picked = _task_indices(loaded, indices)
    source = "oracle" if policy is None else (getattr(policy, "name", None) or type(policy).__name__)
    dataset_id = dataset_id or default_dataset_id(os.fspath(split), source)
    if policy is not None:
        obs_type = getattr(policy, "obs_type", "pixels")
        if (getattr(policy, "config", None) or DEFAULT_CONFIG) != DEFAULT_CONFIG:
            raise ExportError(
                f"policy {source!r} is built for a non-default scene config; the Minari export records the "
                "registered env with the default config"
            )
    with _datasets_path(data_path) as root:
        _check_dataset_id(dataset_id, root)
        env = gym.make(ENV_ID, obs_type=obs_type)
        collector = minari.DataCollector(env, record_infos=True, jpeg_encoding=False)
        try:
            start = _oracle_actor(loaded) if policy is None else _policy_actor(policy, env)
            losses = _record(collector, _split_reference(split), picked, start, progress)
            what = "the MIQP oracle's stored plans" if policy is None else f"the {source!r} policy"
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"`\w+` is set to None", category=UserWarning)
                dataset = collector.create_dataset(
                    dataset_id=dataset_id,
                    eval_env=env.spec,
                    algorithm_name="miqp-oracle (stored labels)" if policy is None else source,
                    author=author,
                    author_email=author_email,
                    code_permalink=code_permalink,
                    description=(
                        f"{len(picked)} episodes of {what} on the dlm-gym split {loaded.name!r} "
                        f"({obs_type} observations); each episode's reset options name its split and task index."
                    ),
                    requirements=[f"dlm-gym=={dlm_gym.__version__}"],
                )
        finally:
            collector.close()
    return MinariExport(dataset=dataset, losses=losses, indices=picked)
