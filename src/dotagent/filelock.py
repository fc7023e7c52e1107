"""Cross-process exclusive locks on sibling `.lock` files that are never deleted.

Deleting a lock file after use is how two writers end up holding "exclusive" locks on two
different inodes (upstream's bug); these files therefore stay.
"""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

from dotagent.fserrors import reporting
from dotagent.private import open_private, private_mkdir

__all__ = ["locked", "locked_deletable"]


def _naming_lock(
    factory: Callable[[Path], AbstractContextManager[None]],
) -> Callable[[Path], AbstractContextManager[None]]:
    """An OSError while taking the lock names the lock file and says so; errors of the
    block that holds the lock pass through untouched."""

    @functools.wraps(factory)
    @contextmanager
    def wrapper(lock_path: Path) -> Iterator[None]:
        with ExitStack() as stack:
            with reporting("lock", lock_path):
                stack.enter_context(factory(lock_path))
            yield

    return wrapper


@_naming_lock
@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (created if missing) for the block."""
    private_mkdir(lock_path.parent)
    fd = open_private(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def locked_deletable(lock_path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Like `locked`, for lock files that a sweeper may delete (window files, UPSTREAM-0.6 §8).

    Yields True while the lock is held. With `wait=False` it yields False at once when
    another process holds the lock (the sweeper skips such files). A holder deletes the lock
    file only while holding it; whoever was waiting on the deleted inode notices that the
    path no longer names what it locked and starts over, so two holders never lock
    different inodes. The file is created 0600; its directory must exist.
    """
    flags = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
    while True:
        fd = open_private(lock_path, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, flags)
            except BlockingIOError:
                yield False
                return
            try:
                current = os.stat(lock_path)
            except FileNotFoundError:
                current = None
            held = os.fstat(fd)
            if current is not None and (current.st_ino, current.st_dev) == (
                    held.st_ino, held.st_dev):
                yield True
                return
        finally:
            os.close(fd)
