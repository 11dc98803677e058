"""Argument types and a parser for the example scripts: a user error is one line on stderr and exit code 2.

Scripts check their paths and numbers while parsing, before any work starts, so
that a typo fails in a second instead of after a long run, and never with a
traceback::

    from dlm_gym import cli

    p = cli.ArgumentParser(description=__doc__)
    p.add_argument("--json", type=cli.output_file)
    p.add_argument("--lr", type=cli.finite_positive_float)
    args = p.parse_args()
    try:
        run(args)
    except cli.USER_ERRORS as exc:     # damaged split files, bad tasks ...
        return cli.fail(exc)

Each ``type=`` callable returns the parsed value or raises
:class:`argparse.ArgumentTypeError` with a message that says what to pass instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path
from typing import NoReturn

from dlm_gym.datasets import DatasetError, available_splits
from dlm_gym.geometry import InvalidPolygonError

__all__ = [
    "ArgumentParser",
    "USER_ERRORS",
    "fail",
    "positive_int",
    "non_negative_int",
    "finite_float",
    "finite_positive_float",
    "finite_non_negative_float",
    "existing_file",
    "existing_dir",
    "output_file",
    "output_dir",
    "split_name_or_file",
    "dataclass_parser",
]

USER_ERRORS: tuple[type[Exception], ...] = (DatasetError, InvalidPolygonError)
"""Errors of dlm_gym that mean "your input is bad", not "dlm_gym is broken"; scripts add their own
(``policies.CheckpointError``) and report these in one line with :func:`fail`."""


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors are one line, ``error: ...``, and exit code 2.

    The stock parser prints the whole usage block first; in a log of many runs
    that buries the one line that says what was wrong.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {_one_line(message)} (see {self.prog} --help)\n")


def fail(error: BaseException | str) -> int:
    """Print ``error: <message>`` on one line to stderr and return 2, the exit code of a usage error."""
    print(f"error: {_one_line(str(error))}", file=sys.stderr)
    return 2


def _one_line(message: str) -> str:
    return " ".join(message.split())


# ------------------------------------------------------------------ numbers
def _number(text: str, parse, what: str):
    try:
        return parse(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (counts: iterations, workers, episodes)."""
    value = _number(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (counts where 0 means "none")."""
    value = _number(text, int, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Any finite number: ``float()`` alone accepts ``nan`` and ``inf``, which poison a run silently."""
    value = _number(text, float, "a finite number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def finite_positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, time limits)."""
    value = _number(text, float, "a finite positive number")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return value


def finite_non_negative_float(text: str) -> float:
    """A finite number >= 0 (weight decay, where 0 means "off")."""
    value = _number(text, float, "a finite number >= 0")
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


# ------------------------------------------------------------------ paths
def _nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its closest existing ancestor (what ``mkdir -p`` would build on)."""
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                return candidate
        except (OSError, ValueError):  # a name the OS refuses (too long, NUL byte)
            raise argparse.ArgumentTypeError(f"{path} is not a usable path") from None
    return Path.cwd()


def _check_creatable(path: Path, text: str) -> None:
    """Raise unless the folders above ``path`` exist as folders or can be made, and are writable."""
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {base} is a file, so no folder can be made under it")
    if not os.access(base, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: {base} is not writable")


def existing_file(text: str) -> Path:
    """A path to a file that exists (inputs such as checkpoints)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no file {text}")
    return path


def train_data(text: str) -> str:
    """A split (as :func:`split_name_or_file`) or a training corpus directory (with a ``manifest.json``)."""
    if os.path.isdir(text):
        if not os.path.isfile(os.path.join(text, "manifest.json")):
            raise argparse.ArgumentTypeError(
                f"{text} is a directory without manifest.json, not a training corpus; make one with "
                "`python examples/generate_dataset.py --corpus DIR --size N`"
            )
        return text
    return split_name_or_file(text)


def existing_dir(text: str) -> Path:
    """A path to a directory that exists (inputs such as a checkpoint folder)."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a directory" if path.exists() else f"no directory {text}")
    return path


def output_file(text: str) -> Path:
    """A file to write: not a directory, and not under a regular file; its folders are made when it is written."""
    path = Path(text)
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text or repr(text)} is a directory; give a file name")
    _check_creatable(path, text)
    return path


def output_dir(text: str) -> Path:
    """A directory to write into: an existing directory, or one that can be made (not a file, not under one)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a directory")
    if not path.exists():
        _check_creatable(path, text)
    elif not os.access(path, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text} is not writable")
    return path


def split_name_or_file(text: str) -> str:
    """A shipped split's name (``train``) or an existing split file (``/tmp/x.npz``); its content is checked on load."""
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(
            f"{text} is a directory; give a split name or a .npz file (a training corpus is --train-split only)"
        )
    if text.endswith(".npz") or os.sep in text:
        existing_file(text)
        return text
    have = available_splits()
    if text not in have:
        raise argparse.ArgumentTypeError(
            f"no split named {text!r} (shipped: {', '.join(have) or 'none'}); give a name or a .npz file"
        )
    return text


def dataclass_parser(config_class: type, description: str | None = None) -> ArgumentParser:
    """The command line of a config dataclass (CleanRL style): one flag per field, the dataclass is the run record.

    ``--train-seconds`` sets ``train_seconds``; a field's ``metadata`` holds its ``help`` and any
    ``add_argument`` keywords (``type=``, ``choices=``); booleans get ``--x/--no-x``; the default is shown.
    """
    p = ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(config_class):
        flag = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f"{meta.pop('help')} (default: {shown})"
        if f.type in (bool, "bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            p.add_argument(flag, default=default, help=help_text, **meta)
    return p
