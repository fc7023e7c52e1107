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

Rotation (UPSTREAM-0.6 §1, module `rotation`): when the live file has reached `max_bytes`
(32 MiB) the append, still under the lock, renames it to `audit.log.<stamp>` and starts a
new `audit.log` whose first line is the seam; the head record then describes the new live
file (1 entry, the seam). A crash between the steps is repaired by the next append: no live
entry while segments exist ⇒ the seam is written again (recorded); a head or head copy still
describing the rotated file ⇒ it lagged across the rotation, and is brought forward when the
seam claims exactly what it vouched for.
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
from dotagent.audit.rotation import (
    DEFAULT_MAX_BYTES,
    Seam,
    first_entry,
    first_ts,
    free_segment_name,
    is_segment_name,
    list_segments,
    parse_seam,
    render_seam,
    segment_facts,
    tail_hash,
)
from dotagent.audit.scan import Head, Problem, ScanResult, scan
from dotagent.audit.walk import ChainStatus, Scope, walk
from dotagent.boundedread import file_kind
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
    lines: int  # complete entries checked (every file walked, with --full)
    head: Head | None  # the head record after verification (repaired if it lagged)
    problems: list[Problem] = field(default_factory=list)  # wrong now (chain or head)
    warnings: list[str] = field(default_factory=list)
    recorded: int = 0  # audit_chain_broken events appended by this run
    breaks: list[RecordedBreak] = field(default_factory=list)  # every break the log records
    appended: int = 0  # entries this run appended (breaks, repairs)
    # Upstream 0.6's verdict and scope (UPSTREAM-0.6 §1).
    status: ChainStatus = field(default_factory=lambda: ChainStatus("intact_from_genesis"))
    scope: Scope = "current_segment"
    file: str = ""
    segments: list[str] = field(default_factory=list)  # every segment on disk, by name
    walked: list[str] = field(default_factory=list)  # segments reached along the seams
    unreached: list[str] = field(default_factory=list)  # segments on disk the seams skip
    live_lines: int = 0  # entries in the live audit.log (what the head record counts)

    @property
    def unacknowledged(self) -> list[RecordedBreak]:
        return [b for b in self.breaks if b.acknowledged is None]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = self.status.to_json()
        out.update({
            "ok": self.ok,
            "scope": self.scope,
            "file": self.file,
            "segments": list(self.segments),
            "walked": list(self.walked),
            "unreached": list(self.unreached),
            "lines": self.lines,
            "live_lines": self.live_lines,
            "head": self.head.to_json() if self.head is not None else None,
            "problems": [p.to_json() for p in self.problems],
            "warnings": list(self.warnings),
            "recorded": self.recorded,
            "appended": self.appended,
            "breaks": [b.to_json() for b in self.breaks],
            "unacknowledged": len(self.unacknowledged),
        })
        return out


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


def _refuse_non_regular(path: Path, st: os.stat_result, action: str) -> None:
    if stat.S_ISREG(st.st_mode):
        return
    link = ""
    with contextlib.suppress(OSError):
        if path.is_symlink():
            link = f"a symlink to {os.readlink(path)}, "
    raise StateError(f"cannot {action} {path}: it is {link}{file_kind(st.st_mode)}, not a "
                     "regular file (move it aside; dotagent creates the file it needs)")


class AuditLog:
    """`$DOTAGENT_HOME/audit.log`. Cheap to construct; every call opens what it needs.

    `announce` receives one line of text for every critical event the writer records on its
    own (a break found before the caller's event); by default it goes to stderr.
    `max_bytes` is the rotation threshold (upstream's 32 MiB; tests pass a small one).
    """

    def __init__(self, home: Home, *, fsync: bool = True,
                 announce: Callable[[str], None] | None = _say,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        # fsync=False exists for the benchmark that separates append cost from disk latency;
        # nothing else should turn it off.
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.home = home
        self.path = home.audit_log
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.head_path = home.state_dir / HEAD_FILE
        self.announce = announce
        self.max_bytes = max_bytes
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

        Read-only: a head that lags the file is computed from the file, not rewritten. With
        no live file but rotated segments (a crash before the seam was written), the newest
        segment's count and last hash: what the seam written next will vouch for.
        """
        if self._stat_log("read") is None:
            if list_segments(self.path):
                newest = self.path.with_name(self._newest_segment(self.head()))
                with _os_errors("read the audit segment", newest):
                    entries, _, tail = segment_facts(newest)
                return (entries, tail)
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

    def verify(self, *, record: bool = True, full: bool = False) -> VerifyReport:
        """Check the live file's chain and the head; with `full`, walk back along the seams
        through every rotated segment; record each new break once; list every break the log
        records (in every segment), with who acknowledged it.

        The files are streamed without holding the lock (appends may continue meanwhile);
        only the bytes present when verification started are judged. With record=False
        nothing is written: no break recorded, no head repaired, no seam restored.
        Raises StateError when a file cannot be read.
        """
        warnings: list[str] = []
        restored = 0
        if record:
            restored = self._restore_before_verify()
        with self._locked() as lock_fd:
            st = self._stat_log("read")
            files = self._read_head_files(lock_fd)
            seam = self._live_seam() if st is not None else None
        basis = self._basis(files, seam)
        head = basis.head
        scope: Scope = "full" if full else "current_segment"
        segments = list_segments(self.path)
        if (st is None and (head is None or head.count == 0) and basis.issue is None
                and not segments):
            return VerifyReport(ok=True, lines=0, head=head, scope=scope, file=str(self.path))
        size = st.st_size if st is not None else 0
        # A missing file with a head that vouches for entries is the whole log deleted: judged
        # as an empty file, which the head check reports as truncation.
        with (self._open_read() if st is not None else io.BytesIO()) as fh, \
                _os_errors("read the audit log", self.path):
            ino = _inode(fh)
            res = scan(fh, size, _scan_head(head, seam), stem=self.path.name)
        trail = walk(self.path, res, scope=scope)
        older = trail.ledger
        head_problem = self._head_problem(basis, files, res, older)
        problems = (([head_problem] if head_problem is not None else []) + res.problems
                    + trail.problems)
        if self._adopts(basis, files, res, head_problem, older):
            warnings.append("no head record: accepted the log as it is and recorded a head "
                            "(entries cut from the end before now cannot be detected)")
        elif res.head_lag:
            warnings.append(f"head record lagged the log by {res.head_lag} "
                            f"entr{'y' if res.head_lag == 1 else 'ies'}; repaired")
        for name in trail.unreached:
            warnings.append(f"segment {name} is on disk but no seam leads to it: it is not "
                            "part of the chain verified")
        report = VerifyReport(ok=False, lines=res.entries + trail.entries, head=head,
                              warnings=warnings, status=trail.status, scope=scope,
                              file=str(self.path), segments=trail.segments,
                              walked=trail.walked, unreached=trail.unreached,
                              live_lines=res.entries, appended=restored)
        ledger = Ledger()
        ledger.extend(older)
        ledger.extend(res.ledger)
        known = ledger.keys()
        unrecorded = [p for p in problems if p.key not in known]
        repair_head = files.stored is None or basis.head is not files.stored or res.head_lag
        reconciled = bool(record and (unrecorded or repair_head))
        if reconciled:
            with self._locked() as lock_fd:
                # Others may have appended (and recorded the same damage) since the scan, and
                # the live file may even have been rotated meanwhile.
                later, moved_to = self._ledger_after(res, ino)
                if moved_to is not None:
                    unrecorded = [dataclasses.replace(p, segment=moved_to)
                                  if p.segment is None and p.kind != "head" else p
                                  for p in unrecorded]
                pending = self._reconcile_locked(lock_fd, None, known=known | later.keys())
                items = self._unreported(unrecorded, pending)
                # Breaks at the tail may have been recorded by the reconcile step already.
                report.recorded = sum(isinstance(ev, AuditChainBroken)
                                      for ev, _ in pending.items + items)
                if pending.items or items:
                    # Not announced on stderr: verify's own output reports every one.
                    written = self._append_locked(lock_fd, items, None, pending=pending,
                                                  announce=False, rotate=False)
                    report.appended += len(written)
                ledger.extend(self._ledger_after(res, ino)[0])
            report.head = self.head()
        report.breaks = ledger.resolved()
        report.problems = _as_recorded(problems, ledger)
        report.ok = (all(p.record_line is not None for p in report.problems)
                     and not report.unacknowledged)
        if not reconciled:  # otherwise the writer already said so, as it repaired
            for w in warnings:
                log.warning("%s", w)
        return report

    def acknowledge(self, lines: Sequence[int | str | tuple[str | None, int]] | None, *,
                    user: str, uid: int, now: datetime | None = None) -> list[RecordedBreak]:
        """Record `audit_break_acknowledged` for the breaks recorded at `lines` (None: every
        one not acknowledged yet); returns them.

        A break is named as verify numbers it: its line in the live file (an int, or `"8"`),
        or `SEGMENT:LINE` for a record in a rotated segment (`"audit.log.20260826T101500:8"`;
        the stamp alone also names the segment), or a (segment or None, line) pair. Every
        file along the seams is read. UsageError when that acknowledges nothing: no break
        waiting, a number that holds no `audit_chain_broken` entry, or one already
        acknowledged.
        """
        wanted = None if lines is None else [self._break_ref(x) for x in lines]
        self._restore_before_verify()  # a lost seam first: the segments hold breaks too
        with self._locked() as lock_fd:
            ledger = self._full_ledger()
            recorded = ledger.resolved()
            if wanted is None:
                targets = [b for b in recorded if b.acknowledged is None]
                if not targets:
                    raise UsageError(
                        "nothing to acknowledge: " + (
                            f"all {len(recorded)} recorded break"
                            f"{'s are' if len(recorded) != 1 else ' is'} acknowledged already"
                            if recorded else "the audit log records no break"))
            else:
                by_ref = {(b.record_segment, b.record_line): b for b in recorded}
                targets = []
                for ref in wanted:
                    found = by_ref.get(ref)
                    if found is None:
                        listed = ", ".join(b.number for b in recorded
                                           if b.acknowledged is None)
                        where = (f"line {ref[1]} of {self.path}" if ref[0] is None
                                 else f"line {ref[1]} of segment {ref[0]}")
                        raise UsageError(
                            f"no recorded break at {where}; "
                            + (f"breaks waiting for acknowledgement: {listed}" if listed
                               else "no break is waiting for acknowledgement"))
                    if found.acknowledged is not None:
                        ack = found.acknowledged
                        raise UsageError(
                            f"the break recorded at {_at(*ref)} was already acknowledged by "
                            f"{_who(ack.user, ack.uid)} at {ack.at}; nothing to acknowledge")
                    if found not in targets:
                        targets.append(found)
            items: list[tuple[Event, Severity | None]] = [
                (AuditBreakAcknowledged(line=b.record_line, sha256=b.record_sha256,
                                        kind=b.kind, user=user, uid=uid,
                                        segment=b.record_segment), None)
                for b in targets]
            # Written where the records it names were read; the next append rotates.
            self._append_locked(lock_fd, items, now, rotate=False)
        return targets

    def repair(self) -> list[str]:
        """Move a torn tail aside, rebuild a missing or lagging head, write a lost seam again.
        Returns what was done."""
        if self._stat_log("repair") is None and not list_segments(self.path):
            return []
        with self._locked() as lock_fd:
            pending = self._reconcile_locked(lock_fd, None)
            if pending.items:
                # Not announced: the command prints every note itself.
                self._append_locked(lock_fd, [], None, pending=pending, announce=False)
        return pending.notes

    def readers(self, *, newest_first: bool = False) -> Iterator[tuple[str | None, BinaryIO]]:
        """Each file of the log along the seams (see `files`), opened for reading in binary,
        oldest first (or newest first): (segment name or None for audit.log, file). Each is
        closed before the next is opened. StateError when one cannot be read."""
        chain = self.files()
        for name, path in (chain if newest_first else reversed(chain)):
            if name is None:
                reader = self.reader()
                if reader is None:
                    continue
            else:
                with _os_errors("read the audit segment", path):
                    reader = open(path, "rb")  # noqa: SIM115
            with reader as fh:
                yield name, fh

    def files(self) -> list[tuple[str | None, Path]]:
        """The files of the log along the seams, newest first: (None, audit.log), then
        (segment name, path) for each rotated segment a seam leads to and that is on disk.

        Stops at a seam whose segment is missing, at a file whose first entry is not a seam,
        and at a cycle. Raises StateError when a file cannot be read.
        """
        out: list[tuple[str | None, Path]] = []
        if self._stat_log("read") is None:
            return out
        out.append((None, self.path))
        with self._open_read() as fh:
            seam = _seam_of(first_entry(fh.fileno()), self.path.name)
        seen: set[str] = set()
        while seam is not None and seam.rotated_to not in seen:
            name = seam.rotated_to
            path = self.path.with_name(name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError:
                break
            except OSError as exc:
                raise StateError(f"cannot read the audit segment {path}: "
                                 f"{exc.strerror or exc}") from exc
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    break
                seam = _seam_of(first_entry(fd), self.path.name)
            finally:
                os.close(fd)
            seen.add(name)
            out.append((name, path))
        return out

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

    def _basis(self, files: _HeadFiles, seam: Seam | None) -> _Basis:
        """The head to judge the log against; a lost head record is itself a break (S15.9).

        A head existed when the lock file holds a copy of one (upstream leaves it empty) or
        state/audit.head holds anything at all; the log's own evidence (our bookkeeping
        entries) is weighed after the scan, in _head_problem. `seam` is the live file's
        first entry when it is a seam: a copy that still describes the rotated file (what
        the seam claims) lags across the rotation, it does not lead.
        """
        stored, copy = files.stored, files.copy
        lock_name = self.lock_path.name
        if stored is not None:
            if (copy is not None and _copy_leads(stored, copy)
                    and not (seam is not None and _claims(seam, copy))):
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

    def _head_problem(self, basis: _Basis, files: _HeadFiles, res: ScanResult | None,
                      older: Ledger | None = None) -> Problem | None:
        """The `head` break, if the head record was lost. `older` is the ledger of the
        rotated segments: bookkeeping there shows a head existed as much as in the live file."""
        issue, position = basis.issue, basis.position
        evidence = _evidence(res, older)
        if (issue is None and basis.head is None and files.stored is None and res is not None
                and evidence):
            issue = (f"{self.head_path} and its copy in {self.lock_path.name} are "
                     f"both gone, although the log shows dotagent kept a head ({evidence}): "
                     "entries cut from the end before now cannot be ruled out")
        if issue is None:
            return None
        if position is None:
            position = res.entries if res is not None else 0
        return Problem(line=None, kind="head", detail=issue, position=position,
                       expected_prev_hash=basis.expected, actual_prev_hash=basis.actual,
                       key=break_key("head", position, basis.expected, basis.actual))

    @staticmethod
    def _adopts(basis: _Basis, files: _HeadFiles, res: ScanResult,
                head_problem: Problem | None, older: Ledger | None = None) -> bool:
        """A log that never had a head (an upstream log): adopted, with a notice."""
        return (basis.head is None and files.stored is None and head_problem is None
                and res.entries > 0 and not _evidence(res, older))

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

    def _ledger_after(self, res: ScanResult,
                      ino: tuple[int, int] | None) -> tuple[Ledger, str | None]:
        """The ledger of the lines written after the stretch `res` scanned of the live file
        whose identity was `ino`, and the segment name that file has now when it has been
        rotated meanwhile (then every newer file is read whole). Under the lock."""
        chain = self.files()
        out: list[Ledger] = []
        moved_to: str | None = None
        for name, path in chain:
            with _os_errors("read the audit log", path), open(path, "rb") as fh:
                if ino is None or _inode(fh) == ino:
                    fh.seek(res.complete_end)
                    out.append(read_ledger(fh, first_line=res.line_count + 1, segment=name))
                    moved_to = name
                    break
                out.append(read_ledger(fh, segment=name))
        else:
            # The scanned file is no longer along the seams (or there was none): what the
            # newer files hold is all there is.
            moved_to = None
        ledger = Ledger()
        for part in reversed(out):
            ledger.extend(part)
        return ledger, moved_to

    def _full_ledger(self) -> Ledger:
        """Every break and acknowledgement recorded in the files along the seams, oldest
        first."""
        parts: list[Ledger] = []
        for name, path in self.files():
            with _os_errors("read the audit log", path), open(path, "rb") as fh:
                parts.append(read_ledger(fh, segment=name))
        ledger = Ledger()
        for part in reversed(parts):
            ledger.extend(part)
        return ledger

    def _break_ref(self, value: int | str | tuple[str | None, int]) -> tuple[str | None, int]:
        """(segment or None, line) from what `acknowledge` was given; UsageError if garbled."""
        if isinstance(value, tuple):
            return value
        if isinstance(value, int):
            return None, value
        text = value.strip()
        segment, sep, line = text.rpartition(":")
        if not line.isdigit() or int(line) < 1 or (sep and not segment):
            raise UsageError(f"{value!r} is not a break number: give N (a line of audit.log) "
                             "or SEGMENT:N (a line of a rotated segment), as `dotagent audit "
                             "verify` lists them")
        if not sep:
            return None, int(line)
        stem = self.path.name
        name = segment if segment.startswith(stem + ".") else f"{stem}.{segment}"
        if segment == stem:
            return None, int(line)
        if not is_segment_name(name, stem):
            raise UsageError(f"{segment!r} is not a segment of the audit log (segments are "
                             f"named {stem}.YYYYMMDDTHHMMSS, as `dotagent audit verify` "
                             "lists them)")
        return name, int(line)

    def _live_seam(self) -> Seam | None:
        """The live file's first entry, when it is a valid seam."""
        with self._open_read() as fh, _os_errors("read the audit log", self.path):
            return _seam_of(first_entry(fh.fileno()), self.path.name)

    def _restore_before_verify(self) -> int:
        """With segments on disk and no entry in the live file, write the seam again (as an
        append would) before judging; returns the entries written."""
        if not list_segments(self.path):
            return 0
        st = self._stat_log("read")
        if st is not None:
            with self._open_read() as fh, _os_errors("read the audit log", self.path):
                if _has_entry(fh.fileno(), st.st_size):
                    return 0
        with self._locked() as lock_fd:
            return len(self._append_locked(lock_fd, [], None, announce=False))

    def _append_locked(self, lock_fd: int, items: list[tuple[Event, Severity | None]],
                       now: datetime | None, pending: _Pending | None = None, *,
                       announce: bool = True, rotate: bool = True) -> list[str]:
        """Write what the writer owes, then `items`; rotate first when the live file has
        reached max_bytes. Returns every line written (the seam included), in order.

        rotate=False: `items` are bookkeeping about what the caller just read (verify's
        break records, acknowledgements), written into the file it read, never after a seam
        (their line numbers would then name the wrong file); the next append rotates.
        """
        fd = self._open_log()
        written: list[bytes] = []
        try:
            if pending is None:
                pending = self._reconcile_locked(lock_fd, now, fd=fd)
            head = pending.head
            assert head is not None  # _reconcile_locked always leaves one
            owed, own = list(pending.items), list(items)
            if not owed and not own:
                return []
            if rotate and self._rotation_due(head):
                if owed:
                    # What the writer owes is about the file it found: recorded there, before
                    # that file is rotated away.
                    head = self._write_entries(fd, lock_fd, head, owed, now, written, pending)
                    owed = []
                if own:
                    os.close(fd)
                    fd = -1
                    head = self._rotate(lock_fd, head, now, written)
                    fd = self._open_log()
            if owed or own:
                self._write_entries(fd, lock_fd, head, owed + own, now, written, pending)
        finally:
            if fd >= 0:
                os.close(fd)
        if announce and self.announce is not None:
            for event, severity in pending.items:
                if (severity or event.severity) is Severity.CRITICAL:
                    self.announce(_announcement(event))
        return [line.decode("utf-8") for line in written]

    def _rotation_due(self, head: Head) -> bool:
        """Upstream's rule: the live file has reached the threshold and holds a line."""
        return head.size >= self.max_bytes and head.count >= 1

    def _write_entries(self, fd: int, lock_fd: int, head: Head,
                       items: list[tuple[Event, Severity | None]], now: datetime | None,
                       written: list[bytes], pending: _Pending) -> Head:
        """Chain `items` on `head` with one write and one fsync, then save the head.

        Once written and synced the entries are recorded: a head that cannot be saved then
        is said (an error on stderr), not raised — it lags, as after a crash, and the next
        write repairs it."""
        ts = format_ts(now)
        prev = head.sha256
        rendered: list[bytes] = []
        for event, severity in items:
            line = render_line(event, ts=ts, prev_hash=prev, severity=severity)
            rendered.append(line)
            prev = hash_line(line)
        data = b"\n".join(rendered) + b"\n"
        with _os_errors("append to the audit log", self.path):
            _write_all(fd, data)
            if self._fsync:
                os.fsync(fd)
        new = Head(head.count + len(rendered), prev, head.size + len(data))
        written.extend(rendered)
        try:
            self._save_head(lock_fd, new)
        except StateError as exc:
            names = ", ".join(dict.fromkeys(event.event_type for event, _ in items))
            log.error("recorded %s in the audit log, but could not update its head record "
                      "(%s); the next write to the audit log repairs it", names, exc)
            return new
        if pending.lag is not None:
            log.warning("%s; repaired", pending.lag)
            pending.lag = None
        return new

    def _rotate(self, lock_fd: int, head: Head, now: datetime | None,
                written: list[bytes]) -> Head:
        """Rename the live file to a segment and start a new one with the seam (under the
        lock; `head` describes the live file). Returns the new live file's head.

        A crash after the rename leaves no live file (the next append writes the seam again);
        a crash after the seam leaves the head describing the segment, which the seam claims
        exactly (the next append brings the head forward).
        """
        moment = now if now is not None else datetime.now()
        name = free_segment_name(self.path, moment)
        segment = self.path.with_name(name)
        with _os_errors("read the audit log", self.path), open(self.path, "rb") as fh:
            first = _first_line(fh)
        seam = render_seam(name, entries=head.count, first_ts=first_ts(first),
                           tail=head.sha256, ts=format_ts(moment))
        with _os_errors("rotate the audit log to", segment):
            os.rename(self.path, segment)
            _fsync_dir(self.path.parent)
        with _os_errors("start the new audit log", self.path):
            write_atomic(self.path, seam + b"\n", mode=_MODE)
        log.info("rotated the audit log to %s (%d entries)", name, head.count)
        new = Head(1, hash_line(seam), len(seam) + 1)
        self._save_head(lock_fd, new)
        written.append(seam)
        return new

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
        restored: Head | None = None
        if not _has_entry(fd, complete_end) and list_segments(self.path):
            # No live entry while segments exist: a crash between rotation's rename and its
            # seam, a torn seam, or audit.log removed by hand (UPSTREAM-0.6 §1). Without the
            # seam the next entry would chain to GENESIS and look like a fresh log.
            restored = self._restore_seam(fd, fragment, complete_end, files, now, pending)
            with _os_errors("read the audit log", self.path):
                size = complete_end = os.fstat(fd).st_size
            fragment = b""
        seam = _seam_of(first_entry(fd), self.path.name)
        basis = self._basis(files, seam)
        head = basis.head

        checked = (self._fast_check(fd, head, complete_end, seam)
                   if head is not None and restored is None else None)
        new_head = restored if restored is not None else checked[0] if checked else None
        if checked is not None and head is not None and (checked[1]
                                                         or checked[0].count > head.count):
            if checked[1]:
                pending.lag = ("head record lagged the log across a rotation (an append "
                               "interrupted between the seam and its head update)")
            else:
                lag = checked[0].count - head.count
                pending.lag = (f"head record lagged the log by {lag} "
                               f"entr{'y' if lag == 1 else 'ies'} (an append whose head update "
                               "did not happen: interrupted, or the head could not be written)")
            pending.notes.append(f"{pending.lag}; repaired")
        res: ScanResult | None = None
        older: Ledger | None = None
        if new_head is None:
            # Slow path: head and file disagree (or there is no head yet). Scan everything,
            # record what is wrong, and re-anchor on what the file actually holds.
            with self._open_read() as fh, _os_errors("read the audit log", self.path):
                res = scan(fh, size, _scan_head(head, seam), stem=self.path.name)
            # The log as it is now (every file along the seams) says which breaks it records
            # already, and whether dotagent kept a head for it.
            older = walk(self.path, res, scope="current_segment").ledger if seam else None
            pending.known = (res.ledger.keys() | (older.keys() if older else set())
                             | (pending.known or set()))
        head_problem = self._head_problem(basis, files, res, older)
        if head_problem is not None:
            self._owe_breaks([head_problem], pending)
        if res is not None:
            if self._adopts(basis, files, res, head_problem, older):
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
            crash = head is None or head.size <= complete_end or (
                seam is not None and _claims(seam, head))
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

    def _restore_seam(self, fd: int, fragment: bytes, complete_end: int, files: _HeadFiles,
                      now: datetime | None, pending: _Pending) -> Head | None:
        """Write the seam for the newest segment into the empty live file (`fd`), as a
        rotation would have; record it. Returns the head to continue on when the head
        record vouched for a live file that is gone (a `truncation`, owed to the log);
        None when the ordinary checks can take over (the head lagged across the rotation,
        or there is none)."""
        head = self._basis(files, None).head
        newest = self._newest_segment(head)
        segment = self.path.with_name(newest)
        if fragment:
            # Bytes of a torn seam (or of whatever was being written) are kept, as always.
            side = self._move_fragment(fd, fragment, complete_end, now)
            note = f"moved {len(fragment)} bytes of a torn first line to {side.name}"
            pending.items.append((AuditRepaired(
                reason=f"torn first line moved aside ({len(fragment)} bytes)",
                path=str(side), sha256=hash_line(fragment), line=1), None))
            pending.notes.append(note)
            log.warning("%s", note)
        with _os_errors("read the audit segment", segment):
            entries, first, tail = segment_facts(segment)
        line = render_seam(newest, entries=entries, first_ts=first, tail=tail,
                           ts=format_ts(now))
        with _os_errors("write the seam into the audit log", self.path):
            os.ftruncate(fd, 0)  # only blank lines, if anything, were left
            _write_all(fd, line + b"\n")
            if self._fsync:
                os.fsync(fd)
        note = (f"audit.log held no entry while segment {newest} exists: wrote its seam again "
                "(a crash between rotation's rename and its seam, or audit.log removed)")
        log.warning("%s", note)
        pending.notes.append(note)
        pending.items.append((AuditRepaired(reason=note, path=str(segment), sha256=tail,
                                            line=1), None))
        if head is None or head.count == 0 or (head.count == entries and head.sha256 == tail):
            return None
        seam_hash = hash_line(line)
        self._owe_breaks([Problem(
            line=1, kind="truncation",
            detail=(f"audit.log was missing or empty, but the head record says it held "
                    f"{_entries(head.count)} ending in {head.sha256[:12]}: those entries are "
                    f"gone (the seam for {newest} was written again)"),
            position=0, expected_prev_hash=head.sha256, actual_prev_hash=seam_hash,
            key=break_key("truncation", 0, head.sha256, seam_hash))], pending)
        return Head(1, seam_hash, len(line) + 1)

    def _newest_segment(self, head: Head | None) -> str:
        """The segment the lost seam was for: the one whose last line the head vouches for;
        else the one no other segment's seam names (the tip of the chain); else the newest
        by name. Names alone can mislead: their stamps are local time, which goes back an
        hour when summer time ends."""
        names = list_segments(self.path)
        firsts: dict[str, Seam | None] = {}
        for name in reversed(names):
            path = self.path.with_name(name)
            with _os_errors("read the audit segment", path), open(path, "rb") as fh:
                fd = fh.fileno()
                if head is not None and tail_hash(fd, os.fstat(fd).st_size) == head.sha256:
                    return name
                firsts[name] = _seam_of(first_entry(fd), self.path.name)
        named = {seam.rotated_to for seam in firsts.values() if seam is not None}
        tips = [n for n in names if n not in named]
        return tips[-1] if len(tips) == 1 else names[-1]

    def _fast_check(self, fd: int, head: Head, complete_end: int,
                    seam: Seam | None) -> tuple[Head, bool] | None:
        """(the head after an O(1)/O(lag) check, whether it came across a rotation), or None
        when only a full scan can tell."""
        fits = False
        if complete_end >= head.size:
            with _os_errors("read the audit log", self.path):
                last = _last_line_before(fd, head.size)
            at_head = hash_line(last[1]) if last else GENESIS
            fits = at_head == head.sha256 and not (last is None and head.count != 0)
        if fits:
            if complete_end == head.size:
                return head, False
            start, count, rebased = head.size, head.count, False
        elif seam is not None and _claims(seam, head):
            # The head still describes the rotated file, and the live file's seam claims
            # exactly that file: the head lagged across the rotation. Chain on from the seam.
            start, count, rebased = 0, 0, True
        else:
            return None
        # The file holds more than the head knows: an append whose head update never
        # happened (crash), or an upstream writer. Accept it only if it chains on.
        prev = head.sha256
        with self._open_read() as fh, _os_errors("read the audit log", self.path):
            fh.seek(start)
            remaining = complete_end - start
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
        return Head(count, prev, complete_end), rebased

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
            if ev.segment:
                where += f" of {ev.segment}"
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
                                           line=p.line, detail=p.detail, segment=p.segment),
                          None))
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
                record_line=rec.record_line, record_segment=rec.record_segment)
        out.append(p)
    out.sort(key=lambda p: (p.line or 0, p.kind))
    return out


def _at(segment: str | None, line: int) -> str:
    return f"line {line}" if segment is None else f"line {line} of segment {segment}"


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
            if event.segment:
                where += f" of {event.segment}"
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


# ---------------------------------------------------------------------- rotation helpers
def _claims(seam: Seam, head: Head) -> bool:
    """The seam names exactly the file `head` describes: its entry count and last line."""
    return head.count >= 1 and seam.entries == head.count and seam.tail_hash == head.sha256


def _scan_head(head: Head | None, seam: Seam | None) -> Head | None:
    """The head to scan the live file against. A head that still describes the rotated file
    (the seam claims it) vouches for nothing in the new one."""
    if head is not None and seam is not None and _claims(seam, head):
        return Head(0, GENESIS, 0)
    return head


def _seam_of(first: bytes | None, stem: str) -> Seam | None:
    return parse_seam(first, stem) if first is not None else None


def _inode(fh: Any) -> tuple[int, int] | None:
    try:
        st = os.fstat(fh.fileno())
    except (OSError, AttributeError, ValueError):  # io.BytesIO has no descriptor
        return None
    return st.st_dev, st.st_ino


def _has_entry(fd: int, end: int) -> bool:
    """Whether the file holds a complete non-blank line before `end` (a line boundary)."""
    return end > 0 and _last_line_before(fd, end) is not None


def _first_line(fh: BinaryIO) -> bytes | None:
    """The first non-blank line of a file (any length), without its newline."""
    for raw in fh:
        if raw.strip():
            return raw[:-1] if raw.endswith(b"\n") else raw
    return None


def _evidence(res: ScanResult | None, older: Ledger | None) -> str:
    """Where the log first shows dotagent's head bookkeeping (`line 7`, `line 7 of
    audit.log.…`), or "" when nowhere: the rotated segments count as much as the live file."""
    if older is not None and older.evidence_line:
        return older.evidence
    if res is not None and res.ledger.evidence_line:
        return res.ledger.evidence
    return ""


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
