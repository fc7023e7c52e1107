"""Standard streams that can never crash dotagent (issue 7: closed, full or abandoned output).

`install()` runs first thing in `main()`:
- a standard descriptor (0, 1, 2) that is closed at start is opened onto /dev/null, so that
  neither a file dotagent opens nor an agent's pipe can land on it (`dotagent run x >&-`);
- the interpreter's own `sys.stdout` / `sys.stderr` are replaced by equivalent streams whose
  lowest layer never raises: the first write that fails (EPIPE from a reader that went away,
  ENOSPC from /dev/full, EIO) is remembered, the descriptor is pointed at /dev/null, and
  everything written afterwards is discarded. Python's own flush at exit therefore cannot
  fail either (no "Exception ignored ... BrokenPipeError").

So output is best-effort everywhere and a command always finishes its work; `finish()` then
decides the exit status (docs/cli.md, "Exit status"): a reader going away changes nothing, and
a standard output that could not be written (full, I/O error) turns success into 1 — except
for commands that pass an agent's status through, which report it and keep the agent's.

This module is imported before click and must stay cheap (`--version` goes through it): it
imports only what the interpreter has already loaded at start-up, hence no contextlib.
"""
# ruff: noqa: SIM105 - try/except/pass instead of contextlib.suppress, see above

from __future__ import annotations

import io
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # importing typing would cost `--version` more than all the rest
    from typing import TextIO

__all__ = ["closed_at_start", "failure", "finish", "install", "say"]

_STREAMS = ("stdin", "stdout", "stderr")


class _Sink(io.RawIOBase):
    """Writes to a descriptor; the first failure is remembered and later writes discarded."""

    def __init__(self, fd: int, name: str) -> None:
        super().__init__()
        self._fd = fd
        self.name = name
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        try:
            return os.isatty(self._fd)
        except OSError:
            return False

    def write(self, data: bytes) -> int:  # type: ignore[override]
        size = len(memoryview(data))
        if self.error is not None:
            return size
        while True:
            try:
                return os.write(self._fd, data)
            except BlockingIOError:
                # Someone else made the descriptor non-blocking: wait until it can take more.
                import select

                try:
                    select.select([], [self._fd], [])
                except (OSError, ValueError):
                    pass
            except OSError as exc:
                self.error = exc
                _point_at_devnull(self._fd)
                return size


_sinks: dict[str, _Sink] = {}


def _point_at_devnull(fd: int) -> None:
    try:
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    except OSError:
        pass


_closed_at_start: set[int] = set()


def _reserve(fd: int) -> None:
    try:
        os.fstat(fd)
    except OSError:
        _closed_at_start.add(fd)
        _point_at_devnull(fd)


def closed_at_start(fd: int) -> bool:
    """Whether descriptor `fd` was closed when dotagent started (`>&-`): nobody can ever
    read what is written there (it now leads to /dev/null)."""
    return fd in _closed_at_start


def _tolerant(fd: int, name: str, old: TextIO | None) -> TextIO:
    sink = _sinks[name] = _Sink(fd, f"<{name}>")
    return io.TextIOWrapper(
        io.BufferedWriter(sink),  # type: ignore[type-var]
        encoding=old.encoding if old is not None else "utf-8",
        errors=old.errors if old is not None else "backslashreplace",
        line_buffering=bool(old.line_buffering) if old is not None else name == "stderr",
        write_through=getattr(old, "write_through", False),
    )


def install() -> None:
    """Reserve descriptors 0-2 and make the interpreter's stdout/stderr failure-proof.

    Streams someone else installed (a test runner's capture) are left alone.
    """
    for fd in (0, 1, 2):
        _reserve(fd)
    if sys.stdin is None:
        try:
            sys.stdin = open(0, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        except OSError:
            pass
    for fd, name in ((1, "stdout"), (2, "stderr")):
        current = getattr(sys, name)
        if current is None or (current is getattr(sys, f"__{name}__") and name not in _sinks):
            _flush(current)
            try:
                setattr(sys, name, _tolerant(fd, name, current))
            except (OSError, ValueError):
                pass


def _flush(stream: TextIO | None) -> None:
    try:
        if stream is not None:
            stream.flush()
    except Exception:
        pass


def failure(name: str) -> OSError | None:
    """The write error that silenced standard output or error, if any (after a flush)."""
    _flush(getattr(sys, name))
    sink = _sinks.get(name)
    return sink.error if sink is not None else None


def say(text: str) -> None:
    """Write one of dotagent's own messages to stderr; dropped silently if stderr is dead."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except Exception:
        pass


def finish(code: int, *, agent_status: bool = False) -> int:
    """Flush both streams and return the exit status (see the module docstring)."""
    out_error = failure("stdout")
    failure("stderr")
    if out_error is None or isinstance(out_error, BrokenPipeError) or agent_status:
        return code
    say(f"Error: cannot write to standard output: {out_error.strerror or out_error}\n")
    return code or 1
