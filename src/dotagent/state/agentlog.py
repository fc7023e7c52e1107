"""The per-agent log file and its rotation by size (SPEC S7, S14.10).

`logs/agents/<name>/<name>.log` is the **active** file: every run appends to it, and it keeps
that name forever (readers, `tail -F` and upstream's tools open it by name). When the next
write would take it past `max_bytes`, it is renamed to a **segment**

    <name>.log.<YYYYMMDD>T<HHMMSS>.<ffffff>Z        e.g. report.log.20260519T143000.123456Z

stamped with the UTC time of its last write (its mtime), and a new active file is started.
Segments are never renamed again, except that the retention sweep gzips an old one to
`<segment>.gz` (`dotagent.state.logretention`); at most `keep` segments, `.gz` or not, are
kept, the oldest going first. The names fit upstream's retention rule (a file is active when
its name has no `.` or ends in `.log`): the active file is never compressed, segments are.
Stamps sort in time order, and a new stamp is always later than every existing one (a clock
set back does not make a new segment look older than an old one).

Rotation happens only between writes, and every write is whole lines, so no line is ever
split across files. Several processes (the daemon, a CLI run) may append to one log at once:
each flush is one `write(2)` of whole lines to an `O_APPEND` descriptor, done under an
exclusive `flock` on the active file together with the size check and, when needed, the
rotation. Lines of two writers interleave but are never torn, lost or doubled; a writer first
checks that the name still refers to the file it holds, so two writers that fill the file at
the same moment rotate it once, and a writer whose file was rotated by another continues in
the new active file. The lock is the log file itself: no lock file for a sweep to delete.

Nothing here reads the clock. Files and directories are created private (0600/0700).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dotagent.private import open_private, private_mkdir

__all__ = [
    "BUFFER_BYTES",
    "DEFAULT_KEEP",
    "DEFAULT_MAX_BYTES",
    "AgentLogWriter",
    "RotationError",
    "Segment",
    "Span",
    "is_active_name",
    "segment_name",
    "segments",
]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_KEEP = 5
# Whole lines are gathered up to this size before one write(2); `flush` writes sooner.
BUFFER_BYTES = 64 * 1024

_STAMP = re.compile(r"(\d{8}T\d{6})\.(\d{6})Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RotationError(OSError):
    """The active log could not be renamed to a segment (or its successor not created).

    An OSError, so callers that treat any write failure alike may; `strerror` says what
    failed ("cannot rename it to …: Permission denied"), for a message that begins
    "cannot rotate the log PATH: "."""


def is_active_name(name: str) -> bool:
    """Upstream's retention rule (SPEC S7): a file whose name has no `.` or ends in `.log` is
    being written to; the sweep never compresses it."""
    return "." not in name or name.endswith(".log")


def _stamp(us: int) -> str:
    moment = _EPOCH + timedelta(microseconds=us)  # arithmetic, not gmtime(): no leap seconds
    return f"{moment:%Y%m%dT%H%M%S}.{us % 1_000_000:06d}Z"


def _parse_stamp(text: str) -> int | None:
    m = _STAMP.fullmatch(text)
    if m is None:
        return None
    try:
        moment = datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + int(m.group(2))


def segment_name(active: str, stamp_us: int) -> str:
    """The name of a segment of the active file `active`, stamped `stamp_us` (µs since the
    epoch, UTC)."""
    return f"{active}.{_stamp(stamp_us)}"


@dataclass(frozen=True, order=True)
class Segment:
    """A rotated-out part of an agent's log; `stamp_us` is the time of its last line."""

    stamp_us: int
    path: Path

    @property
    def compressed(self) -> bool:
        return self.path.name.endswith(".gz")


@dataclass(frozen=True)
class Span:
    """Bytes `start`..`end` of the file `name` (in the log's directory) hold lines this
    writer wrote. A span in a file that this writer saw rotated carries the segment's name;
    one recorded as the active `<name>.log` is, after a later rotation, in the oldest segment
    stamped at or after the time of its last line (docs/logs.md)."""

    name: str
    start: int
    end: int


def _segments_in(names: Iterable[str], active: Path) -> list[Segment]:
    prefix = active.name + "."
    found: dict[int, Segment] = {}
    for name in names:
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        gz = rest.endswith(".gz")
        stamp = _parse_stamp(rest[:-3] if gz else rest)
        if stamp is None:
            continue
        # Both `X` and `X.gz` exist only for a moment during compression: count it once.
        if stamp not in found or not gz:
            found[stamp] = Segment(stamp, active.with_name(name))
    return sorted(found.values())


def segments(active: Path) -> list[Segment]:
    """The segments of the active log file `active`, oldest first (none when its directory
    does not exist). Other files in the directory are not segments."""
    try:
        names = os.listdir(active.parent)
    except FileNotFoundError:
        return []
    return _segments_in(names, active)


def _lock(fd: int) -> bool:
    """An exclusive flock on `fd`; False (and no lock) on a file system that has none, where
    a log still works, only without the guarantees for concurrent writers."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return False
        raise
    return True


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


class AgentLogWriter:
    """Appends whole lines to an agent's active log file, rotating it by size.

    `write` takes bytes that end at a line boundary (one or more complete lines) and buffers
    them; `flush` writes the buffer with one `write(2)` after rotating, when needed, so that
    the file stays within `max_bytes` (a single flush larger than `max_bytes` goes whole into
    a fresh file). `keep` is how many segments survive a rotation (0: none).

    Raises OSError from the constructor (the file cannot be opened), from `write` and `flush`
    (the disk is full, the file too large), and RotationError when the rotation itself fails;
    after an error the writer may be closed but should not be written to again. Never splits
    a line across files, never deletes the active file, never touches files that are not its
    own segments.
    """

    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 keep: int = DEFAULT_KEEP) -> None:
        if max_bytes < 1 or keep < 0:
            raise ValueError("max_bytes must be positive and keep not negative")
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self.rotations = 0  # rotations this writer performed
        self._buffer = bytearray()
        self._wrote = False  # whether this writer has written a line (a run is under way)
        self._note: bytes | None = None
        self._spans: list[Span] = []
        self._span_file: tuple[int, int] | None = None  # (dev, ino) of the last span's file
        private_mkdir(path.parent)
        self._fd: int | None = open_private(path, os.O_WRONLY | os.O_APPEND)

    @property
    def spans(self) -> tuple[Span, ...]:
        """Where this writer's lines are, oldest first: one span per file it wrote into
        (for a run: where its output sits, for the run history)."""
        return tuple(self._spans)

    # -- writing ------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Queue whole lines; they are written at the latest when the buffer is full."""
        self._buffer += data
        if len(self._buffer) >= BUFFER_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write what is queued, rotating first when it would not fit (see the class).

        The size check and the write happen under an exclusive flock on the active file, so
        that concurrent writers cannot both decide that their lines still fit: every file
        stays within `max_bytes` (unless one flush alone is larger)."""
        if not self._buffer or self._fd is None:
            return
        while True:
            fd = self._fd
            held = _lock(fd)
            try:
                mine = os.fstat(fd)
                if not self._still_active(mine):
                    # Rotated (or removed) by someone else: continue in the active file.
                    previous = self._segment_of(mine)
                    self._renamed(mine, previous)
                    self._switch(previous)
                    continue
                if mine.st_size > 0 and mine.st_size + len(self._buffer) > self.max_bytes:
                    self._rotate(mine)
                    continue  # and write into the new file under its own lock
                data = bytes(self._buffer) if self._note is None else \
                    self._note + bytes(self._buffer)
                self._note = None
                self._buffer.clear()
                # Under the lock nobody else appends: our bytes start at the size we saw.
                self._write_all(data)
                self._record_span(mine, len(data))
                self._wrote = True
                return
            finally:
                # Closing a replaced descriptor releases its lock; a kept one is unlocked.
                if fd != self._fd:
                    os.close(fd)
                elif held:
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Flush and close; the descriptor is closed even when the flush fails (then the
        error is raised)."""
        if self._fd is None:
            return
        try:
            self.flush()
        finally:
            fd, self._fd = self._fd, None
            self._buffer.clear()
            os.close(fd)

    def _record_span(self, st: os.stat_result, length: int) -> None:
        file = (st.st_dev, st.st_ino)
        if self._spans and self._span_file == file:
            last = self._spans[-1]
            self._spans[-1] = Span(last.name, last.start, st.st_size + length)
        else:
            self._spans.append(Span(self.path.name, st.st_size, st.st_size + length))
            self._span_file = file

    def _renamed(self, st: os.stat_result, name: str | None) -> None:
        """The file `st` is now the segment `name`: so is the span written into it."""
        if name and self._spans and self._span_file == (st.st_dev, st.st_ino):
            last = self._spans[-1]
            self._spans[-1] = Span(name, last.start, last.end)

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    # -- rotation -----------------------------------------------------------------------
    def _still_active(self, mine: os.stat_result) -> bool:
        try:
            return _same_file(os.stat(self.path), mine)
        except FileNotFoundError:
            return False

    def _switch(self, previous: str | None) -> None:
        """Open the active file afresh (another process may just have created it) and, when
        this writer is in the middle of a run, start it with a note saying where the run's
        earlier lines are. The old descriptor is left to the caller to close."""
        self._fd = open_private(self.path, os.O_WRONLY | os.O_APPEND)
        if self._wrote:
            where = previous or "the previous log file"
            self._note = (f"[dotagent] log rotated; this run's earlier output is in "
                          f"{where}\n").encode()

    def _segment_of(self, st: os.stat_result) -> str | None:
        for seg in reversed(segments(self.path)):
            with contextlib.suppress(OSError):
                if _same_file(os.stat(seg.path), st):
                    return seg.path.name
        return None

    def _rotate(self, mine: os.stat_result) -> None:
        """Rename the active file (whose lock the caller holds, `mine` its stat) to a new
        segment, start a new active file, prune old segments."""
        existing = segments(self.path)
        stamp = mine.st_mtime_ns // 1000
        if existing and stamp <= existing[-1].stamp_us:
            stamp = existing[-1].stamp_us + 1  # names stay in time order
        target = self.path.with_name(segment_name(self.path.name, stamp))
        try:
            os.rename(self.path, target)
        except OSError as exc:
            raise RotationError(exc.errno, f"cannot rename it to {target.name}: "
                                f"{exc.strerror}") from exc
        self._renamed(mine, target.name)
        try:
            self._switch(target.name)
        except OSError as exc:
            # The renamed file stays ours; the caller stops writing after this error.
            raise RotationError(exc.errno, f"renamed it to {target.name}, but cannot "
                                f"start a new one: {exc.strerror}") from exc
        self.rotations += 1
        self._prune()

    def _prune(self) -> None:
        """Delete the oldest segments beyond `keep` (best effort: a segment that cannot be
        deleted now goes at a later rotation)."""
        old = segments(self.path)
        for seg in old[: max(0, len(old) - self.keep)]:
            plain = seg.path.with_name(seg.path.name.removesuffix(".gz"))
            # Both names: the sweep may be between making `X.gz` and removing `X`.
            for path in (plain, plain.with_name(plain.name + ".gz")):
                with contextlib.suppress(OSError):
                    path.unlink()

    # -- context manager ----------------------------------------------------------------
    def __enter__(self) -> AgentLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
