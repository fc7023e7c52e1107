"""Cross-process exclusive locks on sibling `.lock` files that are never deleted.

Deleting a lock file after use is how two writers end up holding "exclusive" locks on two
different inodes (upstream's bug); these files therefore stay.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dotagent.private import open_private, private_mkdir

__all__ = ["locked"]


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
