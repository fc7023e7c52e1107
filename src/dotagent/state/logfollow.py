"""Following an agent's log as it grows, across its size rotation (`dotagent logs -f`).

A follower holds the active `<name>.log` open and reads what is appended. The writer rotates
by renaming that file to a segment and starting a new `<name>.log`, under the lock it writes
under (`dotagent.state.agentlog`): once the name points at another file, nothing more is
written to the one held. So each poll first looks at what the name points to, then reads the
held file to its end, and only then moves on — to the segments rotated out since (if several
rotations happened between two polls, or the log was created and rotated while the follower
waited for it), each read whole, and to the new active file from its start. Segments are told
apart by stamp (unique, and kept when a part is compressed to `….gz`); the ones there when
the follower started are the past. No line is lost or read twice; a line is handed out only
once its newline is there. (A segment the writer prunes before a poll comes is lost: with
the default five kept, that takes 50 MiB written between two polls.)

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
        # Segments already there are the past (a tail shows them); a segment not in this set
        # was rotated out after the follower started, and is read whole before moving on.
        # Keyed by stamp, not name: a part keeps its stamp when it is compressed (`….gz`).
        self._seen = {seg.stamp_us for seg in segments(active)}

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()

    def poll(self) -> list[str]:
        """The lines written since the last poll, oldest first."""
        out: list[bytes] = []
        if self._fh is None:
            # Waiting for the log: it may have been created and rotated since the last look.
            out += self._catch_up(None)
            if self._fh is None:
                return self._filter(out)
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

    def _catch_up(self, held: os.stat_result | None) -> list[bytes]:
        """After the held file (`held`, read to its end) was rotated, or while there is none:
        read whole every segment rotated out since, oldest first, then open the active file
        (from its start). A rotation between the listing and the open is caught by listing
        again."""
        lines: list[bytes] = []
        if held is not None:
            unseen = [seg for seg in segments(self.active) if seg.stamp_us not in self._seen]
            mine = [seg for seg in unseen if _is(seg, _ident(held))]
            # The held file is the oldest part rotated out since it was opened: found by its
            # inode, or — once the writer compressed it (a new file) — by being that oldest.
            if mine or unseen:
                self._seen.add((mine or unseen)[0].stamp_us)
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        while True:
            for seg in segments(self.active):
                if seg.stamp_us not in self._seen:
                    lines += _whole(seg)
                    self._seen.add(seg.stamp_us)
            if not self._open_active():
                return lines
            assert self._fh is not None
            mine = _ident(os.fstat(self._fh.fileno()))
            unseen = [seg for seg in segments(self.active) if seg.stamp_us not in self._seen]
            if not unseen:
                return lines + self._drain()
            if len(unseen) == 1 and _is(unseen[0], mine):
                # The file just opened was rotated already: read it through the descriptor
                # (the next poll sees that the name moved on).
                self._seen.add(unseen[0].stamp_us)
                return lines + self._drain()
            self._fh.close()  # rotated on meanwhile: read those segments whole first
            self._fh = None

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
