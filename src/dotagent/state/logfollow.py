"""Following an agent's log as it grows, across its size rotation (`dotagent logs -f`).

A follower holds the active `<name>.log` open and reads what is appended. The writer rotates
by renaming that file to a segment and starting a new `<name>.log`, under the lock it writes
under (`dotagent.state.agentlog`): once the name points at another file, nothing more is
written to the one held. So each poll first looks at what the name points to, then reads the
held file to its end, and only then moves on — to the segments rotated after it, if several
rotations happened between two polls (each read whole), and to the new active file from its
start. No line is lost or read twice; a line is handed out only once its newline is there.

`poll` never sleeps; the caller decides how often to call it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

from dotagent.state.agentlog import Segment, segments
from dotagent.state.logread import CHUNK, parse_header, read_text

__all__ = ["LogFollower"]


def _ident(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


class LogFollower:
    """New whole lines of one agent's log, from `position` of the held file `fh` (or, without
    one, from the start of the active file once it exists).

    `schedule`: only lines of that schedule's runs; `current` is the schedule of the run the
    held position is in (what the last header before it said)."""

    def __init__(self, active: Path, *, fh: BinaryIO | None = None, position: int = 0,
                 schedule: str | None = None, current: str | None = None) -> None:
        self.active = active
        self.schedule = schedule
        self.current = current
        self._fh = fh
        self._position = position
        self._partial = b""
        self._held_blank = False

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()

    def poll(self) -> list[str]:
        """The lines written since the last poll, oldest first."""
        out: list[bytes] = []
        if self._fh is None and not self._open_active():
            return []
        assert self._fh is not None
        try:
            named = _ident(os.stat(self.active))
        except FileNotFoundError:
            named = None
        held = os.fstat(self._fh.fileno())
        out += self._drain()
        if named is not None and named != _ident(held):
            # Rotated: the held file is complete. Read what was rotated after it, then the
            # new active file from its start.
            out += self._end_of_file()
            out += self._catch_up(held)
        elif named is not None and held.st_size < self._position:
            self._fh.seek(0)  # truncated by someone: start again
            self._position, self._partial = 0, b""
            out += self._drain()
        return self._filter(out)

    # -- reading --------------------------------------------------------------------------
    def _open_active(self) -> bool:
        try:
            self._fh = open(self.active, "rb")  # noqa: SIM115 - held across polls
        except FileNotFoundError:
            return False
        self._position, self._partial = 0, b""
        return True

    def _drain(self) -> list[bytes]:
        assert self._fh is not None
        self._fh.seek(self._position)
        lines: list[bytes] = []
        while True:
            chunk = self._fh.read(CHUNK)
            if not chunk:
                return lines
            self._position += len(chunk)
            parts = (self._partial + chunk).split(b"\n")
            self._partial = parts.pop()
            lines += parts

    def _end_of_file(self) -> list[bytes]:
        """A last line without its newline (a write cut short) ends with its file."""
        tail, self._partial = self._partial, b""
        return [tail] if tail else []

    def _catch_up(self, held: os.stat_result) -> list[bytes]:
        lines: list[bytes] = []
        after = self._stamp_of(held)
        while True:
            missed = [seg for seg in segments(self.active) if seg.stamp_us > after]
            for seg in missed:
                lines += _whole(seg)
                after = seg.stamp_us
            assert self._fh is not None
            self._fh.close()
            self._fh = None
            if not self._open_active():
                return lines
            assert self._fh is not None
            mine = _ident(os.fstat(self._fh.fileno()))
            # Rotated again between the listing and the open: the files in between first.
            later = [seg for seg in segments(self.active) if seg.stamp_us > after
                     and not _is(seg, mine)]
            if not later:
                return lines + self._drain()
            self._fh.close()
            self._fh = None

    def _stamp_of(self, held: os.stat_result) -> int:
        """The stamp of the segment the held file became (by inode; by its mtime, as the
        writer stamps it, when it is gone already)."""
        for seg in reversed(segments(self.active)):
            if _is(seg, _ident(held)):
                return seg.stamp_us
        return held.st_mtime_ns // 1000

    # -- the schedule filter --------------------------------------------------------------
    def _filter(self, raw: list[bytes]) -> list[str]:
        out: list[str] = []
        for r in raw:
            line = r.decode("utf-8", "replace")
            header = parse_header(line) if line.startswith("=== ") else None
            if header is not None:
                self.current = header.schedule
            if self.schedule is None:
                out.append(line)
                continue
            if self._held_blank:
                self._held_blank = False
                if self.current == self.schedule:
                    out.append("")
            if line == "":
                self._held_blank = True  # the next header's, or the current run's
                continue
            if self.current == self.schedule:
                out.append(line)
        return out


def _is(seg: Segment, ident: tuple[int, int]) -> bool:
    with contextlib.suppress(OSError):
        return _ident(os.stat(seg.path)) == ident
    return False


def _whole(seg: Segment) -> list[bytes]:
    lines = read_text(seg.path).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines
