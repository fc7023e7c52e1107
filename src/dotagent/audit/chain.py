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
it may lag the head but never lead it. A deleted, garbled or rewritten head is therefore a
recorded break (kind `head`) instead of a silent re-adoption of whatever the log now holds.

What the writer records on its own (a break it found, before the caller's event) is also
said on stderr, once, by the process that records it: the person at the terminal hears
about it whichever command they ran.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import io
import json
import logging
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from dotagent.atomicfile import write_atomic, write_json_atomic
from dotagent.audit.events import (
    AuditBreakAcknowledged,
    AuditChainBroken,
    AuditRepaired,
    Event,
    Severity,
)
from dotagent.audit.ledger import Ledger, RecordedBreak, break_key, read_ledger
from dotagent.audit.record import GENESIS, format_ts, hash_line, render_line
from dotagent.audit.scan import Head, Problem, ScanResult, scan
from dotagent.errors import LinkRefusedError, StateError, SymlinkRefused, UsageError
from dotagent.paths import Home
from dotagent.private import open_private, private_mkdir

__all__ = ["AuditLog", "VerifyReport", "current_head"]

log = logging.getLogger("dotagent.audit")

HEAD_FILE = "audit.head"
_TAIL_CHUNK = 8192
_MODE = 0o600
_KINDS = ("edit", "deletion", "reorder", "truncation", "torn", "head")
_SMALL_FILE = 65536  # the head record is ~120 bytes; anything bigger is not one


@dataclass
class VerifyReport:
    ok: bool  # exit 0: nothing wrong now, and every recorded break acknowledged
    lines: int  # complete entries checked
    head: Head | None  # the head record after verification (repaired if it lagged)
    problems: list[Problem] = field(default_factory=list)  # wrong now (chain or head)
    warnings: list[str] = field(default_factory=list)
    recorded: int = 0  # audit_chain_broken events appended by this run
    breaks: list[RecordedBreak] = field(default_factory=list)  # every break the log records
    appended: int = 0  # entries this run appended (breaks, repairs)

    @property
    def unacknowledged(self) -> list[RecordedBreak]:
        return [b for b in self.breaks if b.acknowledged is None]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "lines": self.lines,
            "head": self.head.to_json() if self.head is not None else None,
            "problems": [p.to_json() for p in self.problems],
            "warnings": list(self.warnings),
            "recorded": self.recorded,
            "appended": self.appended,
            "breaks": [b.to_json() for b in self.breaks],
            "unacknowledged": len(self.unacknowledged),
        }


@dataclass
class _Pending:
    """Events the writer owes the log before the caller's own (repairs, breaks)."""

    items: list[tuple[Event, Severity | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    head: Head | None = None  # the head once reconciled (saved), what the next line chains on
    # Keys of the breaks the log already records, plus those about to be.
    known: set[str] | None = None
    lag: str | None = None  # "head record lagged …": said once the repaired head is saved


@dataclass
class _HeadFiles:
    """The head record and its copy, as read (under the lock)."""

    stored: Head | None  # state/audit.head, when it holds a head record
    garbled: bytes | None  # state/audit.head exists but holds no head record: its bytes
    copy: Head | None  # the copy in audit.log.lock
    copy_bytes: bytes  # the lock file's first bytes (b"" when empty, as upstream leaves it)


@dataclass
class _Basis:
    """What the log is judged against, and what is wrong with the head record itself."""

    head: Head | None
    issue: str | None = None  # the head record was lost: a `head` break
    expected: str = ""  # the hash the lost head named, when known
    actual: str = ""  # what stands in its place (the rewritten head's hash, the garbage's)
    position: int | None = None  # the entry count the lost head named, when known


def _say(text: str) -> None:
    """Best effort on stderr: a closed or full stderr never turns a record into a crash."""
    stream = sys.stderr
    if stream is None:  # started with stderr closed
        return
    with contextlib.suppress(OSError, ValueError):
        stream.write(text)
        stream.flush()


@contextlib.contextmanager
def _os_errors(action: str, path: Path) -> Iterator[None]:
    """An OS error becomes a StateError naming the operation and the file it was about
    (not a temporary file's name, not a bare errno)."""
    try:
        yield
    except OSError as exc:
        error = LinkRefusedError if isinstance(exc, SymlinkRefused) else StateError
        raise error(f"cannot {action} {path}: {exc.strerror or exc}") from exc


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse_non_regular(path: Path, st: os.stat_result, action: str) -> None:
    if stat.S_ISREG(st.st_mode):
        return
    link = ""
    with contextlib.suppress(OSError):
        if path.is_symlink():
            link = f"a symlink to {os.readlink(path)}, "
    raise StateError(f"cannot {action} {path}: it is {link}{_file_kind(st.st_mode)}, not a "
                     "regular file (move it aside; dotagent creates the file it needs)")


class AuditLog:
    """`$DOTAGENT_HOME/audit.log`. Cheap to construct; every call opens what it needs.

    `announce` receives one line of text for every critical event the writer records on its
    own (a break found before the caller's event); by default it goes to stderr.
    """

    def __init__(self, home: Home, *, fsync: bool = True,
                 announce: Callable[[str], None] | None = _say) -> None:
        # fsync=False exists for the benchmark that separates append cost from disk latency;
        # nothing else should turn it off.
        self.home = home
        self.path = home.audit_log
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.head_path = home.state_dir / HEAD_FILE
        self.announce = announce
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
        return self._read_head_record()[0]

    def reader(self) -> BinaryIO | None:
        """The log opened for reading in binary, or None when there is none yet. Refuses
        (StateError) anything but a regular file: a FIFO would hang the reader."""
        if self._stat_log("read") is None:
            return None
        return self._open_read()

    def current_head(self) -> tuple[int, str]:
        """(entry count, sha256 of the last entry) — what an out-of-band copy should hold.

        Read-only: a head that lags the file is computed from the file, not rewritten.
        """
        if self._stat_log("read") is None:
            return (0, GENESIS)
        with self._locked(), self._open_read() as fh, _os_errors("read the audit log",
                                                                  self.path):
            fd = fh.fileno()
            complete_end, _ = _split_fragment(fd, os.fstat(fd).st_size)
            head = self.head()
            if head is not None and head.size == complete_end:
                last = _last_line_before(fd, complete_end)
                if (hash_line(last[1]) if last else GENESIS) == head.sha256:
                    return (head.count, head.sha256)
            res = scan(fh, complete_end, None)
            return (res.entries, res.last_hash)

    def verify(self, *, record: bool = True) -> VerifyReport:
        """Check the whole chain and the head; record each new break once; list every break
        the log records, with who acknowledged it.

        The file is streamed without holding the lock (appends may continue meanwhile); only
        the bytes present when verification started are judged. With record=False nothing is
        written: no break recorded, no head repaired.
        """
        warnings: list[str] = []
        with self._locked() as lock_fd:
            st = self._stat_log("read")
            files = self._read_head_files(lock_fd)
        basis = self._basis(files)
        head = basis.head
        if st is None and (head is None or head.count == 0) and basis.issue is None:
            return VerifyReport(ok=True, lines=0, head=head)
        size = st.st_size if st is not None else 0
        # A missing file with a head that vouches for entries is the whole log deleted: judged
        # as an empty file, which the head check reports as truncation.
        with (self._open_read() if st is not None else io.BytesIO()) as fh, \
                _os_errors("read the audit log", self.path):
            res = scan(fh, size, head)
        head_problem = self._head_problem(basis, files, res)
        problems = ([head_problem] if head_problem is not None else []) + res.problems
        if self._adopts(basis, files, res, head_problem):
            warnings.append("no head record: accepted the log as it is and recorded a head "
                            "(entries cut from the end before now cannot be detected)")
        elif res.head_lag:
            warnings.append(f"head record lagged the log by {res.head_lag} "
                            f"entr{'y' if res.head_lag == 1 else 'ies'}; repaired")
        report = VerifyReport(ok=False, lines=res.entries, head=head, warnings=warnings)
        ledger = res.ledger
        known = ledger.keys()
        unrecorded = [p for p in problems if p.key not in known]
        repair_head = files.stored is None or basis.head is not files.stored or res.head_lag
        reconciled = bool(record and (unrecorded or repair_head))
        if reconciled:
            with self._locked() as lock_fd:
                # Others may have appended (and recorded the same damage) since the scan.
                later = self._ledger_after(res)
                pending = self._reconcile_locked(lock_fd, None, known=known | later.keys())
                items = self._unreported(unrecorded, pending)
                # Breaks at the tail may have been recorded by the reconcile step already.
                report.recorded = sum(isinstance(ev, AuditChainBroken)
                                      for ev, _ in pending.items + items)
                if pending.items or items:
                    # Not announced on stderr: verify's own output reports every one.
                    self._append_locked(lock_fd, items, None, pending=pending, announce=False)
                    report.appended = len(pending.items) + len(items)
                ledger.extend(self._ledger_after(res))
            report.head = self.head()
        report.breaks = ledger.resolved()
        report.problems = _as_recorded(problems, ledger)
        report.ok = (all(p.record_line is not None for p in report.problems)
                     and not report.unacknowledged)
        if not reconciled:  # otherwise the writer already said so, as it repaired
            for w in warnings:
                log.warning("%s", w)
        return report

    def acknowledge(self, lines: Sequence[int] | None, *, user: str, uid: int,
                    now: datetime | None = None) -> list[RecordedBreak]:
        """Record `audit_break_acknowledged` for the breaks recorded at `lines` of the log
        (None: every one not acknowledged yet); returns them.

        UsageError when that acknowledges nothing: no break waiting, a line that holds no
        `audit_chain_broken` entry, or one already acknowledged.
        """
        reader = self.reader()
        if reader is None:
            res = ScanResult()
        else:
            with reader as fh, _os_errors("read the audit log", self.path):
                res = scan(fh, os.fstat(fh.fileno()).st_size, None)
        with self._locked() as lock_fd:
            ledger = res.ledger
            ledger.extend(self._ledger_after(res))
            recorded = ledger.resolved()
            if lines is None:
                targets = [b for b in recorded if b.acknowledged is None]
                if not targets:
                    raise UsageError(
                        "nothing to acknowledge: " + (
                            f"all {len(recorded)} recorded break"
                            f"{'s are' if len(recorded) != 1 else ' is'} acknowledged already"
                            if recorded else "the audit log records no break"))
            else:
                by_line = {b.record_line: b for b in recorded}
                targets = []
                for n in lines:
                    found = by_line.get(n)
                    if found is None:
                        listed = ", ".join(str(b.record_line) for b in recorded
                                           if b.acknowledged is None)
                        raise UsageError(
                            f"no recorded break at line {n} of {self.path}; "
                            + (f"breaks waiting for acknowledgement: {listed}" if listed
                               else "no break is waiting for acknowledgement"))
                    if found.acknowledged is not None:
                        ack = found.acknowledged
                        raise UsageError(
                            f"the break recorded at line {n} was already acknowledged by "
                            f"{_who(ack.user, ack.uid)} at {ack.at}; nothing to acknowledge")
                    if found not in targets:
                        targets.append(found)
            items: list[tuple[Event, Severity | None]] = [
                (AuditBreakAcknowledged(line=b.record_line, sha256=b.record_sha256,
                                        kind=b.kind, user=user, uid=uid), None)
                for b in targets]
            self._append_locked(lock_fd, items, now)
        return targets

    def repair(self) -> list[str]:
        """Move a torn tail aside, rebuild a missing or lagging head. Returns what was done."""
        if self._stat_log("repair") is None:
            return []
        with self._locked() as lock_fd:
            pending = self._reconcile_locked(lock_fd, None)
            if pending.items:
                # Not announced: the command prints every note itself.
                self._append_locked(lock_fd, [], None, pending=pending, announce=False)
        return pending.notes

    # ------------------------------------------------------------------ internals
    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        with _os_errors("create the directory", self.path.parent):
            private_mkdir(self.path.parent)
        with _os_errors("open the audit lock file", self.lock_path):
            fd = open_private(self.lock_path, os.O_RDWR)
        try:
            _refuse_non_regular(self.lock_path, os.fstat(fd), "lock")
            with _os_errors("lock", self.lock_path):
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # closing releases the lock; the file itself stays

    def _stat_log(self, action: str) -> os.stat_result | None:
        """The log's status, None when it does not exist; refuses anything not regular."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot {action} the audit log {self.path}: "
                             f"{exc.strerror or exc}") from exc
        _refuse_non_regular(self.path, st, f"{action} the audit log")
        if os.path.islink(self.path):  # a link to a regular file elsewhere: not ours either
            raise LinkRefusedError(f"cannot {action} the audit log {self.path}: "
                                   f"{SymlinkRefused(self.path).strerror}")
        return st

    def _open_log(self) -> int:
        self._stat_log("append to")
        with _os_errors("open the audit log", self.path):
            fd = open_private(self.path, os.O_RDWR | os.O_APPEND)
        try:
            _refuse_non_regular(self.path, os.fstat(fd), "append to the audit log")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_read(self) -> BinaryIO:
        # Non-blocking: should the path turn into a FIFO after the check, open() still returns.
        with _os_errors("read the audit log", self.path):
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            _refuse_non_regular(self.path, os.fstat(fd), "read the audit log")
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "rb")

    def _read_head_record(self) -> tuple[Head | None, bytes | None]:
        """(head, None), (None, the bytes) when garbled, (None, None) when missing."""
        try:
            fd = os.open(self.head_path,
                         os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LinkRefusedError(f"cannot read the head record {self.head_path}: "
                                       f"{SymlinkRefused(self.head_path).strerror}") from None
            raise StateError(f"cannot read the head record {self.head_path}: "
                             f"{exc.strerror or exc}") from exc
        try:
            _refuse_non_regular(self.head_path, os.fstat(fd), "read the head record")
            with _os_errors("read the head record", self.head_path):
                data = os.read(fd, _SMALL_FILE)
        finally:
            os.close(fd)
        try:
            head = Head.from_json(json.loads(data))
        except ValueError:  # includes UnicodeDecodeError
            head = None
        return (head, None) if head is not None else (None, data)

    def _read_head_files(self, lock_fd: int) -> _HeadFiles:
        stored, garbled = self._read_head_record()
        with _os_errors("read the head copy in", self.lock_path):
            copy_bytes = os.pread(lock_fd, 4096, 0)
        return _HeadFiles(stored, garbled, _parse_copy(copy_bytes), copy_bytes)

    def _basis(self, files: _HeadFiles) -> _Basis:
        """The head to judge the log against; a lost head record is itself a break (S15.9).

        A head existed when the lock file holds a copy of one (upstream leaves it empty) or
        state/audit.head holds anything at all; the log's own evidence (our bookkeeping
        entries) is weighed after the scan, in _head_problem.
        """
        stored, copy = files.stored, files.copy
        lock_name = self.lock_path.name
        if stored is not None:
            if copy is not None and _copy_leads(stored, copy):
                # The copy is written after the head, so it may lag but never lead: a copy
                # ahead of the head means the head was rewritten (to hide a cut tail, say).
                return _Basis(copy, self._behind_note(stored, copy) + "; the log is judged "
                              "against the copy", copy.sha256, stored.sha256, copy.count)
            return _Basis(stored)
        known = copy if copy is not None and copy.count > 0 else None
        if known is not None:
            against = (f"; the log is judged against its copy in {lock_name} "
                       f"({_entries(known.count)}, {known.sha256[:12]})")
        else:
            against = (f"; its copy in {lock_name} is gone too, so entries cut from the end "
                       "before now cannot be ruled out")
        if files.garbled is not None:
            what = (f"is garbled ({len(files.garbled)} bytes that are not a head record)"
                    if files.garbled.strip() else "is empty")
            return _Basis(known, f"{self.head_path} {what}{against}",
                          known.sha256 if known else "", hash_line(files.garbled),
                          known.count if known else None)
        if known is not None:
            # The head is gone but the lock file remembers it: someone deleted it (a crash
            # cannot: write_atomic replaces, never removes).
            return _Basis(known, f"{self.head_path} was deleted{against}",
                          known.sha256, "", known.count)
        if copy is None and files.copy_bytes.strip(b"\0 \t\r\n"):
            return _Basis(None, f"{self.head_path} is missing, and {lock_name} "
                          f"holds {len(files.copy_bytes)} bytes that are not its copy (a "
                          "head existed; entries cut from the end before now cannot be "
                          "ruled out)", "", hash_line(files.copy_bytes), None)
        return _Basis(None)

    def _head_problem(self, basis: _Basis, files: _HeadFiles,
                      res: ScanResult | None) -> Problem | None:
        issue, position = basis.issue, basis.position
        if (issue is None and basis.head is None and files.stored is None and res is not None
                and res.ledger.evidence_line):
            issue = (f"{self.head_path} and its copy in {self.lock_path.name} are "
                     "both gone, although the log shows dotagent kept a head (line "
                     f"{res.ledger.evidence_line}): entries cut from the end before now "
                     "cannot be ruled out")
        if issue is None:
            return None
        if position is None:
            position = res.entries if res is not None else 0
        return Problem(line=None, kind="head", detail=issue, position=position,
                       expected_prev_hash=basis.expected, actual_prev_hash=basis.actual,
                       key=break_key("head", position, basis.expected, basis.actual))

    @staticmethod
    def _adopts(basis: _Basis, files: _HeadFiles, res: ScanResult,
                head_problem: Problem | None) -> bool:
        """A log that never had a head (an upstream log): adopted, with a notice."""
        return (basis.head is None and files.stored is None and head_problem is None
                and res.entries > 0)

    def _save_head(self, lock_fd: int, head: Head) -> None:
        # Order matters. The head is replaced durably first (temp file, fsync, rename, fsync of
        # the directory), and only then is its copy refreshed. A crash in between leaves a
        # copy that lags the head (lower count), which is never an alarm; a copy that leads
        # the head can therefore only mean the head was rewritten. The copy itself is not
        # fsynced: losing its latest write also makes it lag, never lead.
        with _os_errors("save the head record", self.head_path):
            write_json_atomic(self.head_path, head.to_json())
        data = json.dumps(head.to_json(), separators=(",", ":")).encode()
        with _os_errors("update the head copy in", self.lock_path):
            os.pwrite(lock_fd, data, 0)
            # A crash before this truncate leaves older bytes after the object: _parse_copy
            # reads only the first JSON value.
            os.ftruncate(lock_fd, len(data))

    def _behind_note(self, head: Head, copy: Head) -> str:
        return (f"{self.head_path} ({_entries(head.count)}, {head.sha256[:12]}) is behind "
                f"its copy in {self.lock_path.name} ({_entries(copy.count)}, "
                f"{copy.sha256[:12]}): the head record was rewritten")

    def _ledger_after(self, res: ScanResult) -> Ledger:
        """The ledger of the lines written after the stretch `res` scanned."""
        reader = self.reader()
        if reader is None:
            return Ledger()
        with reader as fh, _os_errors("read the audit log", self.path):
            fh.seek(res.complete_end)
            return read_ledger(fh, first_line=res.line_count + 1)

    def _append_locked(self, lock_fd: int, items: list[tuple[Event, Severity | None]],
                       now: datetime | None, pending: _Pending | None = None, *,
                       announce: bool = True) -> list[str]:
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
            with _os_errors("append to the audit log", self.path):
                _write_all(fd, data)
                if self._fsync:
                    os.fsync(fd)
            try:
                self._save_head(lock_fd, Head(head.count + len(rendered), prev,
                                              head.size + len(data)))
            except StateError as exc:
                # The entries are in the log (written and synced): only the head lags, as
                # after a crash, and the next write finds the lag and repairs it.
                names = ", ".join(dict.fromkeys(ev.event_type for ev, _ in all_items))
                log.error("recorded %s in the audit log, but could not update its head "
                          "record (%s); the next write to the audit log repairs it", names,
                          exc)
            else:
                if pending.lag is not None:
                    log.warning("%s; repaired", pending.lag)
                    pending.lag = None
        finally:
            os.close(fd)
        if announce and self.announce is not None:
            for event, severity in pending.items:
                if (severity or event.severity) is Severity.CRITICAL:
                    self.announce(_announcement(event))
        return [line.decode("utf-8") for line in rendered]

    def _reconcile_locked(self, lock_fd: int, now: datetime | None,
                          fd: int | None = None, known: set[str] | None = None) -> _Pending:
        """Bring file and head into agreement before chaining on; say what it took.

        Leaves the head describing the last complete entry of the file (saved), with any torn
        tail moved aside. Returns the events that must be written before the caller's.
        """
        own_fd = fd is None
        if fd is None:
            fd = self._open_log()
        try:
            return self._reconcile_fd(lock_fd, fd, now, known)
        finally:
            if own_fd:
                os.close(fd)

    def _reconcile_fd(self, lock_fd: int, fd: int, now: datetime | None,
                      known: set[str] | None) -> _Pending:
        pending = _Pending(known=set(known) if known is not None else None)
        with _os_errors("read the audit log", self.path):
            size = os.fstat(fd).st_size
            complete_end, fragment = _split_fragment(fd, size)
        files = self._read_head_files(lock_fd)
        basis = self._basis(files)
        head = basis.head

        new_head = self._fast_check(fd, head, complete_end) if head is not None else None
        if new_head is not None and head is not None and new_head.count > head.count:
            lag = new_head.count - head.count
            pending.lag = (f"head record lagged the log by {lag} entr"
                           f"{'y' if lag == 1 else 'ies'} (an append whose head update did "
                           "not happen: interrupted, or the head could not be written)")
            pending.notes.append(f"{pending.lag}; repaired")
        res: ScanResult | None = None
        if new_head is None:
            # Slow path: head and file disagree (or there is no head yet). Scan everything,
            # record what is wrong, and re-anchor on what the file actually holds.
            with self._open_read() as fh, _os_errors("read the audit log", self.path):
                res = scan(fh, size, head)
            # The log as it is now says which breaks it records already.
            pending.known = res.ledger.keys() | (pending.known or set())
        head_problem = self._head_problem(basis, files, res)
        if head_problem is not None:
            self._owe_breaks([head_problem], pending)
        if res is not None:
            if self._adopts(basis, files, res, head_problem):
                note = (f"no head record: adopted the existing log of {_entries(res.entries)} "
                        "as is")
                log.warning("%s", note)
                pending.notes.append(note)
                pending.items.append((AuditRepaired(
                    reason=f"{note} (a log that never had a head record, as upstream writes "
                           "it; entries cut from its end before now cannot be detected)",
                    path=str(self.head_path), sha256=res.last_hash, line=res.entries), None))
            # A torn tail the head never covered is an interrupted append, not damage: it is
            # moved aside below and recorded as a repair only.
            crash_key = (break_key("torn", res.entries, res.last_hash, hash_line(fragment))
                         if fragment else "")
            crash = head is None or head.size <= complete_end
            self._owe_breaks([p for p in res.problems if not (crash and p.key == crash_key)],
                             pending)
            # Continue after the file's last line, or on the head's own hash when the head
            # caught its last line changed in place (the change must stay a broken link).
            new_head = Head(res.entries, res.chain_from, res.complete_end)
        assert new_head is not None

        if fragment:
            side = self._move_fragment(fd, fragment, complete_end, now)
            line = new_head.count + 1
            note = f"moved {len(fragment)} bytes of a torn final line ({line}) to {side.name}"
            pending.items.append((AuditRepaired(
                reason=f"torn final line moved aside ({len(fragment)} bytes)",
                path=str(side), sha256=hash_line(fragment), line=line), None))
            pending.notes.append(note)
            log.warning("%s", note)
        if new_head != files.stored and not pending.items:
            # With events still owed, the head is saved only after they are written (by
            # _append_locked): a crash in between then finds the old head and the same
            # damage again, instead of a head re-anchored past damage nobody recorded.
            try:
                self._save_head(lock_fd, new_head)
            except StateError as exc:
                if pending.lag is None:
                    raise
                raise StateError(f"{pending.lag}; cannot repair it: {exc}") from exc
            if pending.lag is not None:
                log.warning("%s; repaired", pending.lag)
                pending.lag = None
        pending.head = new_head
        return pending

    def _fast_check(self, fd: int, head: Head, complete_end: int) -> Head | None:
        """The head after an O(1)/O(lag) check, or None when only a full scan can tell."""
        if complete_end < head.size:
            return None
        with _os_errors("read the audit log", self.path):
            last = _last_line_before(fd, head.size)
        at_head = hash_line(last[1]) if last else GENESIS
        if at_head != head.sha256 or (last is None and head.count != 0):
            return None
        if complete_end == head.size:
            return head
        # The file holds more than the head knows: an append whose head update never
        # happened (crash), or an upstream writer. Accept it only if it chains on.
        count, prev = head.count, head.sha256
        with self._open_read() as fh, _os_errors("read the audit log", self.path):
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
        with _os_errors("save the torn final line to", side):
            write_atomic(side, fragment, mode=_MODE)
        with _os_errors("cut the torn final line from the audit log", self.path):
            os.ftruncate(fd, complete_end)
            if self._fsync:
                os.fsync(fd)
        return side

    def _owe_breaks(self, problems: list[Problem], pending: _Pending) -> None:
        """Queue a record of each problem the log does not record yet, with a note."""
        for item in self._unreported(problems, pending):
            pending.items.append(item)
            ev = item[0]
            assert isinstance(ev, AuditChainBroken)
            where = "head record" if ev.kind == "head" else f"{ev.kind} at line {ev.line}"
            pending.notes.append(f"recorded {where}: {ev.detail}")

    def _unreported(self, problems: list[Problem],
                    pending: _Pending) -> list[tuple[Event, Severity | None]]:
        """audit_chain_broken events for the problems the log does not record yet."""
        if not problems:
            return []
        if pending.known is None:
            pending.known = set()
        known = pending.known
        items: list[tuple[Event, Severity | None]] = []
        for p in problems:
            if p.key in known:
                continue
            known.add(p.key)
            items.append((AuditChainBroken(position=p.position,
                                           expected_prev_hash=p.expected_prev_hash,
                                           actual_prev_hash=p.actual_prev_hash, kind=p.kind,
                                           line=p.line, detail=p.detail), None))
        return items


def _as_recorded(problems: list[Problem], ledger: Ledger) -> list[Problem]:
    """Each problem found now, as its record in the log tells it (kind, line, words) and
    with the record's line; a problem without a record keeps its own.

    A deletion, once recorded, re-anchors the head on the shorter log; judged afresh it
    would read as an edit. The record is what the user was told, so it stays the answer.
    """
    if not problems:
        return problems
    records = ledger.by_key()
    out = []
    for p in problems:
        rec = records.get(p.key)
        if rec is not None:
            kind = rec.kind if rec.kind in _KINDS else p.kind
            p = dataclasses.replace(
                p, kind=kind, detail=rec.detail or p.detail,  # type: ignore[arg-type]
                line=rec.line if rec.line is not None or kind == "head" else p.line,
                record_line=rec.record_line)
        out.append(p)
    out.sort(key=lambda p: (p.line or 0, p.kind))
    return out


def _who(user: str, uid: int | None) -> str:
    if user and uid is not None:
        return f"{user} (uid {uid})"
    return user or (f"uid {uid}" if uid is not None else "someone")


def _announcement(event: Event) -> str:
    """The one stderr line for a critical event the writer recorded on its own."""
    if isinstance(event, AuditChainBroken):
        if event.kind == "head":
            what = f"the audit log's head record cannot be trusted: {event.detail}"
        else:
            where = f" at line {event.line}" if event.line is not None else ""
            what = f"the audit log is damaged: {event.kind}{where}: {event.detail}"
        return (f"[dotagent] critical: {what} (recorded as audit_chain_broken; `dotagent "
                "audit verify` lists it, `dotagent audit acknowledge` once looked into)\n")
    return f"[dotagent] critical: recorded {event.event_type} in the audit log\n"


def current_head(home: Home | None = None) -> tuple[int, str]:
    """(entry count, sha256 of the last entry) of the audit log under `home`."""
    return AuditLog(home or Home.from_env()).current_head()


# ---------------------------------------------------------------------- file helpers
def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _parse_copy(data: bytes) -> Head | None:
    """The copy of the head kept in the lock file (its first JSON value), if readable."""
    try:
        value, _ = json.JSONDecoder().raw_decode(data.decode("utf-8"))
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
