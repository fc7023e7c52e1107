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

__all__ = ["DaemonLock", "SecondDaemon", "poke_daemon", "running_daemon"]


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


def poke_daemon(home: Home) -> tuple[int, str] | None:
    """Tell the daemon serving `home`, if one runs, that the pauses or the window files
    changed, so it re-reads them now. SIGUSR1 when the daemon is seen to catch it (Linux:
    `SigCgt` in /proc/PID/status) — a daemon of an older dotagent would die of it — else
    SIGHUP, which every daemon handles (a reload: it also re-reads config.toml). Returns
    (pid, signal name), or None when no daemon could be told (none runs; its pid file is
    missing; the signal failed): it then sees a pause at its next step, and window files at
    its next rescan."""
    import signal

    pid = running_daemon(home)
    if not pid:
        return None
    sig = signal.SIGUSR1 if _catches(pid, signal.SIGUSR1) else signal.SIGHUP
    try:
        os.kill(pid, sig)
    except OSError:
        return None
    return pid, sig.name


def _catches(pid: int, sig: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False
