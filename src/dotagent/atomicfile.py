"""The one way state files are written: temp file in the same directory, fsync, rename.

A reader therefore sees either the old file or the new one, never a half-written one, even
if the machine loses power between the two.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from dotagent.fserrors import reporting
from dotagent.private import FILE_MODE, LOOSE_BITS, private_mkdir, refuse_links

__all__ = ["dump_json", "write_atomic", "write_json_atomic"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _naming_target(
    func: Callable[Concatenate[Path, _P], _R],
) -> Callable[Concatenate[Path, _P], _R]:
    """An OSError anywhere in the write names the file being written, never the temp file."""

    @functools.wraps(func)
    def wrapper(path: Path, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with reporting("write", path):
            return func(path, *args, **kwargs)

    return wrapper


@_naming_target
def write_atomic(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace `path` with `data` atomically (parent directory is created 0700 if missing).

    The new file is private: group and other bits of `mode` are never set, whatever the
    umask, so replacing a file never loosens it. A symlink in its place (or on the way, below
    the home's root) is refused, not replaced or followed.
    """
    refuse_links(path)
    private_mkdir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode & ~LOOSE_BITS)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def dump_json(value: Any) -> str:
    """Upstream's on-disk JSON style: 2-space indent, non-ASCII kept, no trailing newline."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def write_json_atomic(path: Path, value: Any) -> None:
    # A path from a directory whose name is not UTF-8 holds lone surrogates; written as JSON
    # escapes (\udcff) they stay valid JSON and read back to the same string.
    write_atomic(path, dump_json(value).encode("utf-8", errors="backslashreplace"))
