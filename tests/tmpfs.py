"""A small tmpfs for "the disk is full" tests (the tests run as root; mounting is real)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

__all__ = ["fill", "small_tmpfs"]


@contextlib.contextmanager
def small_tmpfs(where: Path, size_kib: int = 1024) -> Iterator[Path]:
    """Mount a tmpfs of `size_kib` KiB at `where` (created) for the block."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs",
                    str(where)], check=True, capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def fill(directory: Path) -> Path:
    """Write a filler file until the file system is full; return its path."""
    filler = directory / "filler"
    chunk = b"\0" * 4096
    fd = filler.open("wb", buffering=0)
    try:
        while True:
            fd.write(chunk)
    except OSError:
        pass
    finally:
        fd.close()
    return filler
