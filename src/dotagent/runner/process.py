"""Spawn one command in its own process group and supervise it to the end.

Guarantees (SPEC S14.9, S14.18):
- never a shell: argv goes to exec as a list;
- at the deadline the whole process group gets SIGTERM, then SIGKILL after the grace period,
  and the run is `timed_out` even if the main process then exits 0;
- when the main process exits, whatever is left in its group gets the same TERM-then-KILL
  treatment, so a background grandchild can neither outlive the run nor keep it waiting by
  holding stdout open;
- output is delivered chunk by chunk as it arrives.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["EXIT_CANNOT_EXECUTE", "EXIT_NOT_FOUND", "EXIT_TIMEOUT", "GRACE_SECONDS",
           "ProcessResult", "SpawnError", "StopRequest", "StoppedBeforeStart",
           "exit_code_for_status", "supervise"]

GRACE_SECONDS = 5.0
EXIT_TIMEOUT = 124
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127
_POLL = 0.05
_POLL_SOON = 0.003

Stream = Literal["stdout", "stderr"]
# A callback that returns True asks for the group to be killed at once (an output cap hit):
# the pipes are still drained to EOF, the callback decides what to keep.
OnOutput = Callable[[Stream, bytes], "bool | None"]


class SpawnError(Exception):
    """The command could not be started; `exit_code` follows the shell's convention."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class StoppedBeforeStart(BaseException):
    """A stop (TERM, INT, HUP) requested before the agent was spawned: the run is abandoned
    at once, and nothing of it is recorded. A BaseException, like KeyboardInterrupt, so that
    no `except Exception` on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StopRequest:
    """Signals that ask dotagent to stop the run it supervises (TERM, INT, HUP).

    While installed, such a signal does not kill dotagent: it is noted, the supervise loop is
    woken through a pipe, and the agent's group is stopped the usual way (TERM, then KILL
    after the grace period; a second signal kills at once). The run is then recorded.

    With `abort_before_start`, a signal that arrives before `commit` (while `run` still checks
    manifests or waits for a lock, before anything of the run is recorded) raises
    StoppedBeforeStart instead, out of whatever blocking call it interrupted: there is no
    agent to stop yet, so the person at the terminal gets their prompt back at once.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self, *, abort_before_start: bool = False) -> None:
        self.signum: int | None = None
        self.count = 0
        self._abort = abort_before_start
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._previous: dict[int, object] = {}

    def fileno(self) -> int:
        return self._r

    def _handle(self, signum: int, frame: object) -> None:
        self.request(signum)
        if self._abort:
            raise StoppedBeforeStart(signum)

    def commit(self) -> None:
        """The run is about to begin (heartbeat, spawn): from here on a stop is handled by
        stopping the agent, and the run is recorded. A stop that was requested before, and
        did not abort already, aborts now."""
        aborting, self._abort = self._abort, False
        if aborting and self.signum is not None:
            raise StoppedBeforeStart(self.signum)

    def request(self, signum: int = signal.SIGTERM) -> None:
        """Ask for the stop from code (the daemon shutting down), as a signal would."""
        self.signum = self.signum or signum
        self.count += 1
        with contextlib.suppress(OSError):
            os.write(self._w, b"\0")

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._r, 512):
                pass

    def __enter__(self) -> StopRequest:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()
        self.close()

    def close(self) -> None:
        """Release the pipe of a request that was never installed as a signal handler."""
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._r = self._w = -1


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int  # shell convention: 124 timeout, 128+N killed by signal N
    returncode: int  # as reported by the OS (negative: killed by that signal)
    timed_out: bool
    duration: float  # seconds, monotonic, spawn to main-process exit
    pid: int
    interrupted_by: int | None = None  # the signal that made dotagent stop the agent


def exit_code_for_status(returncode: int, timed_out: bool) -> int:
    if timed_out:
        return EXIT_TIMEOUT
    if returncode < 0:
        return 128 - returncode
    return returncode


def supervise(
    argv: Sequence[str],
    *,
    executable: str,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    on_output: OnOutput,
    grace: float = GRACE_SECONDS,
    on_spawn: Callable[[int], None] | None = None,
    stop: StopRequest | None = None,
    stdin_devnull: bool = False,
    stdin_data: bytes | None = None,
) -> ProcessResult:
    """Run `argv` (argv[0] as declared, `executable` the resolved path) to completion.

    stdin is inherited (the foreground `run` keeps the terminal) unless `stdin_devnull`
    (the daemon, S15.14) or `stdin_data` (a plugin's payload): those bytes are written
    through the same selector loop, never blocking, and stdin is closed after them — a child
    that never reads them, or exits early, neither hangs nor breaks the supervisor."""
    stdin_arg: int | None = None
    if stdin_data is not None:
        stdin_arg = subprocess.PIPE
    elif stdin_devnull:
        stdin_arg = subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            list(argv),
            executable=executable,
            cwd=cwd,
            env=dict(env),
            stdin=stdin_arg,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
            close_fds=True,
        )
    except FileNotFoundError as exc:
        # The file vanished, or its #! interpreter does not exist.
        raise SpawnError(_not_found_reason(executable, exc), EXIT_NOT_FOUND) from None
    except PermissionError as exc:
        raise SpawnError(f"cannot execute {executable}: {exc.strerror}",
                         EXIT_CANNOT_EXECUTE) from None
    except OSError as exc:
        raise SpawnError(f"cannot execute {executable}: {exc.strerror or exc}",
                         EXIT_CANNOT_EXECUTE) from None
    except ValueError as exc:  # e.g. a NUL in an argument or the environment
        raise SpawnError(f"cannot execute {executable}: {exc}", EXIT_CANNOT_EXECUTE) from None

    started = time.monotonic()
    if on_spawn is not None:
        on_spawn(proc.pid)
    pgid = proc.pid
    assert proc.stdout is not None and proc.stderr is not None
    sel = selectors.DefaultSelector()
    for pipe, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
        os.set_blocking(pipe.fileno(), False)
        sel.register(pipe, selectors.EVENT_READ, name)
    pidfd = _pidfd_open(proc.pid)
    if pidfd is not None:
        sel.register(pidfd, selectors.EVENT_READ, "exit")
    if stop is not None:
        sel.register(stop.fileno(), selectors.EVENT_READ, "stop")
    stops_seen = 0
    pending_in = memoryview(stdin_data or b"")
    if proc.stdin is not None:
        os.set_blocking(proc.stdin.fileno(), False)
        if pending_in:
            sel.register(proc.stdin, selectors.EVENT_WRITE, "stdin")
        else:
            proc.stdin.close()

    deadline = started + timeout
    kill_at: float | None = None  # set once the group has been sent SIGTERM
    drain_until: float | None = None  # the group is gone; stop waiting for pipes then
    killed = False
    timed_out = False
    returncode: int | None = None
    exited_at = started
    open_pipes = 2

    try:
        while True:
            now = time.monotonic()
            if stop is not None and stop.count > stops_seen:
                if stops_seen == 0 and kill_at is None:
                    _signal_group(pgid, signal.SIGTERM)
                    kill_at = now + grace
                elif stops_seen > 0:
                    kill_at = now  # asked twice: no more grace
                stops_seen = stop.count
            if returncode is None:
                code = proc.poll()
                if code is not None:
                    returncode, exited_at = code, now
                elif now >= deadline and not timed_out:
                    timed_out = True
                    _signal_group(pgid, signal.SIGTERM)
                    kill_at = now + grace
            if returncode is not None:
                if _group_alive(pgid):
                    if kill_at is None:
                        _signal_group(pgid, signal.SIGTERM)
                        kill_at = now + grace
                elif open_pipes == 0:
                    break
                elif drain_until is None:
                    # Whatever is still in the pipes arrives at once; a holder outside the
                    # group (a setsid escapee) must not keep the run open.
                    drain_until = now + 1.0
                elif now >= drain_until:
                    break
            if kill_at is not None and now >= kill_at:
                if not killed:
                    _signal_group(pgid, signal.SIGKILL)
                    killed = True
                elif now >= kill_at + grace:
                    break  # unkillable (uninterruptible sleep): give up waiting
            # Just after the main process exits, what is left of its group usually goes
            # within milliseconds (bwrap's init in its pid namespace does): look often then.
            poll = _POLL_SOON if returncode is not None and now - exited_at < 0.2 else _POLL
            wakes = [now + poll] if (returncode is not None or pidfd is None) else []
            if returncode is None and not timed_out:
                wakes.append(deadline)
            if kill_at is not None:
                wakes.append(kill_at if not killed else kill_at + grace)
            if drain_until is not None:
                wakes.append(drain_until)
            for key, _ in sel.select(timeout=max(0.0, min(wakes) - now)):
                if key.data == "exit":
                    sel.unregister(key.fileobj)
                    continue
                if key.data == "stop":
                    assert stop is not None
                    stop.drain()
                    continue
                if key.data == "stdin":
                    assert proc.stdin is not None
                    try:
                        written = os.write(proc.stdin.fileno(), pending_in[:65536])
                    except BlockingIOError:
                        continue
                    except OSError:  # EPIPE: the child closed stdin or exited; fine
                        written = len(pending_in)
                    pending_in = pending_in[written:]
                    if not pending_in:
                        sel.unregister(proc.stdin)
                        with contextlib.suppress(OSError):
                            proc.stdin.close()
                    continue
                try:
                    chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                if chunk:
                    if on_output(key.data, chunk) and not killed:
                        _signal_group(pgid, signal.SIGKILL)
                        killed = True
                        kill_at = now
                else:
                    sel.unregister(key.fileobj)
                    open_pipes -= 1
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if returncode is None:
            _signal_group(pgid, signal.SIGKILL)
            returncode = proc.wait()
            exited_at = time.monotonic()

    return ProcessResult(
        exit_code=exit_code_for_status(returncode, timed_out),
        returncode=returncode,
        timed_out=timed_out,
        duration=exited_at - started,
        pid=proc.pid,
        interrupted_by=stop.signum if stop is not None and stops_seen else None,
    )


def _not_found_reason(executable: str, exc: OSError) -> str:
    try:
        with open(executable, "rb") as fh:
            first = fh.readline(512)
    except OSError:
        return f"cannot execute {executable}: {exc.strerror}"
    if first.startswith(b"#!"):
        interpreter = first[2:].strip().split(b" ")[0].decode(errors="replace")
        return f"cannot execute {executable}: its interpreter {interpreter} (from #!) was not found"
    return f"cannot execute {executable}: {exc.strerror}"


def _pidfd_open(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        pass


def _group_alive(pgid: int) -> bool:
    """True while any non-zombie process is in the group.

    `killpg(pgid, 0)` also succeeds for zombies that nobody has reaped yet (orphans waiting
    for init), which would make us wait the full grace for nothing; /proc tells them apart.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc_dir = "/proc"
    try:
        entries = os.listdir(proc_dir)
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc_dir}/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        # fields[0] = state, fields[2] = pgrp
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False
