"""The one way dotagent calls a plugin (SPEC S4.2): `invoke(name, verb, payload, ...)`.

Bounded in every direction, and it never raises for anything the plugin does:
- the plugin runs in its own process group through `runner.process.supervise` (the one
  supervisor); its stdin is written by the same selector loop, so a plugin that never reads
  it, or exits at once, cannot hang us;
- at the deadline the group gets TERM, then KILL after the grace:
  `plugin <p>.<verb> exceeded <n>s — killed`;
- stdout is kept up to MAX_STDOUT (1 MiB); one byte more and the group is killed and the
  rest is read and dropped: `plugin <p>.<verb> printed more than 1 MiB on stdout — killed`;
- stderr (the plugin's log) is kept as a bounded tail;
- non-zero exit: `plugin <p> failed (exit <c>): <stderr tail>` (stdout ignored, upstream);
- stdout that is not exactly one JSON object, or an `ok` that is not a bool: a failure naming
  the problem.
Every message goes through `redaction.redact`: a plugin echoing a secret does not leak it
into the audit log or a terminal.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotagent import redaction
from dotagent.paths import Home
from dotagent.plugins import protocol
from dotagent.plugins.protocol import Verb
from dotagent.plugins.resolve import not_found_message, resolve_plugin
from dotagent.runner.process import GRACE_SECONDS, SpawnError, StopRequest, Stream, supervise

__all__ = ["MAX_STDOUT", "STDERR_TAIL", "PluginResult", "format_seconds", "invoke"]

MAX_STDOUT = 1024 * 1024
STDERR_TAIL = 8 * 1024
# What of the stderr tail goes into a failure message (the audit line stays short).
STDERR_IN_MESSAGE = 2000


@dataclass(frozen=True)
class PluginResult:
    ok: bool
    error: str | None
    data: dict[str, Any] = field(default_factory=dict)
    suggest: str | None = None
    exit_code: int | None = None
    timed_out: bool = False
    path: Path | None = None
    duration: float = 0.0
    stderr: str = ""  # the bounded tail of what the plugin logged


def format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


class _Capture:
    def __init__(self) -> None:
        self.stdout = bytearray()
        self.overflow = False
        self.stderr: deque[bytes] = deque()
        self.stderr_size = 0

    def __call__(self, stream: Stream, chunk: bytes) -> bool:
        if stream == "stdout":
            if self.overflow:
                return False  # drained and dropped while the group dies
            if len(self.stdout) + len(chunk) > MAX_STDOUT:
                self.overflow = True
                self.stdout.clear()
                return True
            self.stdout += chunk
            return False
        self.stderr.append(chunk)
        self.stderr_size += len(chunk)
        while self.stderr_size - len(self.stderr[0]) >= STDERR_TAIL and len(self.stderr) > 1:
            self.stderr_size -= len(self.stderr.popleft())
        return False

    def stderr_tail(self) -> str:
        data = b"".join(self.stderr)[-STDERR_TAIL:]
        return data.decode("utf-8", errors="replace")


def invoke(name: str, verb: Verb, payload: Any | None, *, home: Home,
           env: Mapping[str, str], timeout: float,
           on_spawn: Callable[[int, list[str], str], None] | None = None,
           on_exit: Callable[[int], None] | None = None,
           grace: float = GRACE_SECONDS, stop: StopRequest | None = None) -> PluginResult:
    """Run `dotagent-plugin-<name> <verb>` with `payload` as compact JSON on stdin (`info`
    gets an empty stdin; bytes are sent as they are) and return what it answered.

    `home` is the state the call belongs to (its `plugins/` directory is searched);
    `on_spawn(pid, argv, executable)` / `on_exit(pid)` let the daemon list the process in
    supervisor.json; `stop` (the run's StopRequest) stops the plugin the way it stops the
    agent when the daemon shuts down."""
    started = time.monotonic()
    search_env = {**env, "DOTAGENT_HOME": str(home.root)}
    path = resolve_plugin(name, search_env)
    if path is None:
        return PluginResult(False, not_found_message(name, search_env))
    if verb == "info":
        data: bytes | None = b""
    elif isinstance(payload, (bytes, bytearray)):
        data = bytes(payload)
    else:
        data = protocol.encode(payload)
    argv = [str(path), verb]
    capture = _Capture()
    spawned: list[int] = []

    def spawn_hook(pid: int) -> None:
        spawned.append(pid)
        if on_spawn is not None:
            on_spawn(pid, argv, str(path))

    try:
        try:
            cwd = Path.cwd()
        except OSError:
            cwd = Path("/")
        result = supervise(argv, executable=str(path), cwd=cwd, env=env,
                           timeout=max(0.0, timeout), on_output=capture, grace=grace,
                           on_spawn=spawn_hook, stdin_data=data, stop=stop)
    except SpawnError as exc:
        return _failed(f"plugin {name} could not start: {exc.message}", path, started)
    except (OSError, ValueError) as exc:
        return _failed(f"plugin {name} could not start: {exc}", path, started)
    finally:
        if on_exit is not None and spawned:
            on_exit(spawned[0])
    elapsed = time.monotonic() - started
    stderr = redaction.redact(capture.stderr_tail())
    common: dict[str, Any] = dict(exit_code=result.exit_code, path=path, duration=elapsed,
                                  stderr=stderr)
    if result.timed_out:
        return PluginResult(False, f"plugin {name}.{verb} exceeded "
                                   f"{format_seconds(timeout)}s — killed",
                            timed_out=True, **common)
    if result.interrupted_by is not None and result.exit_code != 0:
        return PluginResult(False, f"plugin {name}.{verb} stopped: dotagent is shutting down",
                            **common)
    if capture.overflow:
        return PluginResult(False, f"plugin {name}.{verb} printed more than 1 MiB on stdout "
                                   "— killed", **common)
    if result.exit_code != 0:
        tail = stderr.strip()[-STDERR_IN_MESSAGE:]
        return PluginResult(False, f"plugin {name} failed (exit {result.exit_code}): {tail}",
                            **common)
    answer = protocol.parse_answer(bytes(capture.stdout), verb)
    if answer.problem is not None:
        return PluginResult(False, f"plugin {name}.{verb}: {answer.problem}",
                            data=answer.data, **common)
    suggest = answer.data.get("suggest")
    suggest = redaction.redact(suggest) if isinstance(suggest, str) else None
    if verb == "info":
        return PluginResult(True, None, data=answer.data, **common)
    ok = bool(answer.data["ok"])
    error = answer.data.get("error")
    error = redaction.redact(error) if isinstance(error, str) else None
    return PluginResult(ok, error, data=answer.data, suggest=suggest, **common)


def _failed(message: str, path: Path, started: float) -> PluginResult:
    return PluginResult(False, redaction.redact(message), path=path,
                        duration=time.monotonic() - started)
