"""sha256 of a file's bytes, read in blocks (plugins and installed files can be large)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from dotagent.boundedread import open_regular

__all__ = ["sha256_file"]


def sha256_file(path: Path) -> str:
    """Raises OSError (NotRegularFile for a FIFO or a device, without blocking)."""
    digest = hashlib.sha256()
    with open_regular(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
