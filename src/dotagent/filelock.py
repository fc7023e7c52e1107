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

__all__ = ["locked"]


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
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
