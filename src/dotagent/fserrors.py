"""OS errors as messages that name the operation and the real target (issue 7, item 14).

A raw `OSError` knows only the name the failing system call saw: a temporary file's name for
an atomic replace, a parent directory for `mkdir`. The I/O helpers (atomic writes, locks,
per-agent logs) translate it at their own level, where both the operation and the file the
user cares about are known, into a `StateError` the CLI shows as one line.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dotagent.errors import LinkRefusedError, StateError, SymlinkRefused

__all__ = ["reason", "reporting", "state_error"]


def reason(exc: OSError) -> str:
    """`strerror`, or the whole exception when the OS gave none."""
    return exc.strerror or str(exc)


def state_error(operation: str, path: Path | str, exc: OSError) -> StateError:
    """`cannot <operation> <path>: <reason>`; a failing parent directory is named as such."""
    if isinstance(exc, SymlinkRefused):
        return LinkRefusedError(f"cannot {operation} {path}: {reason(exc)}")
    culprit = exc.filename
    if isinstance(culprit, str | Path) and Path(culprit) in Path(path).parents:
        why = reason(exc)
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):
            blocker = _not_a_directory(Path(culprit))
            if blocker is not None:
                why = ("it exists and is not a directory" if blocker == Path(culprit)
                       else f"{blocker} is not a directory")
        return StateError(f"cannot create directory {culprit} (to {operation} {path}): {why}")
    return StateError(f"cannot {operation} {path}: {reason(exc)}")


def _not_a_directory(directory: Path) -> Path | None:
    """The first of `directory` and its ancestors that exists but is not a directory."""
    for candidate in (*reversed(directory.parents), directory):
        try:
            if candidate.exists() and not candidate.is_dir():
                return candidate
        except OSError:
            return None
    return None


@contextmanager
def reporting(operation: str, path: Path | str) -> Iterator[None]:
    """Turn an OSError raised in the block into `state_error(operation, path, ...)`."""
    try:
        yield
    except OSError as exc:
        raise state_error(operation, path, exc) from exc
