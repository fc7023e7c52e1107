"""The secrets store (SPEC S6): `secrets.env`, read once per load, values kept in memory only.

    path      [secrets].file (absolute) → $DOTAGENT_SECRETS_FILE (absolute) → <home>/secrets.env
    refused   a mode with any group/world bit, a FIFO/device/directory, > 1 MiB, bad UTF-8,
              a line the grammar rejects (`invalid line <n> in <path>: <reason>`)
    op://     `op read --no-newline <ref>` (argv, stdin /dev/null, a timeout, its own process
              group); a failure leaves the key out and counts in `unresolved`

A symlink in place of the file is followed (dotfile managers link `secrets.env` into place);
the mode checked is the target's, which is what protects the bytes. Every loaded value is
registered with `dotagent.redaction`, so no log, audit line, history row or message written
afterwards can carry it. No value, and no part of a line, ever appears in an error or warning:
they name the file, the line number and at most the key.

Callers: the daemon (start and every SIGHUP, keeping the previous store for the "previous
store dropped" rule), `run-now`, `tick`, `daily-summary` (S14.10), `run` when the manifest asks
for `[env] secrets`, and `doctor` (its own copy, no audit).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dotagent import redaction
from dotagent.audit import events
from dotagent.boundedread import MAX_BYTES, NotRegularFile, open_regular
from dotagent.errors import DotagentError

if TYPE_CHECKING:
    from dotagent.audit import AuditLog
    from dotagent.config import Config
    from dotagent.paths import Home

__all__ = ["DEFAULT_FILE_NAME", "OP_TIMEOUT_SECONDS", "LoadCancelled", "SecretStore",
           "SecretsError", "load_secrets", "parse_secrets", "read_store", "secrets_path"]

DEFAULT_FILE_NAME = "secrets.env"
OP_TIMEOUT_SECONDS = 10.0
KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"'}


class LoadCancelled(Exception):
    """The load was called off (the daemon is stopping) while `op` was still reading: the
    `op` process group is killed and nothing is loaded, registered or recorded."""


class SecretsError(DotagentError):
    """The secrets file is refused: its mode, its kind, its size, or a line of it."""

    exit_code = 1
    sysexit = 78  # EX_CONFIG

    def __init__(self, message: str, *, path: Path, line: int | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.reason = reason or message


class SecretStore(Mapping[str, str]):
    """Loaded secrets: a read-only mapping of name → value.

    `path` is the file they came from (None: no file was loaded); `unresolved` counts the
    `op://` references that could not be read; `refused` is why the file was refused (the
    store is then empty); `warnings` are what loading said (duplicate keys, op failures)."""

    def __init__(self, values: Mapping[str, str] | None = None, *, path: Path | None = None,
                 unresolved: int = 0, refused: str | None = None,
                 warnings: tuple[str, ...] = ()) -> None:
        self._values = dict(values or {})
        self.path = path
        self.unresolved = unresolved
        self.refused = refused
        self.warnings = warnings

    @classmethod
    def empty(cls) -> SecretStore:
        return cls()

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def names(self) -> list[str]:
        return sorted(self._values)

    def __repr__(self) -> str:  # never the values
        return (f"SecretStore(path={self.path!s}, names={self.names()}, "
                f"unresolved={self.unresolved})")


# --------------------------------------------------------------------------------------
# Where the file is
# --------------------------------------------------------------------------------------
def secrets_path(home: Home | Path, config: Config | None, env: Mapping[str, str]) -> Path:
    """S6's precedence. A relative `[secrets].file` was already warned about and blanked by
    config.py; a relative `$DOTAGENT_SECRETS_FILE` is ignored the same way (see
    `relative_override`)."""
    configured = config.secrets.file if config is not None else ""
    if configured and os.path.isabs(configured):
        return Path(configured)
    explicit = env.get("DOTAGENT_SECRETS_FILE", "")
    if explicit and os.path.isabs(explicit):
        return Path(explicit)
    root = home if isinstance(home, Path) else home.root
    return root / DEFAULT_FILE_NAME


def relative_override(env: Mapping[str, str]) -> str | None:
    """A warning when `$DOTAGENT_SECRETS_FILE` is set but not absolute (it is ignored)."""
    explicit = env.get("DOTAGENT_SECRETS_FILE", "")
    if explicit and not os.path.isabs(explicit):
        return (f"DOTAGENT_SECRETS_FILE={explicit!r} is not an absolute path; ignored "
                "(secrets are read from the next place in the chain)")
    return None


# --------------------------------------------------------------------------------------
# The grammar
# --------------------------------------------------------------------------------------
def parse_secrets(data: bytes, path: Path) -> tuple[dict[str, str], list[str]]:
    """(values, warnings) from the file's bytes; SecretsError for the first bad line."""
    values: dict[str, str] = {}
    seen: dict[str, int] = {}
    warnings: list[str] = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        def fail(reason: str, number: int = number) -> SecretsError:
            return SecretsError(f"invalid line {number} in {path}: {reason}", path=path,
                                line=number, reason=reason)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise fail("not valid UTF-8") from None
        if "\0" in text:
            # An environment value cannot hold one: the agent's exec would fail later with a
            # misleading "embedded null byte", and a notifier header would be cut there.
            raise fail("contains a NUL byte (a secret cannot hold one)")
        line = text.lstrip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, eq, rest = line.partition("=")
        if not eq:
            raise fail("no '=' (expected KEY=value)")
        key = key.strip()
        if not KEY_RE.fullmatch(key):
            raise fail("the key is not a valid name (letters, digits and _, not starting "
                       "with a digit)")
        value = _value(rest.lstrip(), fail)
        if key in seen:
            warnings.append(f"duplicate key {key} in {path} (lines {seen[key]} and {number}): "
                            "the last one wins")
        seen[key] = number
        values[key] = value
    return values, warnings


def _value(text: str, fail: Callable[[str], SecretsError]) -> str:
    if text.startswith('"'):
        out: list[str] = []
        i = 1
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                if i + 1 >= len(text):
                    raise fail("unterminated double-quoted value")
                nxt = text[i + 1]
                if nxt not in _ESCAPES:
                    shown = repr(nxt)[1:-1] if nxt.isprintable() else f"U+{ord(nxt):04X}"
                    raise fail(f"unsupported escape \\{shown} in a double-quoted value "
                               "(only \\n \\r \\t \\\\ \\\" are allowed)")
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if ch == '"':
                _only_space(text[i + 1:], fail)
                return "".join(out)
            out.append(ch)
            i += 1
        raise fail("unterminated double-quoted value")
    if text.startswith("'"):
        end = text.find("'", 1)
        if end < 0:
            raise fail("unterminated single-quoted value")
        _only_space(text[end + 1:], fail)
        return text[1:end]
    return text.rstrip()


def _only_space(after: str, fail: Callable[[str], SecretsError]) -> None:
    if after.strip():
        raise fail("text after the closing quote (only whitespace may follow it)")


# --------------------------------------------------------------------------------------
# Reading the file
# --------------------------------------------------------------------------------------
def _mode_message(path: Path, mode: int) -> str:
    return (f"insecure permissions on {path}: mode is {mode:04o}, must be owner-only (no "
            f"group/world bits — e.g. 0600). run: chmod 600 {path}")


def read_store(path: Path, env: Mapping[str, str] | None = None, *,
               op_timeout: float = OP_TIMEOUT_SECONDS,
               cancel: threading.Event | None = None) -> SecretStore:
    """The store in `path`. FileNotFoundError when there is no file (a dangling symlink is a
    SecretsError: the link is there, its target is not); SecretsError for anything refused.
    Does not register, audit or print anything."""
    env = os.environ if env is None else env
    try:
        handle = open_regular(path)  # follows a symlink; never blocks on a FIFO
    except FileNotFoundError:
        if os.path.islink(path):
            raise SecretsError(f"cannot read {path}: it is a symlink to a file that does not "
                               "exist", path=path) from None
        raise
    except NotRegularFile as exc:
        raise SecretsError(f"cannot read {path}: it is {exc.kind}, not a file",
                           path=path) from None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise FileNotFoundError(errno.ENOENT, "no such file", str(path)) from None
        raise SecretsError(f"cannot read {path}: {exc.strerror or exc}", path=path) from None
    with handle:
        mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        if mode & 0o077:
            raise SecretsError(_mode_message(path, mode), path=path)
        try:
            data = handle.read(MAX_BYTES + 1)
        except OSError as exc:
            raise SecretsError(f"cannot read {path}: {exc.strerror or exc}",
                               path=path) from None
    if len(data) > MAX_BYTES:
        raise SecretsError(f"cannot read {path}: larger than 1 MiB (a secrets file is a few "
                           "lines)", path=path)
    values, warnings = parse_secrets(data, path)
    unresolved = 0
    for key in list(values):
        if is_op_reference(values[key]):
            resolved, why = _op_read(values[key], env, op_timeout, cancel)
            if resolved is None:
                del values[key]
                unresolved += 1
                warnings.append(f"secret {key} in {path}: the 1Password reference could not "
                                f"be read ({why}); {key} is left out")
            else:
                values[key] = resolved
    return SecretStore(values, path=path, unresolved=unresolved, warnings=tuple(warnings))


def is_op_reference(value: str) -> bool:
    """`op://vault/item/field`: at least two `/` after the scheme."""
    return value.startswith("op://") and value[len("op://"):].count("/") >= 2


def _op_read(ref: str, env: Mapping[str, str], timeout: float,
             cancel: threading.Event | None = None) -> tuple[str | None, str]:
    """(the value, "") or (None, why). The child gets its own process group, killed whole at
    the deadline, so a hanging `op` (or one waiting on a desktop unlock prompt) costs at most
    `timeout` seconds and leaves nothing behind. `cancel` set meanwhile kills it the same
    way and raises LoadCancelled (within a fifth of a second)."""
    if cancel is not None and cancel.is_set():
        raise LoadCancelled
    op = shutil.which("op", path=env.get("PATH", os.defpath))
    if op is None:
        return None, "the 1Password CLI `op` is not on PATH"
    try:
        proc = subprocess.Popen([op, "read", "--no-newline", ref], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=dict(env), start_new_session=True, close_fds=True)
    except OSError as exc:
        return None, f"cannot run {op}: {exc.strerror or exc}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = max(0.0, deadline - time.monotonic())
            try:
                out, _ = proc.communicate(timeout=left if cancel is None else min(0.2, left))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline or (cancel is not None and cancel.is_set()):
                    raise
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        # Not communicate() again: a process that left op's group (setsid) may hold the
        # pipe open for ever. Close our end and reap op itself.
        if proc.stdout is not None:
            proc.stdout.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if cancel is not None and cancel.is_set():
            raise LoadCancelled from None
        return None, f"op did not answer within {timeout:g} s"
    if proc.returncode != 0:
        return None, f"op exited {proc.returncode}"
    try:
        value = out.decode("utf-8")
    except UnicodeDecodeError:
        return None, "op printed something that is not UTF-8"
    if "\0" in value:
        return None, "op printed a NUL byte"
    return value, ""


# --------------------------------------------------------------------------------------
# Loading, with audit
# --------------------------------------------------------------------------------------
def load_secrets(home: Home | Path, config: Config | None, env: Mapping[str, str] | None = None,
                 *, audit: AuditLog | None = None, say: Callable[[str], None] | None = None,
                 previous: SecretStore | None = None,
                 op_timeout: float = OP_TIMEOUT_SECONDS,
                 audit_loaded: bool = True,
                 cancel: threading.Event | None = None) -> SecretStore:
    """Load the store, register its values for redaction, audit the outcome (when `audit`)
    and tell `say` (lines ending in a newline). Never raises for the file's content: a
    refused file gives an empty store whose `refused` says why.

    `previous`: the store this load replaces (the daemon's SIGHUP). When it came from a file,
    a failure says `; previous store dropped`, and a vanished file is reported.

    `audit_loaded` false: a successful load is not audited (a foreground command loads the
    store for one run; a `tick` from cron every minute would otherwise add a
    `secrets_loaded` line each time). A refusal is always audited.

    `cancel` (the daemon is stopping): see LoadCancelled, which this lets through."""
    env = os.environ if env is None else env
    speak = say or (lambda text: None)
    path = secrets_path(home, config, env)
    note = relative_override(env)
    if note is not None:
        speak(f"[dotagent] warning: {note}\n")
    had_store = previous is not None and previous.path is not None

    def record(event: events.Event) -> None:
        if audit is None:
            return
        try:
            audit.append(event)
        except (OSError, DotagentError) as exc:
            speak(f"[dotagent] error: could not record {event.event_type} in the audit log: "
                  f"{exc}\n")

    try:
        store = read_store(path, env, op_timeout=op_timeout, cancel=cancel)
    except FileNotFoundError:
        if had_store:
            reason = "file no longer exists; previous store dropped"
            record(events.SecretsRefused(path=str(path), reason=reason))
            speak(f"[dotagent] error: secrets: {path}: {reason}\n")
            return SecretStore(refused=reason)
        return SecretStore.empty()
    except SecretsError as exc:
        reason = exc.message + ("; previous store dropped" if had_store else "")
        record(events.SecretsRefused(path=str(path), reason=reason))
        speak(f"[dotagent] error: secrets refused: {reason}\n")
        return SecretStore(refused=reason)
    redaction.register_secrets(store.values())
    for warning in store.warnings:
        speak(f"[dotagent] warning: {warning}\n")
    if audit_loaded:
        record(events.SecretsLoaded(path=str(path), key_count=len(store),
                                    unresolved_references=store.unresolved))
    return store
