"""The audit log writer: appends that never fork, a head record, repair, verify.

Every writer (daemon, CLI commands, concurrent processes) serialises on an exclusive
`flock` of `audit.log.lock`, a file that is never deleted: deleting it is what let upstream's
writers lock different inodes and fork the chain.

An append costs the same at any log size: it reads the head record (`state/audit.head`:
entry count, hash of the last entry, file size) and the last line of the file (read
backwards from the end), checks that they agree, writes the new line with one `write`,
fsyncs, and replaces the head atomically. Only when they disagree does it fall back to a
full scan, to classify and record what happened before chaining on.

The head is also copied into the lock file, a second place, written after the head so that
it may lag the head but never lead it. A deleted head is therefore noticed instead of
silently re-adopting whatever the log now holds, and a head rewritten to match a shortened
log is noticed because its copy is ahead of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dotagent.atomicfile import write_atomic, write_json_atomic
from dotagent.audit.events import AuditChainBroken, AuditRepaired, Event, Severity
from dotagent.audit.record import GENESIS, format_ts, hash_line, render_line
from dotagent.audit.scan import Head, Problem, scan
from dotagent.paths import Home
from dotagent.private import open_private, private_mkdir

__all__ = ["AuditLog", "VerifyReport", "current_head"]

log = logging.getLogger("dotagent.audit")

HEAD_FILE = "audit.head"
BREAKS_FILE = "audit.breaks.json"
_TAIL_CHUNK = 8192
_MODE = 0o600
_KINDS = ("edit", "deletion", "reorder", "truncation", "torn")


@dataclass
class VerifyReport:
    ok: bool
    lines: int  # complete entries checked
    head: Head | None  # the head record after verification (repaired if it lagged)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    recorded: int = 0  # audit_chain_broken events appended by this run

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "lines": self.lines,
            "head": self.head.to_json() if self.head is not None else None,
            "problems": [p.to_json() for p in self.problems],
            "warnings": list(self.warnings),
            "recorded": self.recorded,
        }


@dataclass
class _Pending:
    """Events the writer owes the log before the caller's own (repairs, breaks)."""

    items: list[tuple[Event, Severity | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    head: Head | None = None  # the head once reconciled (saved), what the next line chains on
    # Breaks already recorded, plus those about to be; saved only after their lines are
    # written, so a crash in between can cause a repeat, never a silent loss.
    known: dict[str, Any] | None = None
    known_dirty: bool = False


class AuditLog:
    """`$DOTAGENT_HOME/audit.log`. Cheap to construct; every call opens what it needs."""

    def __init__(self, home: Home, *, fsync: bool = True) -> None:
        # fsync=False exists for the benchmark that separates append cost from disk latency;
        # nothing else should turn it off.
        self.home = home
        self.path = home.audit_log
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.head_path = home.state_dir / HEAD_FILE
        self.breaks_path = home.state_dir / BREAKS_FILE
        self._fsync = fsync

    # ------------------------------------------------------------------ public API
    def append(self, event: Event, *, now: datetime | None = None,
               severity: Severity | None = None) -> str:
        """Append `event`; returns the line written (without its newline)."""
        with self._locked() as lock_fd:
            lines = self._append_locked(lock_fd, [(event, severity)], now)
        return lines[-1]

    def head(self) -> Head | None:
        """The stored head record, as is (None before the first append)."""
        return self._load_head()

    def current_head(self) -> tuple[int, str]:
        """(entry count, sha256 of the last entry) — what an out-of-band copy should hold.

        Read-only: a head that lags the file is computed from the file, not rewritten.
        """
        if not self.path.exists():
            return (0, GENESIS)
        with self._locked(), open(self.path, "rb") as fh:
            fd = fh.fileno()
            complete_end, _ = _split_fragment(fd, os.fstat(fd).st_size)
            head = self._load_head()
            if head is not None and head.size == complete_end:
                last = _last_line_before(fd, complete_end)
                if (hash_line(last[1]) if last else GENESIS) == head.sha256:
                    return (head.count, head.sha256)
            res = scan(fh, complete_end, None)
            return (res.entries, res.last_hash)

    def verify(self, *, record: bool = True) -> VerifyReport:
        """Check the whole chain and the head; record each new break once.

        The file is streamed without holding the lock (appends may continue meanwhile); only
        the bytes present when verification started are judged. With record=False nothing is
        written: no break recorded, no head repaired.
        """
        warnings: list[str] = []
        with self._locked() as lock_fd:
            exists = self.path.exists()
            size = self.path.stat().st_size if exists else 0
            head = self._load_head()
            copy = _read_copy(lock_fd)
            head_missing = head is None
            head_behind = False
            if head is None:
                head = copy
                if head is not None:
                    warnings.append(f"head record {self.head_path} is missing; checked against "
                                    "the copy kept in the lock file")
            elif copy is not None and _copy_leads(head, copy):
                head_behind = True
                warnings.append(self._behind_note(head, copy) + "; checked against the copy")
                head = copy
        if not exists and (head is None or head.count == 0):
            return VerifyReport(ok=True, lines=0, head=head)
        # A missing file with a head that vouches for entries is the whole log deleted: judged
        # as an empty file, which the head check reports as truncation.
        with open(self.path, "rb") if exists else io.BytesIO() as fh:
            res = scan(fh, size, head)
        res.problems = self._as_recorded(res.problems)
        report = VerifyReport(ok=res.ok, lines=res.entries, head=head,
                              problems=res.problems, warnings=warnings)
        if head is None:
            warnings.append("no head record: accepted the log as it is and recorded a head "
                            "(entries cut from the end before now cannot be detected)")
        elif res.head_lag:
            warnings.append(f"head record lagged the log by {res.head_lag} "
                            f"entr{'y' if res.head_lag == 1 else 'ies'}; repaired")
        to_record = res.problems if record else []
        if record and (to_record or head_missing or head_behind or res.head_lag):
            with self._locked() as lock_fd:
                pending = self._reconcile_locked(lock_fd, None)
                items = self._unreported(to_record, pending)
                # Breaks at the tail may have been recorded by the reconcile step already.
                report.recorded = sum(isinstance(ev, AuditChainBroken)
                                      for ev, _ in pending.items + items)
                if pending.items or items:
                    self._append_locked(lock_fd, items, None, pending=pending)
            if head_missing or head_behind or res.head_lag:
                report.head = self._load_head()
        for w in warnings:
            log.warning("%s", w)
        return report

    def repair(self) -> list[str]:
        """Move a torn tail aside, rebuild a missing or lagging head. Returns what was done."""
        if not self.path.exists():
            return []
        with self._locked() as lock_fd:
            pending = self._reconcile_locked(lock_fd, None)
            if pending.items:
                self._append_locked(lock_fd, [], None, pending=pending)
        return pending.notes

    # ------------------------------------------------------------------ internals
    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        private_mkdir(self.path.parent)
        fd = open_private(self.lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # closing releases the lock; the file itself stays

    def _open_log(self) -> int:
        return open_private(self.path, os.O_RDWR | os.O_APPEND)

    def _load_head(self) -> Head | None:
        try:
            data = self.head_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return Head.from_json(json.loads(data))
        except ValueError:
            return None

    def _save_head(self, lock_fd: int, head: Head) -> None:
        # Order matters. The head is replaced durably first (temp file, fsync, rename, fsync of
        # the directory), and only then is its copy refreshed. A crash in between leaves a
        # copy that lags the head (lower count), which is never an alarm; a copy that leads
        # the head can therefore only mean the head was rewritten. The copy itself is not
        # fsynced: losing its latest write also makes it lag, never lead.
        write_json_atomic(self.head_path, head.to_json())
        data = json.dumps(head.to_json(), separators=(",", ":")).encode()
        os.pwrite(lock_fd, data, 0)
        # A crash before this truncate leaves older bytes after the object: _read_copy
        # reads only the first JSON value.
        os.ftruncate(lock_fd, len(data))

    def _behind_note(self, head: Head, copy: Head) -> str:
        return (f"head record {self.head_path} ({_entries(head.count)}, {head.sha256[:12]}) "
                f"is behind its copy in {self.lock_path.name} ({_entries(copy.count)}, "
                f"{copy.sha256[:12]}): the head record was rewritten")

    def _append_locked(self, lock_fd: int, items: list[tuple[Event, Severity | None]],
                       now: datetime | None, pending: _Pending | None = None) -> list[str]:
        fd = self._open_log()
        try:
            if pending is None:
                pending = self._reconcile_locked(lock_fd, now, fd=fd)
            all_items = pending.items + items
            head = pending.head
            assert head is not None  # _reconcile_locked always leaves one
            if not all_items:
                return []
            ts = format_ts(now)
            prev = head.sha256
            rendered: list[bytes] = []
            for event, severity in all_items:
                line = render_line(event, ts=ts, prev_hash=prev, severity=severity)
                rendered.append(line)
                prev = hash_line(line)
            data = b"\n".join(rendered) + b"\n"
            _write_all(fd, data)
            if self._fsync:
                os.fsync(fd)
            self._save_head(lock_fd, Head(head.count + len(rendered), prev, head.size + len(data)))
            if pending.known_dirty and pending.known is not None:
                write_json_atomic(self.breaks_path, {"reported": pending.known})
            return [line.decode("utf-8") for line in rendered]
        finally:
            os.close(fd)

    def _reconcile_locked(self, lock_fd: int, now: datetime | None,
                          fd: int | None = None) -> _Pending:
        """Bring file and head into agreement before chaining on; say what it took.

        Leaves the head describing the last complete entry of the file (saved), with any torn
        tail moved aside. Returns the events that must be written before the caller's.
        """
        own_fd = fd is None
        if fd is None:
            fd = self._open_log()
        try:
            return self._reconcile_fd(lock_fd, fd, now)
        finally:
            if own_fd:
                os.close(fd)

    def _reconcile_fd(self, lock_fd: int, fd: int, now: datetime | None) -> _Pending:
        pending = _Pending()
        size = os.fstat(fd).st_size
        complete_end, fragment = _split_fragment(fd, size)
        stored = self._load_head()
        head = stored
        copy = _read_copy(lock_fd)
        if head is not None and copy is not None and _copy_leads(head, copy):
            # The copy is written after the head, so it may lag but never lead: a copy ahead
            # of the head means the head was rewritten (to hide a cut tail, say). Record
            # that, and judge the log against the copy.
            note = self._behind_note(head, copy) + "; the log is judged against the copy"
            pending.items.append((AuditRepaired(reason=note, path=str(self.head_path),
                                                sha256=copy.sha256, line=copy.count),
                                  Severity.CRITICAL))
            pending.notes.append(note)
            log.warning("%s", note)
            head = copy
        if head is None and copy is not None and copy.count > 0:
            # The head is gone but the lock file remembers it: someone deleted it (a crash
            # cannot: write_atomic replaces, never removes). Say so loudly, then judge the
            # log against the copy as if it were the head.
            note = (f"head record {self.head_path} was missing while the log holds "
                    f"entries; restored from the copy kept in {self.lock_path.name}")
            pending.items.append((AuditRepaired(reason=note, path=str(self.head_path)),
                                  Severity.CRITICAL))
            pending.notes.append(note)
            log.warning("%s", note)
            head = copy

        new_head = self._fast_check(fd, head, complete_end) if head is not None else None
        if new_head is not None and head is not None and new_head.count > head.count:
            lag = new_head.count - head.count
            note = (f"head record lagged the log by {lag} entr{'y' if lag == 1 else 'ies'} "
                    "(an append interrupted before its head update); repaired")
            log.warning("%s", note)
            pending.notes.append(note)
        if new_head is None:
            # Slow path: head and file disagree (or there is no head yet). Scan everything,
            # record what is wrong, and re-anchor on what the file actually holds.
            with open(self.path, "rb") as fh:
                res = scan(fh, size, head)
            if head is None and res.entries:
                note = f"no head record: adopted the existing log of {res.entries} entries as is"
                log.warning("%s", note)
                pending.notes.append(note)
            # A torn tail the head never covered is an interrupted append, not damage: it is
            # moved aside below and recorded as a repair only.
            crash_key = f"torn:{res.last_hash}:{hash_line(fragment)}" if fragment else ""
            crash = head is None or head.size <= complete_end
            breaks = [p for p in res.problems if not (crash and p.key == crash_key)]
            pending.items.extend(self._unreported(breaks, pending))
            pending.notes.extend(f"recorded {p.kind} at line {p.line}: {p.detail}"
                                 for p in breaks)
            # Continue after the file's last line, or on the head's own hash when the head
            # caught its last line changed in place (the change must stay a broken link).
            new_head = Head(res.entries, res.chain_from, res.complete_end)

        if fragment:
            side = self._move_fragment(fd, fragment, complete_end, now)
            line = new_head.count + 1
            note = f"moved {len(fragment)} bytes of a torn final line ({line}) to {side.name}"
            pending.items.append((AuditRepaired(
                reason=f"torn final line moved aside ({len(fragment)} bytes)",
                path=str(side), sha256=hash_line(fragment), line=line), None))
            pending.notes.append(note)
            log.warning("%s", note)
        if new_head != stored and not pending.items:
            # With events still owed, the head is saved only after they are written (by
            # _append_locked): a crash in between then finds the old head and the same
            # damage again, instead of a head re-anchored past damage nobody recorded.
            self._save_head(lock_fd, new_head)
        pending.head = new_head
        return pending

    def _fast_check(self, fd: int, head: Head, complete_end: int) -> Head | None:
        """The head after an O(1)/O(lag) check, or None when only a full scan can tell."""
        if complete_end < head.size:
            return None
        last = _last_line_before(fd, head.size)
        at_head = hash_line(last[1]) if last else GENESIS
        if at_head != head.sha256 or (last is None and head.count != 0):
            return None
        if complete_end == head.size:
            return head
        # The file holds more than the head knows: an append whose head update never
        # happened (crash), or an upstream writer. Accept it only if it chains on.
        count, prev = head.count, head.sha256
        with open(self.path, "rb") as fh:
            fh.seek(head.size)
            remaining = complete_end - head.size
            for raw in fh:
                remaining -= len(raw)
                if remaining < 0:
                    break
                body = raw[:-1]
                if not body.strip():
                    continue
                if _prev_of(body) != prev:
                    return None
                prev = hash_line(body)
                count += 1
                if remaining == 0:
                    break
        return Head(count, prev, complete_end)

    def _move_fragment(self, fd: int, fragment: bytes, complete_end: int,
                       now: datetime | None) -> Path:
        stamp = (now or datetime.now()).astimezone().strftime("%Y%m%dT%H%M%S")
        side = self.path.with_name(f"{self.path.name}.torn-{stamp}")
        n = 1
        while side.exists():
            n += 1
            side = self.path.with_name(f"{self.path.name}.torn-{stamp}-{n}")
        # Saved (fsynced) before the log is cut, so the bytes exist somewhere at every instant.
        write_atomic(side, fragment, mode=_MODE)
        os.ftruncate(fd, complete_end)
        if self._fsync:
            os.fsync(fd)
        return side

    def _known_breaks(self) -> dict[str, Any]:
        try:
            data = json.loads(self.breaks_path.read_bytes())
        except (FileNotFoundError, ValueError):
            return {}
        known = data.get("reported") if isinstance(data, dict) else None
        return known if isinstance(known, dict) else {}

    def _as_recorded(self, problems: list[Problem]) -> list[Problem]:
        """Problems recorded before keep the kind and words they were recorded with.

        A deletion, once recorded, re-anchors the head on the shorter log; judged afresh it
        would read as an edit. The record is what the user was told, so it stays the answer.
        """
        if not problems:
            return problems
        known = self._known_breaks()
        out = []
        for p in problems:
            entry = known.get(p.key)
            kind = entry.get("kind") if isinstance(entry, dict) else None
            if isinstance(entry, dict) and kind in _KINDS:
                line = entry.get("line")
                p = dataclasses.replace(p, kind=kind, detail=str(entry.get("detail") or p.detail),
                                        line=line if isinstance(line, int) else p.line)
            out.append(p)
        out.sort(key=lambda p: (p.line, p.kind))
        return out

    def _unreported(self, problems: list[Problem],
                    pending: _Pending) -> list[tuple[Event, Severity | None]]:
        """audit_chain_broken events for the problems not recorded before; marks them."""
        if not problems:
            return []
        if pending.known is None:
            pending.known = self._known_breaks()
        known = pending.known
        items: list[tuple[Event, Severity | None]] = []
        for p in problems:
            if p.key in known:
                continue
            pending.known_dirty = True
            known[p.key] = {"kind": p.kind, "line": p.line, "detail": p.detail,
                            "reported_at": format_ts()}
            items.append((AuditChainBroken(position=p.position,
                                           expected_prev_hash=p.expected_prev_hash,
                                           actual_prev_hash=p.actual_prev_hash, kind=p.kind,
                                           line=p.line, detail=p.detail), None))
        return items


def current_head(home: Home | None = None) -> tuple[int, str]:
    """(entry count, sha256 of the last entry) of the audit log under `home`."""
    return AuditLog(home or Home.from_env()).current_head()


# ---------------------------------------------------------------------- file helpers
def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_copy(lock_fd: int) -> Head | None:
    """The copy of the head kept in the lock file (its first JSON value), if readable."""
    try:
        text = os.pread(lock_fd, 4096, 0).decode("utf-8")
        value, _ = json.JSONDecoder().raw_decode(text)
    except ValueError:  # includes UnicodeDecodeError
        return None
    return Head.from_json(value)


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def _copy_leads(head: Head, copy: Head) -> bool:
    """The copy is ahead of the head: more entries, or as many with a different last one."""
    return copy.count > head.count or (copy.count == head.count and copy.sha256 != head.sha256)


def _split_fragment(fd: int, size: int) -> tuple[int, bytes]:
    """(offset just past the last newline, bytes after it) — reads only the file's tail."""
    if size == 0:
        return 0, b""
    if os.pread(fd, 1, size - 1) == b"\n":
        return size, b""
    buf = b""
    start = size
    chunk = _TAIL_CHUNK
    while start > 0:
        n = min(chunk, start)
        start -= n
        buf = os.pread(fd, n, start) + buf
        i = buf.rfind(b"\n")
        if i != -1:
            return start + i + 1, buf[i + 1:]
        chunk *= 2
    return 0, buf


def _last_line_before(fd: int, end: int) -> tuple[int, bytes] | None:
    """(start offset, bytes) of the last non-blank line that ends at or before `end`.

    `end` must be a line boundary (0, or just past a newline). Reads backwards in growing
    chunks, so the cost is the length of that line, not of the file.
    """
    buf = b""
    buf_start = end  # buf holds the file's bytes [buf_start, end)
    chunk = _TAIL_CHUNK
    stop = end - 1  # offset of the newline that ends the candidate line
    while stop >= 0:
        rel = stop - buf_start
        i = buf.rfind(b"\n", 0, rel) if rel > 0 else -1
        if i == -1 and buf_start > 0:
            n = min(chunk, buf_start)
            buf_start -= n
            buf = os.pread(fd, n, buf_start) + buf
            chunk *= 2
            continue
        line_start = buf_start + i + 1
        line = buf[line_start - buf_start:rel]
        if line.strip():
            return line_start, line
        stop = line_start - 1
    return None


def _prev_of(body: bytes) -> str | None:
    if body.endswith(b'"}'):
        i = body.rfind(b',"prev_hash":"')
        if i != -1:
            return body[i + 14:-2].decode("ascii", "replace")
    try:
        entry = json.loads(body)
    except ValueError:
        return None
    prev = entry.get("prev_hash") if isinstance(entry, dict) else None
    return prev if isinstance(prev, str) else None
