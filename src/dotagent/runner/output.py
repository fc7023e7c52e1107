"""A run's output: split into lines, kept as bounded tails, appended to the per-agent log.

The log keeps upstream's header line; output follows in arrival order, stderr lines marked
with `[stderr] ` so the two streams stay apart in one file (S14.18). The file rotates by size
(`dotagent.state.agentlog`), between lines only.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from dotagent.fserrors import reason, reporting
from dotagent.runner.process import Stream
from dotagent.state.agentlog import (
    DEFAULT_KEEP,
    DEFAULT_MAX_BYTES,
    AgentLogWriter,
    RotationError,
    Span,
)

__all__ = ["SINK_STDOUT_MAX", "TAIL_LINES", "OutputCollector", "RunLog", "StdoutSpool",
           "open_run_log"]

TAIL_LINES = 500
MAX_LINE = 64 * 1024
TAIL_LINE_BYTES = 4096
STDERR_MARK = b"[stderr] "
CUT_MARK = (b"[dotagent] output cut: max_output_mb = %d reached after %d bytes; the rest of "
            b"this run's output is not logged\n")


class _Tail:
    """Splits a stream into lines and keeps the last TAIL_LINES of them.

    Memory and time stay linear whatever the agent prints: a line longer than MAX_LINE bytes
    (say, megabytes without a newline) is cut into MAX_LINE pieces instead of being
    accumulated, and a tail line keeps at most TAIL_LINE_BYTES.
    """

    def __init__(self) -> None:
        self.lines: deque[bytes] = deque(maxlen=TAIL_LINES)
        self.total = 0
        self.partial = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        parts = chunk.split(b"\n")
        complete: list[bytes] = []
        if len(parts) > 1:
            self.partial += parts[0]
            complete.append(bytes(self.partial))
            self.partial.clear()
            complete.extend(parts[1:-1])
        self.partial += parts[-1]
        while len(self.partial) >= MAX_LINE:
            complete.append(bytes(self.partial[:MAX_LINE]))
            del self.partial[:MAX_LINE]
        for line in complete:
            self._keep(line)
        return complete

    def close(self) -> bytes | None:
        if not self.partial:
            return None
        line = bytes(self.partial)
        self.partial.clear()
        self._keep(line)
        return line

    def _keep(self, line: bytes) -> None:
        self.total += 1
        self.lines.append(line[:TAIL_LINE_BYTES].rstrip(b"\r"))

    def text(self) -> str:
        return b"\n".join(self.lines).decode("utf-8", errors="replace")

    @property
    def dropped(self) -> int:
        return self.total - len(self.lines)


class _Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...
    def flush(self) -> object: ...


class OutputCollector:
    """Receives chunks from `supervise`; echoes them and writes marked lines to the log.

    Echoing is best-effort: an echo that raises is switched off for that stream (the error is
    kept in `echo_errors`), and the run, its tails and its log go on.
    """

    def __init__(self, log: _Writable | None,
                 echo: Callable[[Stream, bytes], None] | None = None,
                 redact: Callable[[bytes], bytes] | None = None,
                 max_log_bytes: int | None = None) -> None:
        self._log = log
        # `[limits] max_output_mb`: once this run's output lines would take the log past it,
        # a marker line is written and the rest is not logged (echo and tails go on).
        self._max_log_bytes = max_log_bytes
        self.logged_bytes = 0
        self.cut = False
        self._echo = echo
        self._redact = redact or (lambda b: b)
        self._tails = {"stdout": _Tail(), "stderr": _Tail()}
        self.echo_errors: dict[Stream, BaseException] = {}

    def __call__(self, stream: Stream, chunk: bytes) -> None:
        if self._echo is not None and stream not in self.echo_errors:
            try:
                self._echo(stream, chunk)
            except Exception as exc:  # whatever the terminal does, the run goes on
                self.echo_errors[stream] = exc
        for line in self._tails[stream].feed(chunk):
            self._write(stream, line)
        if self._log is not None:
            # One write(2) per chunk of whole lines: a follower of the log sees them now, and
            # another process appending to the same log interleaves lines, never halves.
            self._log.flush()

    def close(self) -> None:
        for stream, tail in self._tails.items():
            line = tail.close()
            if line is not None:
                self._write(stream, line)  # type: ignore[arg-type]
        if self._log is not None:
            self._log.flush()

    def note(self, text: str) -> None:
        """A line of dotagent's own (start failures, the footer)."""
        if self._log is not None:
            self._log.write(self._redact(text.encode("utf-8")) + b"\n")

    def _write(self, stream: Stream, line: bytes) -> None:
        if self._log is None or self.cut:
            return
        mark = STDERR_MARK if stream == "stderr" else b""
        data = mark + self._redact(line) + b"\n"
        if self._max_log_bytes is not None and \
                self.logged_bytes + len(data) > self._max_log_bytes:
            self.cut = True
            self._log.write(CUT_MARK % (self._max_log_bytes // (1024 * 1024),
                                        self.logged_bytes))
            return
        self.logged_bytes += len(data)
        self._log.write(data)

    def tail(self, stream: Stream) -> str:
        return self._tails[stream].text()

    def dropped(self, stream: Stream) -> int:
        return self._tails[stream].dropped


class _LogFile(Protocol):
    def write(self, data: bytes, /) -> object: ...
    def flush(self) -> object: ...
    def close(self) -> object: ...


def open_log(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
             keep: int = DEFAULT_KEEP) -> AgentLogWriter:
    """The per-agent log for appending whole lines, rotated by size (state/agentlog.py)."""
    return AgentLogWriter(path, max_bytes=max_bytes, keep=keep)


class RunLog:
    """The per-agent log of one run. Once opened it never stops the run: the first write
    that fails is kept in `error` (naming the log and the operation) and later writes are
    dropped, so the run is still finished and recorded."""

    def __init__(self, path: Path, fh: _LogFile) -> None:
        self.path = path
        self._fh: _LogFile | None = fh
        self._file = fh
        self.error: str | None = None

    @property
    def spans(self) -> tuple[Span, ...]:
        """Where this run's lines went: (file name, start, end) per log file, oldest first
        (`dotagent.state.agentlog.Span`); empty for a log that is not rotated by size."""
        spans = getattr(self._file, "spans", ())
        return tuple(spans)

    def write(self, data: bytes) -> None:
        self._do("write to", lambda fh: fh.write(data))

    def flush(self) -> None:
        self._do("write to", lambda fh: fh.flush())

    def close(self) -> None:
        self._do("write to", lambda fh: fh.close())
        if self._fh is not None:
            self._fh = None

    def _do(self, operation: str, action: Callable[[_LogFile], object]) -> None:
        if self._fh is None:
            return
        try:
            action(self._fh)
        except OSError as exc:
            if isinstance(exc, RotationError):
                operation = "rotate"
            self.error = (f"cannot {operation} the log {self.path}: {reason(exc)} (the rest of "
                          "this run's output is not logged)")
            fh, self._fh = self._fh, None
            with contextlib.suppress(OSError):
                fh.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_run_log(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 keep: int = DEFAULT_KEEP) -> RunLog:
    """Open the per-agent log for appending; a failure is a StateError naming the log.

    The log rotates when the next line would take it past `max_bytes` (`[logging]
    agent_log_max_mb`), keeping `keep` old segments (`agent_log_keep`): at the start of a
    run or in the middle of one, always between lines."""
    with reporting("append to the log", path):
        return RunLog(path, open_log(path, max_bytes=max_bytes, keep=keep))


SINK_STDOUT_MAX = 8 * 1024 * 1024


class StdoutSpool:
    """A run's whole stdout, byte for byte, for its `[[on_success]]` sinks (S14.10): kept in
    an unnamed temporary file (gone when closed or when the process dies), never in memory
    while the agent runs. Up to `limit` bytes; beyond it the spool only counts (`overflow`),
    and the sinks are not handed a cut document."""

    def __init__(self, limit: int = SINK_STDOUT_MAX) -> None:
        import tempfile

        self.limit = limit
        self.size = 0
        self.overflow = False
        self._fh: Any = tempfile.TemporaryFile(prefix="dotagent-stdout-")  # noqa: SIM115
        self.error: str | None = None

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.overflow or self._fh is None:
            return
        if self.size > self.limit:
            self.overflow = True
            with contextlib.suppress(OSError):
                self._fh.truncate(0)
            return
        try:
            self._fh.write(chunk)
        except OSError as exc:
            self.error = f"cannot keep stdout for the sinks: {reason(exc)}"
            self.close()

    def read(self) -> bytes | None:
        """The stdout, or None when it was over the limit or could not be kept."""
        if self.overflow or self._fh is None:
            return None
        try:
            self._fh.seek(0)
            data: bytes = self._fh.read()
        except OSError as exc:
            self.error = f"cannot read back stdout for the sinks: {reason(exc)}"
            return None
        return data

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()
