"""Streaming chain check and damage classification (no locking, no writing).

`scan()` reads the log once, line by line, in constant memory, and says what is wrong with
it. The rules (also in docs/audit.md):

* A *link* is the pair (line, next non-blank line); it holds when the next line's `prev_hash`
  equals sha256 of the line's exact bytes (`GENESIS` before the first line).
* Consecutive broken links form one *damage region*. A region is `reorder` when one of its
  `prev_hash` values names another line still in the file (earlier, or found later); else
  `deletion` when the file holds fewer entries than the head record says; else `edit`.
* `torn`: a line that is not one whole entry (no final newline, unparsable, two entries glued).
* Against the head record: the head's line is where the head says and every entry after it
  chains on from it ⇒ the head merely lags (repairable); an entry after it that does not chain
  is a damage region like any other (`edit` of that entry: the head vouches for the line
  before it). The head's line still in the file, elsewhere ⇒ nothing more (the regions say
  what moved it). The head's line nowhere in the file: fewer entries than the head ⇒
  `truncation`; otherwise the line at the head's position was changed ⇒ `edit` of that line.
* A file's first entry starts its chain: `GENESIS`, or a valid seam (`audit_log_rotated` with
  prev_hash == tail_hash, rotation.parse_seam) whose prev_hash links it to the segment before.
  Anything else is a damage region at line 1 (upstream: an unexplained truncation).

The same pass notes what upstream's verifier would stop at first (`upstream_break`): an
unparsable line, else the first broken link after the first entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dotagent.audit.events import ChainBreakKind
from dotagent.audit.ledger import AUDIT_EVENT, Ledger, break_key
from dotagent.audit.rotation import Seam, parse_seam

__all__ = ["Head", "Problem", "ScanResult", "scan"]

_PREFIX = b'{"ts":"'
_SUFFIX = b',"prev_hash":"'
_GENESIS_TAIL = b',"prev_hash":"GENESIS"}'
_GENESIS = b"GENESIS"
# How far back a stray prev_hash is looked for among earlier lines, and how many unmatched
# ones wait for a later line: bounds memory; beyond them a reorder is reported as edit.
_RING = 4096
_PENDING_CAP = 4096


@dataclass(frozen=True)
class Head:
    """What the writer last recorded: entry count, hash of the last entry, file size."""

    count: int
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_json(cls, data: Any) -> Head | None:
        if not isinstance(data, dict):
            return None
        count, sha, size = data.get("count"), data.get("sha256"), data.get("size")
        if (isinstance(count, int) and not isinstance(count, bool) and count >= 0
                and isinstance(sha, str) and isinstance(size, int) and size >= 0):
            return cls(count, sha, size)
        return None


@dataclass(frozen=True)
class Problem:
    line: int | None  # 1-based line number in the file (None: the head record, not a line)
    kind: ChainBreakKind
    detail: str
    position: int  # 0-based entry index where the chain check failed (upstream's `position`)
    expected_prev_hash: str
    actual_prev_hash: str
    # Identifies this break across runs, so it is recorded once: ledger.break_key() of the
    # kind, position and hashes, which is also what its audit_chain_broken record holds.
    key: str
    # The line of its audit_chain_broken entry in the log, once recorded (what `audit
    # acknowledge` takes, with record_segment when that entry is in a rotated segment).
    record_line: int | None = None
    segment: str | None = None  # the rotated segment holding `line` (None: the live file)
    record_segment: str | None = None

    @property
    def record(self) -> str | None:
        """The number of the break that records this problem (`8`, `SEGMENT:8`), if any."""
        if self.record_line is None:
            return None
        return f"{self.record_segment}:{self.record_line}" if self.record_segment \
            else str(self.record_line)

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "segment": self.segment, "kind": self.kind,
                "detail": self.detail, "position": self.position,
                "expected_prev_hash": self.expected_prev_hash,
                "actual_prev_hash": self.actual_prev_hash, "record": self.record_line,
                "record_segment": self.record_segment, "record_number": self.record}


@dataclass
class ScanResult:
    entries: int = 0  # complete non-blank lines
    last_hash: str = "GENESIS"  # of the last complete non-blank line
    complete_end: int = 0  # byte offset just past the last newline
    fragment: bytes = b""  # bytes after the last newline
    problems: list[Problem] = field(default_factory=list)
    head_lag: int = 0  # entries after the head's line that chain from it (> 0: head lags)
    head_line: int = 0  # line number of the head's line, when found where the head says
    # The hash the next appended line must carry. The last line's hash, except when the head
    # caught the last line changed in place: then the head's own hash, so the next line keeps
    # the change visible as a broken link instead of vouching for the changed line.
    chain_from: str = "GENESIS"
    line_count: int = 0  # complete lines (blank ones included) before complete_end
    ledger: Ledger = field(default_factory=Ledger)  # the breaks the log records, and more
    seam: Seam | None = None  # the first entry, when it is a valid seam
    first_prev: str | None = None  # prev_hash of the first entry (None: none, or torn)
    # What upstream's verifier stops at in this file: (position, expected, actual) of the
    # first unparsable line, else of the first broken link after the first entry.
    upstream_break: tuple[int, str, str] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


class _Region:
    __slots__ = ("actual", "expected", "first_line", "first_pos", "last_line", "links",
                 "prev_line", "reorder")

    def __init__(self, line: int, pos: int, prev_line: int, expected: bytes, actual: bytes):
        self.first_line = line
        self.last_line = line
        self.first_pos = pos
        self.prev_line = prev_line
        self.expected = expected
        self.actual = actual
        self.links = 0
        self.reorder = False


def _parse_prev(body: bytes) -> bytes | None:
    """prev_hash of a line the fast path could not read, or None when it is not an entry."""
    try:
        entry = json.loads(body)
    except ValueError:
        return None
    if not isinstance(entry, dict) or "ts" not in entry or not isinstance(entry.get("event"), dict):
        return None
    prev = entry.get("prev_hash")
    return prev.encode("utf-8") if isinstance(prev, str) else None


def scan(stream: BinaryIO, limit: int, head: Head | None, *, stem: str = "audit.log",
         segment: str | None = None) -> ScanResult:
    """Check the first `limit` bytes of `stream` (a binary file at offset 0) against `head`.

    `segment` names the file when it is a rotated segment (problems and the ledger carry
    it); `stem` is the live file's name, which a seam's `rotated_to` must extend.
    """
    sha = hashlib.sha256
    expected = _GENESIS
    alt: bytes | None = None  # after a glued line, the hash of its last entry is also accepted
    pos = 0
    line_no = 0
    entries = 0
    last_line_no = 0
    ring: list[bytes] = [b""] * _RING
    regions: list[_Region] = []
    region: _Region | None = None
    pending: dict[bytes, _Region] = {}
    torn: list[Problem] = []
    torn_lines: set[int] = set()
    head_count = head.count if head is not None else -1
    head_line_hash: bytes | None = _GENESIS if head_count == 0 else None
    head_line_no = 0
    # Whether the head's line is anywhere in the file (it may have moved).
    head_sha = head.sha256.encode("ascii", "replace") if head is not None else b"\0"
    head_seen = head_count == 0 or head_sha == _GENESIS
    fragment = b""
    start_broken = False  # the first entry's prev_hash is not GENESIS
    ledger = Ledger(segment=segment)
    seam: Seam | None = None
    first_prev: bytes | None = None
    unparsable: tuple[int, str, str] | None = None
    link_break: tuple[int, str, str] | None = None

    for raw in stream:
        pos += len(raw)
        if pos >= limit:
            if pos > limit:  # the file grew after the snapshot: ignore what came later
                raw = raw[: len(raw) - (pos - limit)]
                pos = limit
            if not raw:
                break
        if raw[-1] != 0x0A:
            fragment = raw
            break
        line_no += 1
        body = raw[:-1]
        h = sha(body).hexdigest().encode("ascii")
        if AUDIT_EVENT in body:
            ledger.note(line_no, body, h.decode())
        # Fast path: our writer and upstream's both end every line with the prev_hash, so it
        # is read with slices instead of a JSON parse. A second `{"ts":"` can only mean two
        # entries glued together (inside a JSON string the quotes would be escaped).
        if (body[-80:-66] == _SUFFIX and body[-2:] == b'"}' and body[:7] == _PREFIX
                and body.find(_PREFIX, 7) < 0):
            p = body[-66:-2]
        elif body.endswith(_GENESIS_TAIL) and body[:7] == _PREFIX and body.find(_PREFIX, 7) < 0:
            p = _GENESIS
        elif not body.strip():
            if pos >= limit:
                break
            continue  # blank lines are not entries (upstream skips them too)
        else:
            parsed = _parse_prev(body)
            if parsed is None:
                glued = body.find(_PREFIX, 1)
                torn.append(Problem(
                    line=line_no, kind="torn",
                    detail=(f"line {line_no} holds two entries glued together (an interrupted "
                            "write followed by the next one)") if glued > 0 else
                           f"line {line_no} is not a complete audit entry",
                    position=entries, expected_prev_hash=expected.decode(),
                    # A torn line has no prev_hash to show: its own hash names it instead.
                    actual_prev_hash=h.decode(),
                    key=break_key("torn", entries, expected.decode(), h.decode())))
                torn_lines.add(line_no)
                if unparsable is None:
                    unparsable = (entries, "a parseable audit entry", "unparseable line")
                entries += 1
                region = None
                alt_next = (sha(body[body.rfind(_PREFIX):]).hexdigest().encode()
                            if glued > 0 else None)
                ring[entries % _RING] = h
                expected, alt, last_line_no = h, alt_next, line_no
                if entries == head_count:
                    head_line_hash, head_line_no = h, line_no
                if h == head_sha:
                    head_seen = True
                if pos >= limit:
                    break
                continue
            p = parsed
        entries += 1
        if entries == 1:
            first_prev = p
            if p != _GENESIS and expected == _GENESIS:
                # A rotated log's live file (or segment) starts with the seam: its prev_hash
                # is the previous file's tail, and a valid seam starts the chain here.
                seam = parse_seam(body, stem)
                if seam is not None:
                    expected = p
        if p in (expected, alt):
            region = None
        else:
            if region is None:
                region = _Region(line_no, entries - 1, last_line_no, expected, p)
                regions.append(region)
            region.links += 1
            region.last_line = line_no
            if h in ring:
                # The very same bytes as an earlier line: a duplicated entry.
                region.reorder = True
            elif p == _GENESIS:
                # A chain start in the middle is the first entry moved here, if the file's
                # first line does not start the chain itself; otherwise an edited prev_hash.
                if start_broken:
                    region.reorder = True
            elif p and p in ring:
                region.reorder = True
            elif len(pending) < _PENDING_CAP:
                pending[p] = region
            if entries == 1:
                start_broken = True
            elif link_break is None:
                link_break = (entries - 1, expected.decode(), p.decode(errors="replace"))
        alt = None
        if pending:
            waiting = pending.pop(h, None)
            if waiting is not None:  # the line an earlier entry pointed at turned up later
                waiting.reorder = True
        ring[entries % _RING] = h
        expected = h
        last_line_no = line_no
        if entries == head_count:
            head_line_hash, head_line_no = h, line_no
        if h == head_sha:
            head_seen = True
        if pos >= limit:
            break

    if fragment and unparsable is None:
        unparsable = (entries, "a parseable audit entry", "unparseable line")
    result = ScanResult(entries=entries, last_hash=expected.decode(),
                        complete_end=pos - len(fragment), fragment=fragment,
                        chain_from=expected.decode(), line_count=line_no, ledger=ledger,
                        seam=seam, first_prev=first_prev.decode(errors="replace")
                        if first_prev is not None else None,
                        upstream_break=unparsable or link_break)
    problems = list(torn)
    if fragment:
        fragment_hash = sha(fragment).hexdigest()
        problems.append(Problem(
            line=line_no + 1, kind="torn",
            detail=(f"line {line_no + 1} has no newline: {len(fragment)} bytes of an "
                    "interrupted or cut write"),
            position=entries, expected_prev_hash=expected.decode(),
            actual_prev_hash=fragment_hash,
            key=break_key("torn", entries, expected.decode(), fragment_hash)))
    # A torn line's own hash is not the one its successor carries: that single broken link
    # is the torn line, already reported, not a second problem.
    regions = [r for r in regions if not (r.links == 1 and r.prev_line in torn_lines)]
    verdict = _judge_head(head, result, regions, torn_lines, head_line_hash, head_line_no,
                          last_line_no, head_seen)
    problems.extend(verdict.problems)
    problems.extend(_judge_regions(head, result, regions, verdict))
    problems.sort(key=lambda p: (p.line or 0, p.kind))
    if segment is not None:
        problems = [dataclasses.replace(p, segment=segment) for p in problems]
    result.problems = problems
    return result


@dataclass
class _HeadVerdict:
    problems: list[Problem] = field(default_factory=list)
    vouched_line: int = 0  # the head's line, found where the head says and unchanged
    changed_line: int = 0  # the line at the head's position, when it is not the head's line


def _judge_head(head: Head | None, res: ScanResult, regions: list[_Region],
                torn_lines: set[int], head_line_hash: bytes | None, head_line_no: int,
                last_line_no: int, head_seen: bool) -> _HeadVerdict:
    verdict = _HeadVerdict()
    if head is None:
        return verdict
    if head_line_hash is not None and head_line_hash.decode() == head.sha256:
        # The head's line is where the head says. Entries after it are a lag only when they
        # all chain on from it; one that does not is damage, reported by its region.
        verdict.vouched_line = head_line_no
        res.head_line = head_line_no
        if (res.entries > head.count
                and not any(r.first_line > head_line_no for r in regions)
                and not any(t > head_line_no for t in torn_lines)):
            res.head_lag = res.entries - head.count
        return verdict
    if head_seen:
        # The head's line is still in the file, at another position: lines before it were
        # added, removed or moved, and the damage regions say which. Not a truncation.
        return verdict
    last = res.last_hash
    if res.entries < head.count:
        # The head's line is gone and the file is shorter: the end was cut. Unless the only
        # missing entry is the torn final line (the head's line cut in half: `torn`).
        if res.fragment and res.entries == head.count - 1:
            return verdict
        missing = head.count - res.entries
        line = last_line_no + 1
        verdict.problems.append(Problem(
            line=line, kind="truncation",
            detail=(f"the log ends after {res.entries} entries but the head record says "
                    f"{head.count}: {missing} entr{'y' if missing == 1 else 'ies'} cut from "
                    "the end"),
            position=res.entries, expected_prev_hash=head.sha256, actual_prev_hash=last,
            key=break_key("truncation", res.entries, head.sha256, last)))
        return verdict
    # As many entries as the head says, or more, and none of them is the head's line: the
    # line at the head's position was changed (whatever follows it chains on the change).
    assert head_line_hash is not None
    changed = head_line_hash.decode()
    verdict.changed_line = head_line_no
    if res.entries == head.count:
        # Chain the next line on the head's hash: the change then stays a broken link that
        # every later verify sees, instead of being vouched for by the next line.
        res.chain_from = head.sha256
    if head_line_no in torn_lines or any(
            r.first_line <= head_line_no <= r.last_line or r.prev_line == head_line_no
            for r in regions):
        return verdict  # already reported, as the region or torn line it is part of
    if res.entries == head.count:
        detail = f"line {head_line_no} (the last entry) differs from the head record"
    else:
        after = res.entries - head.count
        detail = (f"line {head_line_no} is not the entry the head record names "
                  f"({after} entr{'y' if after == 1 else 'ies'} after it chain on from it)")
    # Named as the broken link the next line will leave (it carries the head's hash), so the
    # break stays the same break once the next line is written.
    verdict.problems.append(Problem(
        line=head_line_no, kind="edit", detail=detail, position=head.count,
        expected_prev_hash=changed, actual_prev_hash=head.sha256,
        key=break_key("edit", head.count, changed, head.sha256)))
    return verdict


def _judge_regions(head: Head | None, res: ScanResult, regions: list[_Region],
                   verdict: _HeadVerdict) -> list[Problem]:
    present = res.entries + (1 if res.fragment else 0)
    short = head.count - present if head is not None else 0
    unexplained = [r for r in regions if not r.reorder]
    out: list[Problem] = []
    for r in regions:
        expected, actual = r.expected.decode(), r.actual.decode(errors="replace")
        if r.reorder:
            kind: ChainBreakKind = "reorder"
            line = r.first_line
            span = (f"lines {r.first_line}–{r.last_line}" if r.last_line > r.first_line
                    else f"line {r.first_line}")
            detail = f"entries out of order at {span}: line {r.first_line} does not follow " \
                     "the entry before it, and the entry it names is elsewhere in the file"
        elif short > 0:
            kind, line = "deletion", r.first_line
            count = (f"{short} entr{'y' if short == 1 else 'ies'}" if len(unexplained) == 1
                     else "entries")
            where = "at the start of the log" if r.prev_line == 0 else f"before line {line}"
            detail = f"{count} missing {where}"
        else:
            kind = "edit"
            if r.prev_line > 0 and r.prev_line == verdict.vouched_line:
                # The line before the break is the head's line, intact: the line after it is
                # the one that is wrong (changed, or written after the head by something
                # that did not chain on it).
                line = r.first_line
                detail = (f"line {line} was changed or added: it does not chain on line "
                          f"{r.prev_line}, the last entry the head record vouches for")
            elif r.links == 1 and r.prev_line > 0 and r.first_line != verdict.changed_line:
                line = r.prev_line
                detail = (f"line {line} was changed: line {r.first_line} no longer carries "
                          "its hash")
            else:
                line = r.first_line
                detail = (f"line {line} was changed: its prev_hash does not name the entry "
                          "before it")
        out.append(Problem(line=line, kind=kind, detail=detail, position=r.first_pos,
                           expected_prev_hash=expected, actual_prev_hash=actual,
                           key=break_key(kind, r.first_pos, expected, actual)))
    return out
