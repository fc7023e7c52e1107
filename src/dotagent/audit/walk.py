"""Following the seams: upstream 0.6's chain status across rotated segments (§1).

The live file has been scanned by the caller (against the head record). From its first
entry the walk goes back one file at a time: a seam names the segment before it, whose last
non-blank line must hash to the seam's `tail_hash`; that segment's own first entry is
`GENESIS` (the start of the log) or another seam. The order is the seams', never the names'.

Statuses, as upstream's `verify_chain_status`:

* `intact_from_genesis`: every file walked is intact and the oldest starts with GENESIS;
* `intact_since_rotation`: intact back to a seam whose segment is not walked (current-segment
  scope, or the segment is not on disk);
* `unexplained_truncation`: a file's first entry is neither GENESIS nor a valid seam;
* `broken`: an unparsable line or a broken link inside a file, a seam whose segment's tail
  does not match it, an empty segment, a seam cycle.

Beyond upstream, a file's own damage as our scan classifies it (with the head record for the
live file; with the seam's claim of entries and tail for a segment) makes the status
`broken` too, so a cut tail is not "intact". The walk goes on past the first failure as far
as the seams lead, so `problems` lists the damage of every file it reaches, while the status
names the first failure in upstream's order.

Memory stays flat: one file is streamed at a time, and only the names walked are kept.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from dotagent.audit.ledger import Ledger, break_key, read_ledger
from dotagent.audit.record import GENESIS
from dotagent.audit.rotation import Seam, first_entry, list_segments, parse_seam, tail_hash
from dotagent.audit.scan import Head, Problem, ScanResult, scan
from dotagent.errors import StateError

__all__ = ["ChainStatus", "Scope", "Status", "Walk", "walk"]

Status = Literal["intact_from_genesis", "intact_since_rotation", "unexplained_truncation",
                 "broken"]
Scope = Literal["current_segment", "full"]


@dataclass(frozen=True)
class ChainStatus:
    """Upstream's verdict, with its variant fields."""

    status: Status
    since_ts: str | None = None
    segment: str | None = None  # since-rotation: the seam's segment; broken: where (None: live)
    entries_before: int | None = None
    segment_present: bool | None = None
    orphan_prev_hash: str | None = None
    position: int | None = None
    expected: str | None = None
    actual: str | None = None

    @property
    def intact(self) -> bool:
        return self.status in ("intact_from_genesis", "intact_since_rotation")

    def to_json(self) -> dict[str, Any]:
        """`status` and its variant's fields, as upstream's `--json` prints them."""
        out: dict[str, Any] = {"status": self.status}
        if self.status == "intact_since_rotation":
            out.update(since_ts=self.since_ts, segment=self.segment,
                       entries_before=self.entries_before,
                       segment_present=self.segment_present)
        elif self.status == "unexplained_truncation":
            out["orphan_prev_hash"] = self.orphan_prev_hash
        elif self.status == "broken":
            out.update(position=self.position, expected=self.expected, actual=self.actual,
                       segment=self.segment)
        return out


@dataclass
class Walk:
    status: ChainStatus
    walked: list[str] = field(default_factory=list)  # segments reached, newest first
    problems: list[Problem] = field(default_factory=list)  # damage found in those segments
    ledger: Ledger = field(default_factory=Ledger)  # their records, oldest first
    entries: int = 0  # entries in the segments scanned (full scope)
    unreached: list[str] = field(default_factory=list)  # segments on disk the seams skip
    segments: list[str] = field(default_factory=list)  # every segment on disk, by name


def _broken(position: int, expected: str, actual: str, segment: str | None) -> ChainStatus:
    return ChainStatus("broken", position=position, expected=expected, actual=actual,
                       segment=segment)


def own_break(res: ScanResult, segment: str | None) -> ChainStatus | None:
    """A file's own failure: upstream's first (unparsable line, broken link), else damage
    our scan found beyond the first entry (a cut tail, a changed last line)."""
    if res.upstream_break is not None:
        return _broken(*res.upstream_break, segment)
    for p in res.problems:
        if p.kind != "head" and (p.position >= 1 or p.kind == "truncation"):
            return _broken(p.position, p.expected_prev_hash, p.actual_prev_hash, segment)
    return None


@contextlib.contextmanager
def _open_segment(path: Path) -> Iterator[BinaryIO]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise StateError(f"cannot read the audit segment {path}: {exc.strerror or exc}") \
            from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StateError(f"cannot read the audit segment {path}: it is not a regular "
                             "file (move it aside)")
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh


def _present(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StateError(f"cannot read the audit segment {path}: {exc.strerror or exc}") \
            from exc


def _cycle_problem(seam: Seam, where: str | None, line: int) -> Problem:
    detail = (f"the seam at line {line} names {seam.rotated_to}, which the walk along the "
              "seams has passed already (a seam cycle)")
    return Problem(line=line, kind="reorder", detail=detail, position=0,
                   expected_prev_hash=seam.tail_hash, actual_prev_hash=seam.line_hash,
                   key=break_key("reorder", 0, seam.tail_hash, seam.line_hash), segment=where)


def _tail_problems(res: ScanResult, seam: Seam, name: str, actual: str,
                   where: str | None) -> list[Problem]:
    """Why a segment's tail is not what the seam names, when its own scan said nothing."""
    if res.problems:
        return []
    if res.head_lag:
        line = res.head_line + 1
        n = res.head_lag
        detail = (f"{n} entr{'y' if n == 1 else 'ies'} added to the segment after it was "
                  f"rotated (the seam in {where or 'audit.log'} says it ended at entry "
                  f"{seam.entries})")
    elif res.entries == 0:
        line = 1
        detail = (f"the segment is empty, but the seam in {where or 'audit.log'} says it held "
                  f"{seam.entries} entries")
    else:
        line = res.line_count
        detail = (f"the segment's last line is not the one the seam in {where or 'audit.log'} "
                  "names")
    kind: Literal["edit", "truncation"] = "truncation" if res.entries == 0 else "edit"
    return [Problem(line=line, kind=kind, detail=detail, position=res.entries,
                    expected_prev_hash=seam.tail_hash, actual_prev_hash=actual,
                    key=break_key(kind, res.entries, seam.tail_hash, actual), segment=name)]


def walk(live: Path, live_res: ScanResult, *, scope: Scope) -> Walk:
    """Classify the log whose live file `live` was scanned as `live_res`, and go back along
    the seams: scanning each segment (`full`), or reading only its recorded breaks
    (`current_segment`, which still has to know every break the log records, S15.9).

    Raises StateError when a segment on the path cannot be read.
    """
    stem = live.name
    out = Walk(status=ChainStatus("intact_from_genesis"))
    out.segments = list_segments(live)
    status: ChainStatus | None = own_break(live_res, None)
    res: ScanResult | None = live_res
    where: str | None = None  # the file whose first entry is being classified
    seam = live_res.seam
    seam_line = 1
    ledgers: list[Ledger] = []
    seen: set[str] = set()
    while True:
        assert res is not None
        if res.entries == 0:
            if where is not None and status is None:
                status = _broken(0, "non-empty segment", "empty file", where)
            break
        if res.first_prev == GENESIS:
            break
        if seam is None:
            if status is None:
                status = ChainStatus("unexplained_truncation",
                                     orphan_prev_hash=res.first_prev or "")
            break
        name = seam.rotated_to
        path = live.with_name(name)
        present = _present(path)
        if (scope == "current_segment" and status is None) or not present:
            if status is None:
                status = ChainStatus("intact_since_rotation", since_ts=seam.ts, segment=name,
                                     entries_before=seam.entries, segment_present=present)
            if not present:
                break
        if name in seen:
            if status is None:
                status = _broken(0, seam.tail_hash, f"{name} (seam cycle)", name)
            if scope == "full":
                out.problems.append(_cycle_problem(seam, where, seam_line))
            break
        seen.add(name)
        out.walked.append(name)
        with _open_segment(path) as fh:
            fd = fh.fileno()
            size = os.fstat(fd).st_size
            if scope == "full":
                actual = tail_hash(fd, size)
                if status is None and actual != seam.tail_hash:
                    status = _broken(0, seam.tail_hash, actual, name)
                res = scan(fh, size, Head(seam.entries, seam.tail_hash, 0), stem=stem,
                           segment=name)
                out.entries += res.entries
                if actual != seam.tail_hash:
                    out.problems.extend(_tail_problems(res, seam, name, actual, where))
                out.problems.extend(res.problems)
                if status is None:
                    status = own_break(res, name)
                ledgers.append(res.ledger)
            else:
                ledgers.append(read_ledger(fh, segment=name))
                first = first_entry(fd)
                # Only what the next step needs: where the file's chain starts.
                res = ScanResult(entries=1 if first is not None else 0,
                                 first_prev=_prev(first), seam=parse_seam(first, stem)
                                 if first is not None else None)
        where = name
        seam = res.seam
    out.status = status or ChainStatus("intact_from_genesis")
    for ledger in reversed(ledgers):  # oldest first
        out.ledger.extend(ledger)
    reached = set(out.walked)
    out.unreached = [n for n in out.segments if n not in reached]
    return out


def _prev(line: bytes | None) -> str | None:
    if line is None:
        return None
    import json

    try:
        entry = json.loads(line)
    except ValueError:
        return None
    prev = entry.get("prev_hash") if isinstance(entry, dict) else None
    return prev if isinstance(prev, str) else None
