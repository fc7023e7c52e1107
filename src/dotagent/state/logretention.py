"""The daily retention sweep of `logs/` (SPEC S7 "Retention", S14.10).

For `logs/daemon/` (with `[logging] retention_days`) and each `logs/agents/<name>/` (with
`per_agent_retention_days`), every regular file is looked at once:

- its age is whole days since its last modification, `floor((now - mtime) / 1 day)`;
- older than the retention (age above it; a retention of 0 keeps everything) ⇒ deleted;
- otherwise, when it is not active, not `.gz` already, and older than
  `compress_after_days` ⇒ gzipped to `<file>.gz`.

A file is **active** by upstream's rule: its name has no `.` or ends in `.log` (an agent's
`<name>.log`, the service manager's `run.*.log`). The daemon's file of the current UTC date
is never compressed either, whatever its age. Rotated agent-log segments
(`<name>.log.<stamp>Z`, see `dotagent.state.agentlog`) and past daemon days
(`dotagent.log.<date>`) are what gets compressed.

Compression streams (memory stays flat for any size) into `<file>.gz.tmp`, fsyncs it, gives
it the original's modification time (so a compressed file is deleted at the same age as the
original would have been), renames it to `<file>.gz`, fsyncs the directory, and only then
removes the original. A crash leaves either the original or a complete `.gz` (or both: the
next sweep replaces the `.gz`); a `.gz.tmp` more than an hour old is a crashed sweep's and is
removed. A file that changes while it is being compressed is left for the next sweep.

Nothing here reads the clock (`now` is given); symlinks are never followed, and nothing but
regular files directly in those directories is touched.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dotagent.paths import Home
from dotagent.private import open_private
from dotagent.state.agentlog import is_active_name

if TYPE_CHECKING:
    from dotagent.config import LoggingSection

__all__ = ["DAEMON_LOG_PREFIX", "LogSweep", "sweep_logs"]

DAEMON_LOG_PREFIX = "dotagent.log."
DAY = 86400
TMP_SUFFIX = ".gz.tmp"
STALE_TMP_SECONDS = 3600
CHUNK = 1024 * 1024


@dataclass
class LogSweep:
    """What one sweep did. `errors` lists files it could not delete or compress, with the
    reason; they stay as they were."""

    compressed: int = 0
    deleted: int = 0
    scanned: int = 0
    errors: list[tuple[Path, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """The fields of the daemon's `log retention sweep completed` line."""
        return {"compressed": self.compressed, "deleted": self.deleted,
                "scanned": self.scanned}


def sweep_logs(home: Home, now: datetime, config: LoggingSection) -> LogSweep:
    """Delete and compress old files under `home`'s `logs/` as the module docstring says.

    `now` must be timezone-aware (ValueError otherwise). Never raises for a file or a
    directory it cannot read, delete or compress: each is listed in `errors` and the sweep
    goes on. Missing directories are simply empty.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("sweep_logs: `now` must be timezone-aware")
    report = LogSweep()
    logs = home.root / "logs"
    today = DAEMON_LOG_PREFIX + now.astimezone(UTC).strftime("%Y-%m-%d")
    _sweep_dir(logs / "daemon", now.timestamp(), config.retention_days,
               config.compress_after_days, report, keep_plain={today})
    agents = logs / "agents"
    try:
        entries = sorted(os.scandir(agents), key=lambda e: e.name)
    except FileNotFoundError:
        entries = []
    except OSError as exc:
        report.errors.append((agents, _reason(exc)))
        entries = []
    for entry in entries:
        with contextlib.suppress(OSError):
            if not entry.is_dir(follow_symlinks=False):
                continue
            _sweep_dir(Path(entry.path), now.timestamp(), config.per_agent_retention_days,
                       config.compress_after_days, report)
    return report


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _sweep_dir(directory: Path, now: float, retention_days: int, compress_after_days: int,
               report: LogSweep, keep_plain: frozenset[str] | set[str] = frozenset()) -> None:
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    except OSError as exc:
        report.errors.append((directory, _reason(exc)))
        return
    # Temporary files first: a crashed sweep's `X.gz.tmp` must not block compressing X now.
    for name in sorted(names, key=lambda n: not n.endswith(TMP_SUFFIX)):
        path = directory / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            report.errors.append((path, _reason(exc)))
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if name.endswith(TMP_SUFFIX):
            if now - st.st_mtime > STALE_TMP_SECONDS:  # a crashed sweep's
                with contextlib.suppress(OSError):
                    path.unlink()
            continue
        report.scanned += 1
        age = int((now - st.st_mtime) // DAY)
        if retention_days > 0 and age > retention_days:
            try:
                path.unlink()
                report.deleted += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                report.errors.append((path, _reason(exc)))
            continue
        if (age > compress_after_days and not name.endswith(".gz")
                and not is_active_name(name) and name not in keep_plain):
            try:
                if _compress(path, st):
                    report.compressed += 1
            except OSError as exc:
                report.errors.append((path, f"cannot compress: {_reason(exc)}"))


def _compress(path: Path, st: os.stat_result) -> bool:
    """Gzip `path` to `path.gz` safely (see the module docstring). False when it was left
    alone: it changed or vanished meanwhile, or another sweep is compressing it. Raises
    OSError, after removing its temporary file, when compression fails (a full disk)."""
    try:
        src = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    with os.fdopen(src, "rb") as source:
        if not _unchanged(st, os.fstat(source.fileno())):
            return False
        tmp = path.with_name(path.name + TMP_SUFFIX)
        try:
            out = open_private(tmp, os.O_WRONLY | os.O_EXCL)
        except FileExistsError:
            return False  # another sweep is at it (a stale one is removed by the next pass)
        try:
            with os.fdopen(out, "wb") as raw:
                with gzip.GzipFile(filename=path.name, mode="wb", fileobj=raw,
                                   mtime=int(st.st_mtime)) as gz:
                    while chunk := source.read(CHUNK):
                        gz.write(chunk)
                raw.flush()
                os.fsync(raw.fileno())
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            # Last check, just before the swap: still the same, unmodified file under that
            # name (an agent-log rotation may have pruned it meanwhile).
            try:
                still = _unchanged(st, os.lstat(path))
            except FileNotFoundError:
                still = False
            if not still:
                tmp.unlink()
                return False
            os.rename(tmp, path.with_name(path.name + ".gz"))
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    _fsync_dir(path.parent)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return True


def _unchanged(before: os.stat_result, after: os.stat_result) -> bool:
    return ((before.st_ino, before.st_dev, before.st_size, before.st_mtime_ns)
            == (after.st_ino, after.st_dev, after.st_size, after.st_mtime_ns))


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
