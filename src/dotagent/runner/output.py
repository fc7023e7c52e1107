"""A run's output: split into lines, kept as bounded tails, appended to the per-agent log.

The log keeps upstream's header line; output follows in arrival order, stderr lines marked
with `[stderr] ` so the two streams stay apart in one file (S14.18).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from dotagent.private import open_private, private_mkdir
from dotagent.runner.process import Stream

__all__ = ["TAIL_LINES", "OutputCollector"]

TAIL_LINES = 500
MAX_LINE = 64 * 1024
TAIL_LINE_BYTES = 4096
STDERR_MARK = b"[stderr] "


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


class OutputCollector:
    """Receives chunks from `supervise`; echoes them and writes marked lines to the log."""

    def __init__(self, log: BinaryIO | None,
                 echo: Callable[[Stream, bytes], None] | None = None,
                 redact: Callable[[bytes], bytes] | None = None) -> None:
        self._log = log
        self._echo = echo
        self._redact = redact or (lambda b: b)
        self._tails = {"stdout": _Tail(), "stderr": _Tail()}

    def __call__(self, stream: Stream, chunk: bytes) -> None:
        if self._echo is not None:
            self._echo(stream, chunk)
        for line in self._tails[stream].feed(chunk):
            self._write(stream, line)

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
        if self._log is None:
            return
        mark = STDERR_MARK if stream == "stderr" else b""
        self._log.write(mark + self._redact(line) + b"\n")

    def tail(self, stream: Stream) -> str:
        return self._tails[stream].text()

    def dropped(self, stream: Stream) -> int:
        return self._tails[stream].dropped


def open_log(path: Path) -> BinaryIO:
    private_mkdir(path.parent)
    return os.fdopen(open_private(path, os.O_WRONLY | os.O_APPEND), "ab")
