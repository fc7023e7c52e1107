"""The daemon's own log (SPEC S12, S14.14), on top of stdlib `logging`.

Lines go to `logs/daemon/dotagent.log.<YYYY-MM-DD>`, one file per **UTC** date (the date of
each line's timestamp), as JSON objects in upstream's shape:

    {"timestamp":"2026-05-19T14:30:00.123456Z","level":"INFO",
     "fields":{"message":"dispatching run","agent":"report"},"target":"dotagent.daemon"}

and as one compact text line each on stderr:

    2026-05-19T14:30:00.123456Z  INFO dotagent.daemon: dispatching run agent=report

Code logs through ordinary loggers under `dotagent` and passes structured fields with
`extra=fields(agent=..., schedule=...)`. `target` is the logger's name. Secret values
registered with `dotagent.redaction` are scrubbed from the message and every string field.

Logging never raises into the caller: a line the file cannot take (a full disk, a removed
directory) is dropped and counted (`DailyFileHandler.dropped`), and when writing works again
a `WARN` line says how many were lost; a closed or broken stderr is ignored. The level comes
from `$DOTAGENT_LOG` when set, else `[logging] level`.

Imported by the daemon only (never by `dotagent --version`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from dotagent import redaction
from dotagent.clock import from_epoch
from dotagent.private import open_private, private_mkdir

__all__ = [
    "ENV_VAR",
    "LEVEL_NAMES",
    "LOGGER_NAME",
    "TRACE",
    "CompactFormatter",
    "DaemonLogging",
    "DailyFileHandler",
    "JsonLineFormatter",
    "StderrHandler",
    "configure",
    "fields",
    "log_file_name",
    "parse_level",
    "resolve_level",
]

ENV_VAR = "DOTAGENT_LOG"
LOGGER_NAME = "dotagent"
TRACE = 5
OFF = logging.CRITICAL + 10
logging.addLevelName(TRACE, "TRACE")

LEVEL_NAMES: tuple[str, ...] = ("error", "warn", "info", "debug", "trace", "off")
_LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO,
           "debug": logging.DEBUG, "trace": TRACE, "off": OFF}


def parse_level(text: str) -> tuple[str | None, bool]:
    """The level named by `text` and whether it was simplified, or (None, False).

    Case and the spelling "warning" are accepted as they are. Upstream's Rust filter
    directives (`"info,hyper=warn"`) give their bare level (the last one; `info` when only
    per-target ones are written) and True: per-target levels do not exist here."""
    value = text.strip().lower()
    value = "warn" if value == "warning" else value
    if value in _LEVELS:
        return value, False
    if "," not in value and "=" not in value:
        return None, False
    bare = [p.strip() for p in value.split(",") if p.strip() and "=" not in p]
    bare = ["warn" if b == "warning" else b for b in bare]
    level = bare[-1] if bare else "info"
    return (level, True) if level in _LEVELS else (None, False)


def resolve_level(env: Mapping[str, str], config_level: str) -> tuple[int, str | None]:
    """The `logging` level to use and, when `$DOTAGENT_LOG` was not usable as written, a
    warning to log. `$DOTAGENT_LOG` (non-empty) wins over `config_level` (already validated
    by config.py); a value that names no level is ignored with the warning."""
    raw = env.get(ENV_VAR, "")
    if raw.strip():
        level, simplified = parse_level(raw)
        if level is None:
            return _LEVELS.get(config_level, logging.INFO), (
                f"${ENV_VAR}={raw!r} names no log level (expected one of "
                f"{', '.join(LEVEL_NAMES)}); using [logging] level {config_level!r}")
        note = (f"${ENV_VAR}={raw!r}: per-target filter directives are not supported; using "
                f"{level!r} for everything") if simplified else None
        return _LEVELS[level], note
    return _LEVELS.get(config_level, logging.INFO), None


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a logging call: `log.info("running agent", extra=fields(agent=name))`."""
    return {"fields": values}


def log_file_name(date_iso: str) -> str:
    """The daemon log's file name for a UTC date `YYYY-MM-DD`."""
    return f"dotagent.log.{date_iso}"


# -- formatting ---------------------------------------------------------------------------
def _level_name(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARN"
    if levelno >= logging.INFO:
        return "INFO"
    if levelno >= logging.DEBUG:
        return "DEBUG"
    return "TRACE"


def _timestamp(record: logging.LogRecord) -> str:
    # from_epoch does not go through gmtime(): a leap-second $TZ cannot shift it.
    moment = from_epoch(record.created)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}Z"


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redaction.redact(value)
    if isinstance(value, Mapping):
        return {str(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redaction.redact(str(value))


def _record_fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any]:
    out: dict[str, Any] = {"message": redaction.redact(record.getMessage())}
    extra = getattr(record, "fields", None)
    if isinstance(extra, Mapping):
        for key, value in extra.items():
            if key != "message":
                out[str(key)] = _scrub(value)
    if record.exc_info:
        out["error"] = redaction.redact(formatter.formatException(record.exc_info))
    return out


class JsonLineFormatter(logging.Formatter):
    """One compact JSON object per record, keys in upstream's order (no trailing newline)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"timestamp": _timestamp(record), "level": _level_name(record.levelno),
                "fields": _record_fields(record, self), "target": record.name}
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str)


def _shown(value: Any) -> str:
    if isinstance(value, str):
        plain = value and not any(c.isspace() or c in "\"'=\\" for c in value)
        return value if plain else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, default=str)


class CompactFormatter(logging.Formatter):
    """`<timestamp> <LEVEL> <target>: <message> key=value …` (like tracing's compact form)."""

    def format(self, record: logging.LogRecord) -> str:
        data = _record_fields(record, self)
        message = data.pop("message")
        error = data.pop("error", None)
        parts = [f"{_timestamp(record)} {_level_name(record.levelno):>5} {record.name}: "
                 f"{message}"]
        parts += [f"{key}={_shown(value)}" for key, value in data.items()]
        text = " ".join(parts)
        return f"{text}\n{error}" if error else text


# -- handlers ---------------------------------------------------------------------------
class DailyFileHandler(logging.Handler):
    """Appends each record to `<directory>/dotagent.log.<UTC date of the record>`.

    Files are opened on first use (0600; the directory 0700) and switched whenever a record's
    date differs from the open file's, so a line is always in its own date's file. Each line
    is one `write(2)`; a line cut short by a full disk is terminated before the next one, so
    one bad line never merges into another. Never raises: failures are counted in `dropped`
    and reported by a WARN line once writing works again.
    """

    def __init__(self, directory: Path, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.directory = directory
        self.dropped = 0  # lines lost since the handler was made
        self._unreported = 0
        self._fd: int | None = None
        self._date: str | None = None
        self._torn = False
        self.setFormatter(JsonLineFormatter())

    @property
    def current_file(self) -> Path | None:
        return None if self._date is None else self.directory / log_file_name(self._date)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            date = from_epoch(record.created).date().isoformat()
            self._write(date, line)
        except Exception:  # whatever goes wrong, logging must not break the daemon
            self.dropped += 1
            self._unreported += 1
            return
        if self._unreported:
            self._report_drops(record)

    def _report_drops(self, after: logging.LogRecord) -> None:
        lost = self._unreported
        note = logging.getLogger(after.name).makeRecord(
            after.name, logging.WARNING, __file__, 0, "daemon log lines were lost", (), None,
            extra=fields(count=lost, reason="the log file could not be written"))
        note.created = after.created
        try:
            self._write(from_epoch(note.created).date().isoformat(), self.format(note))
        except Exception:
            return  # still failing: the count goes on growing and is reported later
        self._unreported -= lost

    def _write(self, date: str, line: str) -> None:
        if date != self._date or self._fd is None:
            self._open(date)
        assert self._fd is not None
        data = (("\n" if self._torn else "") + line + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except OSError:
                if len(view) != len(data):
                    self._torn = True
                raise
            view = view[written:]
        self._torn = False

    def _open(self, date: str) -> None:
        self._close_fd()
        private_mkdir(self.directory)
        self._fd = open_private(self.directory / log_file_name(date),
                                os.O_WRONLY | os.O_APPEND)
        self._date = date
        self._torn = False

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        self.acquire()
        try:
            self._close_fd()
        finally:
            self.release()
        super().close()

    def handleError(self, record: logging.LogRecord) -> None:
        self.dropped += 1


class StderrHandler(logging.Handler):
    """The compact text copy. `stream` defaults to whatever `sys.stderr` is at each record;
    a missing, closed or broken stream is ignored (counted in `dropped`)."""

    def __init__(self, stream: TextIO | None = None, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._stream = stream
        self.dropped = 0
        self.setFormatter(CompactFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = self._stream if self._stream is not None else sys.stderr
            if stream is None:
                return
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.dropped += 1

    def handleError(self, record: logging.LogRecord) -> None:
        self.dropped += 1


# -- set-up ---------------------------------------------------------------------------------
@dataclass
class DaemonLogging:
    """What `configure` attached; `close()` detaches and closes it (idempotent)."""

    logger: logging.Logger
    file: DailyFileHandler
    stderr: StderrHandler | None

    def close(self) -> None:
        for handler in (self.file, self.stderr):
            if handler is not None:
                self.logger.removeHandler(handler)
                handler.close()


def configure(home_root: Path, *, level: int = logging.INFO, file_format: str = "json",
              stderr: TextIO | bool | None = True) -> DaemonLogging:
    """Send the `dotagent` loggers to the daemon's log files and to stderr.

    `home_root` is `$DOTAGENT_HOME`; files go to `<home_root>/logs/daemon/`. `level` is a
    `logging` level (see `resolve_level`). `file_format` is `[logging] format`: `json` (the
    default, upstream's shape) or `text` (the compact form in the file too). `stderr`: True
    for `sys.stderr`, a stream, or False/None for no copy. The `dotagent` logger stops
    propagating to the root logger, so nothing is printed twice. Creates nothing until the
    first line is logged; never raises for an unwritable directory (lines are counted as
    dropped)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    logger.propagate = False
    file_handler = DailyFileHandler(home_root / "logs" / "daemon")
    if file_format == "text":
        file_handler.setFormatter(CompactFormatter())
    logger.addHandler(file_handler)
    stderr_handler: StderrHandler | None = None
    if stderr is not False and stderr is not None:
        stderr_handler = StderrHandler(None if stderr is True else stderr)
        logger.addHandler(stderr_handler)
    return DaemonLogging(logger, file_handler, stderr_handler)
