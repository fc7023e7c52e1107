"""One daemon per home: `state/daemon.lock` (flock, held for the daemon's lifetime, never
deleted) and `state/daemon.pid` (upstream's shape: the decimal pid, no newline).

Whether a daemon runs is answered by the lock, not by the pid file: a pid file left by a
`kill -9` names a pid that may since belong to someone else, and nobody holds the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from dotagent.atomicfile import write_atomic
from dotagent.boundedread import read_bounded
from dotagent.errors import DotagentError, StateError
from dotagent.paths import Home
from dotagent.private import open_private, private_mkdir

__all__ = ["DaemonLock", "SecondDaemon", "running_daemon"]


class SecondDaemon(DotagentError):
    """Another daemon already serves this home (exit 1)."""

    sysexit = 1


def _paths(home: Home) -> tuple[Path, Path]:
    return home.state_dir / "daemon.lock", home.state_dir / "daemon.pid"


def _read_pid(path: Path) -> int | None:
    try:
        text = read_bounded(path, 64).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and 0 < int(text) < 2**31 else None


class DaemonLock:
    """Held by the running daemon. `acquire` raises SecondDaemon naming the holder's pid."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.lock_path, self.pid_path = _paths(home)
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            private_mkdir(self.lock_path.parent)
            fd = open_private(self.lock_path, os.O_RDWR)
        except OSError as exc:
            raise StateError(f"cannot open the daemon lock {self.lock_path}: "
                             f"{exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = _read_pid(self.pid_path)
            who = f" (pid {pid})" if pid else ""
            raise SecondDaemon(f"a dotagent daemon is already running for {self.home.root}"
                               f"{who}; stop it first, or use `dotagent reload` to make it "
                               "re-read its manifests") from None
        self._fd = fd
        try:
            write_atomic(self.pid_path, str(os.getpid()).encode("ascii"))
        except DotagentError:
            self.release()
            raise

    def release(self) -> None:
        """Remove the pid file (only if it is still ours), then let go of the lock."""
        if self._fd is None:
            return
        if _read_pid(self.pid_path) == os.getpid():
            with contextlib.suppress(OSError):
                self.pid_path.unlink()
        os.close(self._fd)
        self._fd = None


def running_daemon(home: Home) -> int | None:
    """The pid of the daemon serving `home`, or None when none runs."""
    lock_path, pid_path = _paths(home)
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(pid_path) or 0
        return None  # nobody holds it: whatever daemon.pid says is stale
    finally:
        os.close(fd)
