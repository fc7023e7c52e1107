"""The one way dotagent reads a file it did not just write: bounded, non-blocking, regular
files only.

A FIFO in place of a state file (or a manifest) would block `open` or `read` forever, a link
to /dev/zero would never end, and a directory cannot be read at all. Every state-file read
(heartbeats, the plugin and manifest registries, the self-hash files, window and supervisor
files) and every manifest or config read goes through `read_bounded` or `open_regular`:
such a file is an OSError naming what it is, which each caller treats as its own semantics
say (unreadable, or absent), never a hang.

A leaf module: it imports nothing of dotagent's but the error types.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from dotagent.errors import SymlinkRefused

__all__ = ["MAX_BYTES", "NotRegularFile", "TooLarge", "open_regular", "read_bounded"]

MAX_BYTES = 1 << 20  # 1 MiB: far more than any manifest or state file dotagent writes


class NotRegularFile(OSError):
    """The path names a FIFO, a device, a directory or a socket."""

    def __init__(self, path: Path | str, mode: int) -> None:
        super().__init__(errno.EINVAL, "not a regular file", str(path))
        self.kind = file_kind(mode)


class TooLarge(OSError):
    def __init__(self, path: Path | str, limit: int) -> None:
        mib = 1 << 20
        shown = (f"{limit // mib} MiB" if limit > mib and limit % mib == 0
                 else f"{limit // 1024} KiB")
        super().__init__(errno.EFBIG, f"larger than {shown}", str(path))
        self.limit = limit


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages (`… is a named pipe`)."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _open(path: Path | str, follow_links: bool) -> int:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    if not follow_links:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_links:
            raise SymlinkRefused(path) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bounded(path: Path | str, limit: int = MAX_BYTES, *,
                 follow_links: bool = True) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them.

    Raises FileNotFoundError when it is missing, NotRegularFile for anything but a regular
    file (without blocking on a FIFO), TooLarge past `limit`, SymlinkRefused for a symlink
    when `follow_links` is false (dotagent's own state files), any other OSError as is.
    """
    fd = _open(path, follow_links)
    try:
        chunks: list[bytes] = []
        total = 0
        while block := os.read(fd, 1 << 16):
            chunks.append(block)
            total += len(block)
            if total > limit:
                raise TooLarge(path, limit)
        return b"".join(chunks)
    finally:
        os.close(fd)


def open_regular(path: Path | str, *, follow_links: bool = True) -> BinaryIO:
    """`path` opened for reading in binary, for files too large to read at once (the audit
    log). The same refusals as `read_bounded`, without a size limit."""
    return os.fdopen(_open(path, follow_links), "rb")
