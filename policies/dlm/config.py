"""Every setting of a learned-policy training run, in one place: :class:`TrainConfig`.

One frozen dataclass (CleanRL's ``Args`` is the model) is, at once,

* the command line of ``examples/train.py`` (:meth:`TrainConfig.add_arguments`
  builds the flags from the fields: their types, defaults and help; and
  :meth:`TrainConfig.from_args` reads them back),
* the argument of :func:`policies.dlm.trainer.train_policy`,
* the record stored in the checkpoint (:meth:`TrainConfig.to_dict`, read back
  with :meth:`TrainConfig.from_dict` or :meth:`TrainConfig.from_checkpoint`),
* and the command that rebuilds that checkpoint (:meth:`TrainConfig.command`).

Two presets: :data:`DEFAULT` (what ``examples/train.py`` runs unless told
otherwise) and :data:`PAPER` (Section 5 verbatim). Both train ``dlm``; pick
another policy with :func:`dataclasses.replace`::

    from dataclasses import replace
    from policies.dlm.config import PAPER
    from policies.dlm.trainer import train_policy

    train_policy(replace(PAPER, policy="cvx", out="runs/cvx_paper_schedule.pt"))

A value out of range raises :class:`ValueError` when the config is built,
naming the field, its flag and what to pass instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import numbers
import os
import shlex
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from dlm_gym import cli
from policies.common.paths import CHECKPOINT_DIR, REPO_ROOT
from policies.dlm.architectures import LEARNED, PAPER_SUFFIX

__all__ = ["TrainConfig", "DEFAULT", "PAPER", "LEARNED_GROUP", "parse_grad_clip", "parse_seed"]

LEARNED_GROUP = "learned policies (nn, nnm, mdr, cvx, dlm)"
"""The title of the argument group holding the flags only the learned policies read."""


# ------------------------------------------------------------ value parsers
def parse_grad_clip(text: str) -> float | None:
    """``none`` (no clipping, ``None``) or a finite positive gradient-norm bound."""
    if text == "none":
        return None
    try:
        return cli.finite_positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a finite positive number or 'none', got {text!r}") from None


def parse_seed(text: str) -> int:
    """An integer in [0, 2**32): what both ``torch.manual_seed`` and ``numpy.random.seed`` accept."""
    value = cli.non_negative_int(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {text!r}")
    return value


# The kinds of path-valued fields: how the CLI checks them and how command() writes them.
_PATH = "path"  # a file: rendered relative to the repository root when inside it
_SPLIT = "split"  # a shipped split's name, or a split .npz file (rendered like _PATH)


def _setting(
    default: Any,
    help: str,
    *,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    path: str | None = None,
    shared: bool = False,
) -> Any:
    """A :class:`TrainConfig` field: its default and what builds its flag.

    ``help`` may name ``{default}`` and ``{paper}``, filled in from the presets when the parser is built, so
    that the defaults are written once (here); ``parse`` is the ``argparse`` type (a :mod:`dlm_gym.cli`
    validator), also used to check values given in Python; ``choices`` defaults to the field's
    ``Literal`` values; ``path`` marks a path-valued field (:data:`_PATH` or :data:`_SPLIT`); ``shared``
    puts the flag outside the learned-policy group (RL trainers read it too).
    """
    metadata = {"help": help, "parse": parse, "metavar": metavar, "choices": choices, "path": path, "shared": shared}
    return dataclasses.field(default=default, metadata=metadata)


# ------------------------------------------------------------------ config
@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The settings of one training run of a learned policy (nn, nnm, mdr, cvx, dlm).

    Each field is one flag of ``examples/train.py`` (``lr_schedule`` is
    ``--lr-schedule``). ``iterations``/``lr`` drive the supervised stages
    (L_P, L_QP, L_NN), ``sim_iterations``/``sim_lr`` the L_sim stage of dlm
    and nnm; an iteration is one Adam step on the whole split unless
    ``batch_size`` is set.
    """

    policy: str = _setting(
        "dlm",
        "the learned policy to train: " + ", ".join(LEARNED) + " (default: {default})",
        choices=LEARNED,
    )
    iterations: int = _setting(
        1000,
        "full-batch Adam steps of each supervised stage, L_P / L_QP / L_NN (default: {default}; paper: {paper})",
        parse=cli.positive_int,
        metavar="N",
    )
    lr: float = _setting(
        1e-3,
        "learning rate of the supervised stages (default: {default}; paper: {paper})",
        parse=cli.finite_positive_float,
    )
    sim_iterations: int = _setting(
        30,
        "Adam steps of the L_sim stage of dlm and nnm (default: {default}; paper: {paper})",
        parse=cli.positive_int,
        metavar="N",
    )
    sim_lr: float = _setting(
        1e-4,
        "learning rate of the L_sim stage (default: {default}; paper: {paper})",
        parse=cli.finite_positive_float,
    )
    weight_decay: float = _setting(
        0.0,
        "decoupled (AdamW) weight decay of every stage (default: {default}, plain Adam as in the paper)",
        parse=cli.finite_non_negative_float,
    )
    grad_clip: float | None = _setting(
        1.0,
        "clip the global gradient norm (default: {default}; 'none' for the paper's unclipped Adam)",
        parse=parse_grad_clip,
        metavar="NORM|none",
    )
    lr_schedule: Literal["constant", "cosine"] = _setting(
        "constant",
        "learning rate over each stage: constant (the paper's) or cosine decay to 0 (default: {default})",
    )
    latent_dim: int = _setting(
        75,
        "size of the video latent L^V (default: the paper's {default})",
        parse=cli.positive_int,
    )
    lstm_layers: int = _setting(
        5,
        "depth of the bidirectional LSTM (default: the paper's {default})",
        parse=cli.positive_int,
    )
    sim_grad: Literal["fd", "autodiff"] = _setting(
        "fd",
        "gradient of L_sim: central differences through pymunk (fd, the paper's; default) "
        "or the smoothed torch simulator (autodiff)",
    )
    sim_eval_mode: bool = _setting(
        False,
        "run L_sim with dropout off and batch-norm running statistics (default: train mode, as the supervised stages)",
    )
    train_split: str = _setting(
        "train",
        "supervised split: a name, a split .npz, or a training corpus directory (examples/generate_dataset.py "
        "--corpus), streamed in minibatches of --batch-size (default: {default})",
        parse=cli.train_data,
        path=_SPLIT,
    )
    batch_size: int | None = _setting(
        None,
        "tasks per Adam step, drawn at random (default: the whole split, as in the paper)",
        parse=cli.positive_int,
        metavar="N",
    )
    finetune_split: str = _setting(
        "finetune",
        "L_sim split: a name or a split .npz (default: {default})",
        parse=cli.split_name_or_file,
        path=_SPLIT,
    )
    eval_splits: tuple[str, ...] = _setting(
        (),
        "more splits whose executed loss is logged in the learning curve: names or split .npz files "
        "(train and finetune always are)",
        parse=cli.split_name_or_file,
        metavar="SPLIT",
        path=_SPLIT,
    )
    eval_every: int = _setting(
        50,
        "log the executed losses every N iterations of a supervised stage, every N/5 of L_sim, and at "
        "each stage's end (default: {default})",
        parse=cli.positive_int,
        metavar="N",
    )
    init_checkpoint: str | None = _setting(
        None,
        "start from a checkpoint of a prefix policy (mdr for cvx, cvx for dlm, nn for nnm) and skip its stages",
        parse=cli.existing_file,
        metavar="PATH",
        path=_PATH,
    )
    seed: int = _setting(
        0,
        "random seed of the network initialisation, the exploration and the training tasks "
        "(default: {default}; same seed and --threads on the same machine give the same checkpoint)",
        parse=parse_seed,
        shared=True,
    )
    threads: int = _setting(
        1,
        "torch threads used while training (default: {default}); part of what makes a run reproducible",
        parse=cli.positive_int,
        metavar="N",
        shared=True,
    )
    out: str | None = _setting(
        None,
        "checkpoint to write (default: the shipped one, policies/checkpoints/<policy>.zip for RL, "
        "<policy>_paper.pt for learned policies, the paper's 20-task protocol); "
        "the learning curve goes to <stem>_log.csv beside it",
        parse=cli.output_file,
        metavar="PATH",
        path=_PATH,
        shared=True,
    )

    # ------------------------------------------------------------ checks
    def __post_init__(self) -> None:
        """Check every value (numbers with the CLI's own validators) and normalise paths to ``str``."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            checked = _check(f, value)
            if checked is not value:
                object.__setattr__(self, f.name, checked)
        if self.batch_size is None and os.path.isdir(self.train_split):
            raise ValueError(
                f"TrainConfig.batch_size (--batch-size): {self.train_split} is a training corpus, streamed in "
                "minibatches; give a batch size (e.g. 64)"
            )

    # ------------------------------------------------------------ derived
    @property
    def checkpoint_path(self) -> Path:
        """``out``, or the shipped checkpoint ``policies/checkpoints/<policy>_paper.pt`` when ``out`` is None."""
        return Path(self.out) if self.out is not None else CHECKPOINT_DIR / f"{self.policy}{PAPER_SUFFIX}.pt"

    @property
    def log_path(self) -> Path:
        """The learning-curve CSV, ``<checkpoint stem>_log.csv`` beside the checkpoint."""
        path = self.checkpoint_path
        return path.with_name(path.stem + "_log.csv")

    # ------------------------------------------------------------ CLI
    @classmethod
    def add_arguments(
        cls, parser: argparse.ArgumentParser, *, defaults: TrainConfig | None = None, skip: tuple[str, ...] = ()
    ) -> argparse.ArgumentParser:
        """Add one flag per field to ``parser`` (``--lr-schedule`` for ``lr_schedule``); returns ``parser``.

        ``defaults`` (a preset, default :data:`DEFAULT`) gives the flags' defaults and the ``{default}`` of
        their help. Fields in ``skip`` get no flag (``examples/train.py`` defines ``--policy`` itself, to
        offer the RL policies too). Shared settings (seed, threads, out) go on ``parser``, the rest in a group
        :data:`LEARNED_GROUP`.
        """
        defaults = DEFAULT if defaults is None else defaults
        group = parser.add_argument_group(LEARNED_GROUP)
        hints = _hints()
        for f in dataclasses.fields(cls):
            if f.name in skip:
                continue
            meta = f.metadata
            default = getattr(defaults, f.name)
            help_text = meta["help"].format(default=_show(default), paper=_show(getattr(PAPER, f.name)))
            kwargs: dict[str, Any] = {"default": default, "help": help_text}
            if hints[f.name] is bool:
                kwargs["action"] = "store_true"
            else:
                choices = meta["choices"] or _literal_choices(hints[f.name])
                if choices:
                    kwargs["choices"] = list(choices)
                if meta["parse"] is not None:
                    kwargs["type"] = meta["parse"]
                if meta["metavar"] is not None:
                    kwargs["metavar"] = meta["metavar"]
                if isinstance(f.default, tuple):
                    kwargs["nargs"] = "+"
            (parser if meta["shared"] else group).add_argument(_flag(f.name), **kwargs)
        return parser

    @classmethod
    def from_args(cls, namespace: argparse.Namespace) -> TrainConfig:
        """The config of parsed flags (from a parser built by :meth:`add_arguments`); other attributes are ignored."""
        names = [f.name for f in dataclasses.fields(cls) if hasattr(namespace, f.name)]
        return cls(**{name: getattr(namespace, name) for name in names})

    def command(self) -> str:
        """The ``examples/train.py`` command line that rebuilds this run's checkpoint.

        Every setting is written out (not only those off the defaults), so the command keeps rebuilding the
        same checkpoint when a default changes; paths inside the repository are written relative to its root,
        as the README writes them. A ``None`` (or ``False``, or empty) setting is left out: the flag's absence
        means it, except ``--grad-clip none``. Parsing the command's flags gives this config back.
        """
        args = ["python", "examples/train.py"]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            flag = _flag(f.name)
            if value is None:
                if f.metadata["parse"] is parse_grad_clip:
                    args += [flag, "none"]
            elif isinstance(value, bool):
                if value:
                    args.append(flag)
            elif isinstance(value, tuple):
                if value:
                    args += [flag, *(_render_path(v, f.metadata["path"]) for v in value)]
            elif f.metadata["path"] is not None:
                args += [flag, _render_path(value, f.metadata["path"])]
            elif isinstance(value, float):
                args += [flag, repr(value)]
            else:
                args += [flag, str(value)]
        return shlex.join(args)

    # ------------------------------------------------------------ records
    def to_dict(self) -> dict[str, Any]:
        """Plain values (str, int, float, bool, None, lists) for ``torch.save(..., weights_only`` loading."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """The config of :meth:`to_dict`'s record; settings it lacks (added since it was written) take defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig settings {unknown}; known: {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_checkpoint(cls, payload: Mapping[str, Any]) -> TrainConfig | None:
        """The config a checkpoint was trained with (``load_checkpoint``'s metadata), or None if it records none.

        Checkpoints written before :class:`TrainConfig` (the shipped ``*_paper.pt``) record their schedule under
        ``extra["schedule"]`` and a few more keys; those are read back as well.
        """
        extra = payload.get("extra") or {}
        if "train_config" in extra:
            return cls.from_dict(extra["train_config"])
        schedule = extra.get("schedule")
        if not isinstance(schedule, Mapping) or payload.get("policy") not in LEARNED:
            return None
        values = {k: v for k, v in schedule.items() if k in {f.name for f in dataclasses.fields(cls)}}
        values["grad_clip"] = schedule.get("grad_clip")  # left out of the record when None
        values["lr_schedule"] = "cosine" if schedule.get("cosine") else "constant"
        for key in ("sim_grad", "seed", "train_split", "finetune_split", "init_checkpoint"):
            if key in extra:
                values[key] = extra[key]
        values["sim_eval_mode"] = bool(extra.get("sim_deterministic", False))
        values["batch_size"] = extra.get("batch_size") or None  # 0 stood for the whole split
        values["threads"] = 1  # the CLI's default, the only way those checkpoints were made
        return cls(policy=payload["policy"], **values)


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _literal_choices(hint: Any) -> tuple[str, ...] | None:
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


def _show(value: Any) -> str:
    """A default as the help writes it: 1e-3, 1.0, 0, none."""
    if value is None:
        return "none"
    if isinstance(value, float) and not isinstance(value, bool):
        if value == 0:
            return "0"
        if abs(value) < 1e-2:
            mantissa, exponent = f"{value:e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return repr(value)
    return str(value)


def _render_path(value: str, kind: str | None) -> str:
    """A path inside the repository relative to its root, as the README writes it; names and other paths as given."""
    if kind == _SPLIT and not (value.endswith(".npz") or os.sep in value):
        return value  # a shipped split's name
    resolved = Path(value).resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else value


def _problem(f: dataclasses.Field, message: str) -> ValueError:
    return ValueError(f"TrainConfig.{f.name} ({_flag(f.name)}): {message}")


def _check(f: dataclasses.Field, value: Any) -> Any:
    """``value`` checked for field ``f`` (ValueError naming the field, its flag and the fix), paths as ``str``."""
    meta = f.metadata
    hint = _hints()[f.name]
    if hint is bool:
        if not isinstance(value, bool):
            raise _problem(f, f"expected True or False, got {value!r}")
        return value
    choices = meta["choices"] or _literal_choices(hint)
    if choices is not None:
        if value not in choices:
            raise _problem(f, f"expected one of {', '.join(choices)}, got {value!r}")
        return value
    if value is None:
        if f.default is None or meta["parse"] is parse_grad_clip:
            return None
        raise _problem(f, f"cannot be None (default: {_show(f.default)})")
    if isinstance(f.default, tuple):
        if isinstance(value, (str, os.PathLike)) or not isinstance(value, (tuple, list)):
            raise _problem(f, f"expected a tuple of split names or .npz paths, e.g. ('family',), got {value!r}")
        return tuple(_check_path(f, v) for v in value)
    if meta["path"] is not None:
        return _check_path(f, value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _problem(f, f"expected a number, got {value!r}")
    try:  # the CLI's own validator, on the value as the command line would spell it
        return meta["parse"](repr(float(value)) if isinstance(value, float) else str(value))
    except argparse.ArgumentTypeError as exc:
        raise _problem(f, str(exc)) from None


def _check_path(f: dataclasses.Field, value: Any) -> str:
    """A non-empty path or split name, as ``str`` (whether the file exists is checked when it is read)."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise _problem(
            f, f"expected a file path{' or a split name' if f.metadata['path'] == _SPLIT else ''}, got {value!r}"
        )
    return os.fspath(value)


DEFAULT = TrainConfig()
"""The defaults, chosen on validation tasks drawn from fresh seeds (>= 900000), never on test or family.

On this CPU (2 cores) the paper's schedule leaves the networks far from fitted
(100 steps at 1e-4: executed losses 70-1700 cm^2 on validation, worse than
doing nothing, ~50). 1000 full-batch steps at 1e-3 with the global gradient
norm clipped to 1 fit the train split (cvx: 0.5 cm^2) in about a minute per
supervised stage, the paper's architecture unchanged. With only the paper's
20 training tasks the networks generalise poorly whatever the regulariser
(weight decay 0.1, a smaller encoder, cosine decay all land at 35-50 cm^2 on
validation); L_sim (30 finite-difference steps at 1e-4 on the finetune split)
is what helps DLM most. Training on more oracle-labelled tasks (e.g. 400 from
fresh seeds with ``train_split=<npz>`` and ``batch_size=50``) is the lever
that moves validation losses well below the do-nothing baseline.
"""

PAPER = dataclasses.replace(DEFAULT, iterations=100, lr=1e-4, sim_iterations=100, sim_lr=1e-4, grad_clip=None)
"""Section 5 verbatim: plain Adam (no clipping, no weight decay, constant rate), lr 1e-4, 100 full-batch
iterations per stage, the paper's network sizes (latent 75, 5-layer bidirectional LSTM). On the command line:
``--iterations 100 --lr 1e-4 --sim-iterations 100 --sim-lr 1e-4 --grad-clip none``."""
