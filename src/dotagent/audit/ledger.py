"""What the log itself says about its breaks: every `audit_chain_broken` entry, and who
acknowledged which (`audit_break_acknowledged`).

The log is the record, not a state file: verify lists every break the log holds, and a
break stays "not acknowledged" until an `audit_break_acknowledged` entry names it by the
hash of its line (S15.9). The same pass notes the first line that shows dotagent's own head
bookkeeping (an `audit_repaired`, an acknowledgement, or an `audit_chain_broken` with our
`kind` field): a log holding one had a head record, so losing the head is a break, not a
first contact with an upstream log.

After rotation the log is several files: each ledger is read from one file (`segment`
names it, None for the live `audit.log`), and the ledgers of the files along the seams are
combined oldest first. A record is then numbered `SEGMENT:LINE` (`audit.log.20260826T101500:8`)
when it sits in a rotated segment, and by its bare line number in the live file.

Only lines holding `"event_type":"audit_` are parsed. That byte string cannot occur inside
a JSON string value (its quotes would be escaped), so every other line costs one substring
search.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

__all__ = ["AUDIT_EVENT", "Acknowledgement", "Ledger", "RecordedBreak", "break_key",
           "number_of", "read_ledger"]

AUDIT_EVENT = b'"event_type":"audit_'
_KINDS = ("edit", "deletion", "reorder", "truncation", "torn", "head")


def number_of(segment: str | None, line: int) -> str:
    """How a recorded break is named to the user: `8` in the live file, `SEGMENT:8` in a
    rotated segment."""
    return f"{segment}:{line}" if segment else str(line)


def break_key(kind: str | None, position: int | None, expected: str, actual: str) -> str:
    """A break's identity, the same whether computed from a damage found now (scan) or read
    back from its record. For a broken link it names the link (the two hashes), not the
    kind, which can read differently once the head has been re-anchored."""
    if kind in ("edit", "deletion", "reorder"):
        return f"link:{expected}:{actual}"
    if kind in ("truncation", "torn"):
        return f"{kind}:{expected}:{actual}"
    if kind == "head":
        return f"head:{position}:{expected}:{actual}"
    return f"upstream:{position}:{expected}:{actual}"


@dataclass(frozen=True)
class Acknowledgement:
    record_line: int  # line of the audit_break_acknowledged entry
    at: str  # its ts
    user: str
    uid: int | None
    record_segment: str | None = None  # the segment holding it (None: the live file)

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "uid": self.uid, "at": self.at,
                "record_line": self.record_line, "record_segment": self.record_segment}


@dataclass
class RecordedBreak:
    """One `audit_chain_broken` entry. `number` is what `audit acknowledge` takes."""

    record_line: int  # 1-based line of the entry in its file
    record_sha256: str  # hash of that line (what an acknowledgement names)
    recorded_at: str  # the entry's ts
    kind: str | None  # None: recorded by upstream, which has no kinds
    line: int | None  # the damaged line, as recorded
    position: int | None
    expected_prev_hash: str
    actual_prev_hash: str
    detail: str | None
    acknowledged: Acknowledgement | None = None
    segment: str | None = None  # the segment holding the damaged line (None: the live file)
    record_segment: str | None = None  # the segment holding this record (None: the live file)

    @property
    def number(self) -> str:
        return number_of(self.record_segment, self.record_line)

    @property
    def key(self) -> str:
        return break_key(self.kind, self.position, self.expected_prev_hash,
                         self.actual_prev_hash)

    def describe(self) -> str:
        """`truncation at line 9: …` — the kind, where, and the recorded words."""
        if self.kind is None:
            what = f"break at entry {self.position} (recorded by upstream dotagent)"
        elif self.kind == "head":
            what = "head record"
        else:
            what = f"{self.kind} at line {self.line}" if self.line is not None else self.kind
            if self.segment:
                what += f" of {self.segment}"
        return f"{what}: {self.detail}" if self.detail else what

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "record_line": self.record_line,
                "record_segment": self.record_segment, "recorded_at": self.recorded_at,
                "kind": self.kind, "line": self.line, "segment": self.segment,
                "position": self.position,
                "detail": self.detail, "expected_prev_hash": self.expected_prev_hash,
                "actual_prev_hash": self.actual_prev_hash,
                "record_sha256": self.record_sha256,
                "acknowledged": self.acknowledged is not None,
                "acknowledgement": (self.acknowledged.to_json()
                                    if self.acknowledged is not None else None)}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


@dataclass
class Ledger:
    breaks: list[RecordedBreak] = field(default_factory=list)
    acks: dict[str, Acknowledgement] = field(default_factory=dict)  # record sha → first ack
    evidence_line: int = 0  # first line showing dotagent kept a head (0: none)
    evidence_segment: str | None = None  # the file holding that line (None: the live file)
    segment: str | None = None  # the file this ledger is read from (None: the live file)

    def note(self, line_no: int, body: bytes, sha: str) -> None:
        """Take in one line that holds `"event_type":"audit_`."""
        try:
            entry = json.loads(body)
        except ValueError:  # includes UnicodeDecodeError
            return
        event = entry.get("event") if isinstance(entry, dict) else None
        if not isinstance(event, dict):
            return
        kind = event.get("event_type")
        ts = _str(entry.get("ts"))
        if kind == "audit_chain_broken":
            ours = "kind" in event
            recorded_kind = event.get("kind")
            self.breaks.append(RecordedBreak(
                record_line=line_no, record_sha256=sha, recorded_at=ts,
                kind=recorded_kind if recorded_kind in _KINDS else None,
                line=_int(event.get("line")), position=_int(event.get("position")),
                expected_prev_hash=_str(event.get("expected_prev_hash")),
                actual_prev_hash=_str(event.get("actual_prev_hash")),
                detail=event.get("detail") if isinstance(event.get("detail"), str) else None,
                segment=event.get("segment") if isinstance(event.get("segment"), str) else None,
                record_segment=self.segment))
        elif kind == "audit_break_acknowledged":
            ours = True
            target = event.get("sha256")
            if isinstance(target, str):
                self.acks.setdefault(target, Acknowledgement(
                    record_line=line_no, at=ts, user=_str(event.get("user")),
                    uid=_int(event.get("uid")), record_segment=self.segment))
        else:
            ours = kind == "audit_repaired"
        if ours and not self.evidence_line:
            self.evidence_line = line_no
            self.evidence_segment = self.segment

    def extend(self, other: Ledger) -> None:
        """Add what a later stretch of the log holds (later in the same file, or a newer
        file along the seams)."""
        self.breaks.extend(other.breaks)
        for sha, ack in other.acks.items():
            self.acks.setdefault(sha, ack)
        if not self.evidence_line:
            self.evidence_line = other.evidence_line
            self.evidence_segment = other.evidence_segment

    @property
    def evidence(self) -> str:
        """Where the first bookkeeping line is, as a user reads it (`line 7`, `line 7 of …`)."""
        where = f"line {self.evidence_line}"
        return f"{where} of {self.evidence_segment}" if self.evidence_segment else where

    def resolved(self) -> list[RecordedBreak]:
        """Every recorded break, oldest first, with its acknowledgement attached."""
        for b in self.breaks:
            b.acknowledged = self.acks.get(b.record_sha256)
        return self.breaks

    def keys(self) -> set[str]:
        return {b.key for b in self.breaks}

    def by_key(self) -> dict[str, RecordedBreak]:
        out: dict[str, RecordedBreak] = {}
        for b in self.resolved():
            out.setdefault(b.key, b)
        return out


def read_ledger(stream: BinaryIO | Iterable[bytes], *, first_line: int = 1,
                limit: int | None = None, segment: str | None = None) -> Ledger:
    """The ledger of complete lines read from `stream` from where it stands (numbered from
    `first_line`); `segment` names the file (None: the live audit.log).

    A binary file is read in 1 MiB chunks and searched for `"event_type":"audit_` without
    splitting it into lines (only the few lines that hold it are cut out and parsed), so a
    segment of 32 MiB costs a few milliseconds.
    """
    import hashlib

    ledger = Ledger(segment=segment)
    read = getattr(stream, "read", None)
    if read is None:
        line_no = first_line - 1
        consumed = 0
        for raw in stream:
            consumed += len(raw)
            if limit is not None and consumed > limit:
                break
            if not raw.endswith(b"\n"):
                break  # a torn tail is not an entry
            line_no += 1
            if AUDIT_EVENT in raw:
                body = raw[:-1]
                ledger.note(line_no, body, hashlib.sha256(body).hexdigest())
        return ledger
    line_no = first_line - 1  # lines completed before `buf`
    buf = b""
    remaining = limit
    while True:
        want = _CHUNK if remaining is None else min(_CHUNK, remaining)
        chunk = read(want) if want > 0 else b""
        if remaining is not None:
            remaining -= len(chunk)
        if not chunk:
            break  # what is left in buf has no newline: a torn tail is not an entry
        buf = buf + chunk if buf else chunk
        stop = buf.rfind(b"\n") + 1  # the complete lines are buf[:stop]
        if stop == 0:
            continue
        start = 0
        hit = buf.find(AUDIT_EVENT, 0, stop)
        while hit >= 0:
            line_start = buf.rfind(b"\n", 0, hit) + 1
            line_end = buf.find(b"\n", hit, stop)
            line_no += buf.count(b"\n", start, line_start) + 1
            body = buf[line_start:line_end]
            ledger.note(line_no, body, hashlib.sha256(body).hexdigest())
            start = line_end + 1
            hit = buf.find(AUDIT_EVENT, start, stop)
        line_no += buf.count(b"\n", start, stop)
        buf = buf[stop:]
    return ledger


_CHUNK = 1 << 20
