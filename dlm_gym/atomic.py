"""Writing files so that an interrupted run never leaves half a file behind.

Every file the project writes for keeps (splits, checkpoints, results, the
README's tables) goes through :func:`atomic_write`: the content goes to a
hidden temporary file beside the target, is flushed to disk, and only then
renamed over the target, which POSIX makes atomic. A crash or Ctrl-C leaves
the old file intact.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(path: Path | str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``, on error it goes.

    Example::

        with atomic_write("results.json", "w") as handle:
            json.dump(results, handle)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
