"""The `agent.toml` model: text in, a validated `Manifest` or a list of located problems out.

Validation is stricter than upstream's code on purpose (SPEC S14.15): ranges are checked, at
least one schedule is required, names and ids must be safe path components. Every problem of a
file is reported at once as `PATH:LINE: FIELD: problem (what is valid)` with 0-based indexes.
Values outside the V7 resource clamps still load, with the clamped value and a warning.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeGuard, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from dotagent._tomllines import LineIndex, deepest_nesting
from dotagent.boundedread import read_bounded
from dotagent.display import printable, quote_name
from dotagent.paths import unsafe_reason
from dotagent.schedule.oncalendar import is_valid_timezone
from dotagent.schedule.windows import ExitPolicy, fixed_delay
from dotagent.schedule.windows import Policy as RetryPolicy

__all__ = [
    "FALLBACK_POLICY",
    "KNOWN_EVENTS",
    "Clamp",
    "CronSchedule",
    "ExpressionSchedule",
    "IntervalSchedule",
    "Limits",
    "LoadResult",
    "LoadedManifest",
    "Manifest",
    "Notifier",
    "PluginRef",
    "Problem",
    "RetryPolicy",
    "Schedule",
    "field_path",
    "load_manifest",
    "parse_manifest",
    "slug_for",
]

# --------------------------------------------------------------------------------------
# Limits (threat model V7) and fallbacks (SPEC S2.6 / S14.2)
# --------------------------------------------------------------------------------------
MAX_RETRIES = 32
MIN_BACKOFF_MINUTES = 1
MIN_TIMEOUT_SECONDS = 1
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
# Beyond ten years a duration is a typo, and datetime arithmetic would overflow on absurd ones.
MAX_MINUTES = 10 * 366 * 24 * 60
MAX_JITTER_SECONDS = 24 * 3600
# Exit statuses dotagent itself gives a run (runner/process.py): 124 timed out, 126 cannot
# execute, 127 not found. A run ending so is never a success, whatever the manifest says.
RESERVED_EXIT_CODES = {124: "a timed-out run", 126: "a command that cannot be executed",
                       127: "a command that was not found"}

KNOWN_EVENTS = (
    "success",
    "attempt_failed",
    "timed_out",
    "preflight",
    "recovered",
    "given_up",
    "daily_summary",
)


FALLBACK_POLICY = RetryPolicy(max_retries=3, retry_backoff_minutes=(5, 15, 30),
                              stale_after_minutes=120)


# --------------------------------------------------------------------------------------
# Field validators (messages follow "value problem (what is valid)")
# --------------------------------------------------------------------------------------
def _in_range(lo: int, hi: int) -> AfterValidator:
    def check(value: int) -> int:
        if not lo <= value <= hi:
            raise PydanticCustomError(
                "out_of_range", "{value} is out of range ({lo}..{hi})",
                {"value": value, "lo": lo, "hi": hi},
            )
        return value

    return AfterValidator(check)


def _safe_name(value: str) -> str:
    reason = unsafe_reason(value)
    if reason is not None:
        raise PydanticCustomError("unsafe_name", "{msg}", {"msg": reason})
    return value


def _network(value: Any) -> Any:
    if value in ("allow", "deny"):
        return value
    if isinstance(value, list) and all(isinstance(h, str) for h in value):
        return value
    raise PydanticCustomError("bad_network", "{msg}", {
        "msg": f"{_show(value)} is not allowed (expected \"allow\", \"deny\" or an array of "
               "host names)"})


def _non_empty(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("empty", "must not be empty", {})
    return value


def _zone_name(value: str) -> str:
    # The rule systemd applies to an expression's zone suffix, so both spellings agree.
    if not is_valid_timezone(value):
        raise PydanticCustomError("bad_zone", "{msg}", {
            "msg": f"{value!r} is not a known time zone (an IANA name such as "
                   "'Europe/Berlin' or 'UTC')"})
    return value


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise PydanticCustomError("nul", "{msg}", {
            "msg": "contains a NUL character (\\u0000), which no program can receive"})
    return value


def _env_name(key: str) -> str:
    # Checked per key, so that every bad name of `[env.extra]` is reported at its own path.
    if not key or "=" in key or "\0" in key:
        raise PydanticCustomError("env_key", "{msg}", {
            "msg": f"{key!r} is not a usable environment variable name (no '=', no NUL, "
                   "not empty)"})
    return key


def _http_url(value: str) -> str:
    # A value built from `${VAR}` is checked once expanded, when it is sent.
    if not value.startswith(("http://", "https://", "${")):
        raise PydanticCustomError("bad_url", "{msg}",
                                  {"msg": f"{value!r} is not an http(s) URL"})
    return value


SafeName = Annotated[str, AfterValidator(_safe_name)]
NonEmpty = Annotated[str, AfterValidator(_non_empty), AfterValidator(_no_nul)]
Arg = Annotated[str, AfterValidator(_no_nul)]
EnvName = Annotated[str, AfterValidator(_env_name)]


def _secret_name(key: str) -> str:
    # The names a secrets.env line may define (SPEC S6's key grammar).
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise PydanticCustomError("secret_name", "{msg}", {
            "msg": f"{key!r} is not a secret name (letters, digits and _, not starting "
                   "with a digit, as in secrets.env)"})
    return key


SecretName = Annotated[str, AfterValidator(_secret_name)]
Minute = Annotated[int, _in_range(0, 59)]
Hour = Annotated[int, _in_range(0, 23)]
Weekday = Annotated[int, _in_range(0, 6)]
Minutes = Annotated[int, _in_range(0, MAX_MINUTES)]
PositiveMinutes = Annotated[int, _in_range(1, MAX_MINUTES)]
PositiveSeconds = Annotated[int, _in_range(1, MAX_MINUTES * 60)]
Retries = Annotated[int, _in_range(0, MAX_RETRIES)]
JitterSeconds = Annotated[int, _in_range(0, MAX_JITTER_SECONDS)]
ExitCode = Annotated[int, _in_range(0, 255)]
TimeoutSeconds = Annotated[int, _in_range(MIN_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS)]
ZoneName = Annotated[str, AfterValidator(_zone_name)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]


class _Model(BaseModel):
    # TOML already has types: no coercion of "5" into 5, no bool as int.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


# --------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------
class AgentSection(_Model):
    name: SafeName
    description: str | None = None
    version: str | None = None
    monitor: bool = True
    timeout_seconds: TimeoutSeconds = 1800


class RunSection(_Model):
    command: NonEmpty
    args: list[Arg] = []
    working_dir: Arg | None = None
    # systemd's SuccessExitStatus= and RestartPreventExitStatus=; cross-field rules (no
    # overlap, no 0 in no_retry, no reserved status in success) are in _semantic_errors.
    success_exit_codes: list[ExitCode] = []
    no_retry_exit_codes: list[ExitCode] = []


class EnvSection(_Model):
    inherit: bool = True
    extra: dict[EnvName, Arg] = Field(default_factory=dict)
    # Beyond upstream: these secrets-store values, and only these, go into the agent's env
    # (after `extra`, before AGENT_*). A name the store lacks stops the run (docs/secrets.md).
    secrets: list[SecretName] = []


class Defaults(_Model):
    max_retries: Retries | None = None
    retry_backoff_minutes: list[PositiveMinutes] | None = None
    retry_backoff_seconds: list[PositiveSeconds] | None = None  # ours: sub-minute steps
    stale_after_minutes: Minutes | None = None
    jitter_seconds: JitterSeconds | None = None  # calendar schedules only


class _ScheduleBase(_Model):
    id: SafeName
    args: list[Arg] = []
    max_retries: Retries | None = None
    retry_backoff_minutes: list[PositiveMinutes] | None = None
    retry_backoff_seconds: list[PositiveSeconds] | None = None  # ours: sub-minute steps
    stale_after_minutes: Minutes | None = None
    jitter_seconds: JitterSeconds | None = None  # an error on interval schedules
    on_battery: Literal["run", "defer"] | None = None  # overrides config.toml [power]

    @property
    def slug(self) -> str:
        return slug_for(self.args)


class CronSchedule(_ScheduleBase):
    """`weekdays` 0=Sunday..6=Saturday × `hours` at `minute`. An empty list means "any"
    (upstream's documented meaning; see docs/decisions.md)."""

    type: Literal["cron"]
    weekdays: list[Weekday]
    hours: list[Hour]
    minute: Minute = 0
    timezone: ZoneName | None = None


class IntervalSchedule(_ScheduleBase):
    type: Literal["interval"]
    interval_minutes: PositiveMinutes
    # Accepted only so that it can be reported as an error: an interval has no wall clock.
    timezone: str | None = None


class ExpressionSchedule(_ScheduleBase):
    """A systemd OnCalendar expression, evaluated in-process on every OS."""

    type: Literal["expression"]
    expression: NonEmpty
    timezone: ZoneName | None = None


Schedule = Annotated[
    Union[CronSchedule, IntervalSchedule, ExpressionSchedule],  # noqa: UP007
    Field(discriminator="type"),
]
SCHEDULE_TYPES: dict[str, type[_ScheduleBase]] = {
    "cron": CronSchedule, "interval": IntervalSchedule, "expression": ExpressionSchedule,
}


class PluginRef(_Model):
    plugin: SafeName
    config: Any = None
    events: list[str] = []
    timeout_seconds: TimeoutSeconds | None = None


class _NotifierBase(_Model):
    events: list[str] = []
    # Available on every driver (upstream: imessage only); 0 = off. See docs/notifiers.md.
    rate_limit_minutes: Minutes = 0
    # Bounds one delivery (default 10 s; the plugin driver's default is S4's 15 s).
    timeout_seconds: Annotated[int, _in_range(1, 300)] | None = None


class DesktopNotifier(_NotifierBase):
    driver: Literal["desktop"]
    title: str | None = None
    subtitle: str | None = None
    sound: str | None = None
    urgency: str | None = None
    icon: str | None = None
    expire_ms: int | None = None


class SlackNotifier(_NotifierBase):
    driver: Literal["slack"]
    webhook_url: HttpUrl
    channel: str | None = None
    username: str | None = None
    icon_emoji: str | None = None


class NtfyNotifier(_NotifierBase):
    driver: Literal["ntfy"]
    topic: NonEmpty
    base_url: HttpUrl = "https://ntfy.sh"
    token: str | None = None
    priority: str | int | None = None
    title: str | None = None
    tags: list[str] = []


class PushoverNotifier(_NotifierBase):
    driver: Literal["pushover"]
    token: NonEmpty
    user: NonEmpty
    priority: int | str | None = None
    title: str | None = None
    base_url: HttpUrl = "https://api.pushover.net"


class TelegramNotifier(_NotifierBase):
    driver: Literal["telegram"]
    bot_token: NonEmpty
    chat_id: str | int
    parse_mode: Literal["MarkdownV2", "HTML", "Markdown"] | None = None
    disable_notification: bool = False
    base_url: HttpUrl = "https://api.telegram.org"


class IMessageNotifier(_NotifierBase):
    driver: Literal["imessage"]
    to: NonEmpty


class PluginNotifier(_NotifierBase):
    driver: Literal["plugin"]
    name: SafeName
    config: Any = None


class EmailNotifier(_NotifierBase):
    driver: Literal["email"]
    host: NonEmpty
    port: Annotated[int, _in_range(1, 65535)] = 587
    username: str | None = None
    password: str | None = None
    from_: Annotated[NonEmpty, Field(alias="from")]
    to: Annotated[list[NonEmpty], Field(min_length=1)]
    starttls: bool | None = None  # None: when the server offers it
    ca_file: str | None = None  # trust this CA bundle instead of the system's


class WebhookNotifier(_NotifierBase):
    driver: Literal["webhook"]
    url: HttpUrl
    secret: str | None = None


class PingNotifier(_NotifierBase):
    driver: Literal["ping"]
    url: HttpUrl


Notifier = Annotated[
    Union[  # noqa: UP007
        DesktopNotifier, SlackNotifier, NtfyNotifier, PushoverNotifier, TelegramNotifier,
        IMessageNotifier, PluginNotifier, EmailNotifier, WebhookNotifier, PingNotifier,
    ],
    Field(discriminator="driver"),
]
NOTIFIER_TYPES: dict[str, type[_Model]] = {
    "desktop": DesktopNotifier, "slack": SlackNotifier, "ntfy": NtfyNotifier,
    "pushover": PushoverNotifier, "telegram": TelegramNotifier,
    "imessage": IMessageNotifier, "plugin": PluginNotifier, "email": EmailNotifier,
    "webhook": WebhookNotifier, "ping": PingNotifier,
}


class Security(_Model):
    allowed_commands: list[str] = []
    allowed_plugins: list[str] = []
    network: Annotated[Literal["allow", "deny"] | list[str], BeforeValidator(_network)] = "allow"
    filesystem_writable: list[str] = []
    env_passthrough: list[str] = []


# Ours, not upstream's: per-run resource limits (threat model V7; docs/manifest.md
# "[limits]"). Below the minimum or above the maximum a value is clamped with a warning
# (_apply_clamps); zero, negative or non-integer values are errors.
LIMIT_RANGES: dict[str, tuple[int, int]] = {
    "memory_mb": (16, 1024 * 1024),         # 16 MiB .. 1 TiB
    "cpu_seconds": (1, MAX_TIMEOUT_SECONDS),
    "nofile": (16, 1024 * 1024),
    "max_output_mb": (1, 1024 * 1024),
}
MAX_NICE = 19


def _positive(value: int) -> int:
    if value < 1:
        raise PydanticCustomError("out_of_range", "{value} is not a limit (a whole number "
                                  "of at least 1; leave the key out for no limit)",
                                  {"value": value})
    return value


Positive = Annotated[int, AfterValidator(_positive)]


class Limits(_Model):
    memory_mb: Positive | None = None
    cpu_seconds: Positive | None = None
    nofile: Positive | None = None
    nice: Annotated[int, _in_range(0, MAX_NICE)] | None = None
    max_output_mb: Positive | None = None

    def declared(self) -> dict[str, int]:
        """The limits that are set, in manifest order."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Manifest(_Model):
    agent: AgentSection
    run: RunSection
    env: EnvSection = Field(default_factory=EnvSection)
    defaults: Defaults = Field(default_factory=Defaults)
    schedules: list[Schedule]
    preflight: list[PluginRef] = []
    on_success: list[PluginRef] = []
    on_failure: list[PluginRef] = []
    notifiers: list[Notifier] = []
    security: Security | None = None
    limits: Limits | None = None

    @property
    def name(self) -> str:
        return self.agent.name

    def schedule(self, schedule_id: str) -> CronSchedule | IntervalSchedule | ExpressionSchedule:
        for sched in self.schedules:
            if sched.id == schedule_id:
                return sched
        raise KeyError(schedule_id)

    def policy(self, sched: _ScheduleBase, *, salt: bytes) -> RetryPolicy:
        """Schedule override, then `[defaults]`, then the fallback (S2.6); with the agent's
        exit-status policy and the schedule's fixed delay. `salt` is
        `machineid.jitter_salt(home)`: every caller that schedules must pass the same one, or
        they would disagree on when a jittered schedule fires."""
        d, fb = self.defaults, FALLBACK_POLICY
        # The closest table that sets a backoff (in either unit) decides it.
        minutes, seconds = (sched.retry_backoff_minutes, sched.retry_backoff_seconds) \
            if sched.retry_backoff_minutes or sched.retry_backoff_seconds \
            else (d.retry_backoff_minutes, d.retry_backoff_seconds)
        return RetryPolicy(
            max_retries=_first(sched.max_retries, d.max_retries, fb.max_retries),
            retry_backoff_minutes=tuple(minutes) if minutes else fb.retry_backoff_minutes,
            retry_backoff_seconds=tuple(seconds) if seconds else (),
            stale_after_minutes=_first(sched.stale_after_minutes, d.stale_after_minutes,
                                       fb.stale_after_minutes),
            exits=self.exit_policy(),
            delay=fixed_delay(salt, self.name, sched.id, self.jitter_seconds(sched)),
        )

    def jitter_seconds(self, sched: _ScheduleBase) -> int:
        """The schedule's `jitter_seconds`, else `[defaults]`'s; 0 for intervals (they count
        from the last start, which already carries any phase)."""
        if isinstance(sched, IntervalSchedule):
            return 0
        return _first(sched.jitter_seconds, self.defaults.jitter_seconds, 0)

    def exit_policy(self) -> ExitPolicy:
        """What the agent's exit statuses mean (`[run]`); the one success test."""
        return ExitPolicy(frozenset(self.run.success_exit_codes),
                          frozenset(self.run.no_retry_exit_codes))


def _first(*values: int | None) -> int:
    for v in values:
        if v is not None:
            return v
    raise ValueError("no value")  # pragma: no cover - the fallback is never None


# --------------------------------------------------------------------------------------
# Slugs (SPEC S3.1, compatible with upstream)
# --------------------------------------------------------------------------------------
_SLUG_BAD = re.compile(r"[^a-z0-9_-]")
_SLUG_MAX = 128


def slug_for(args: Sequence[str]) -> str:
    """The heartbeat/window key derived from a schedule's args, exactly as upstream does.

    Beyond upstream: a slug longer than 128 characters is cut and suffixed with a hash of the
    full slug, so that it always fits a file name.
    """
    parts = [a.lstrip("-") for a in args]
    parts = [p for p in parts if p]
    if not parts:
        return "default"
    slug = _SLUG_BAD.sub("_", "_".join(parts).lower())
    while "__" in slug:
        slug = slug.replace("__", "_")
    slug = slug.strip("_")
    if not slug:
        return "default"
    if len(slug) > _SLUG_MAX:
        digest = hashlib.sha256(slug.encode()).hexdigest()[:12]
        slug = f"{slug[: _SLUG_MAX - 13]}-{digest}"
    return slug


# --------------------------------------------------------------------------------------
# Problems, clamps and load results
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One located error or warning about a manifest."""

    path: str
    line: int | None
    field: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        # For a terminal: a directory name with a newline or an escape sequence is escaped.
        where = f"{self.path}:{self.line}" if self.line else self.path
        if self.field:
            return printable(f"{where}: {self.field}: {self.message}")
        return printable(f"{where}: {self.message}")

    def sort_key(self) -> int:
        """Problems of a file are listed by line; file-level ones (no line) first."""
        return self.line or 0

    def to_json(self) -> dict[str, Any]:
        # A problem about the whole file has `line` and `field` null, never "".
        return {"path": self.path, "line": self.line, "field": self.field or None,
                "message": self.message, "severity": self.severity}


@dataclass(frozen=True)
class Clamp:
    field: str
    declared: Any
    effective: Any


@dataclass(frozen=True)
class LoadedManifest:
    """A manifest that loaded, with where it came from."""

    path: Path  # agent.toml as discovered (not canonicalised)
    manifest: Manifest
    sha256: str
    warnings: tuple[Problem, ...] = ()
    clamps: tuple[Clamp, ...] = ()
    text: str = field(default="", compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.manifest.agent.name

    def line_of(self, field_path_text: str) -> int | None:
        return self.lines.line_of(_parse_field_path(field_path_text))

    @functools.cached_property
    def lines(self) -> LineIndex:
        # Built on first use: most manifests load without a single located message.
        return LineIndex(self.text)

    @property
    def dir(self) -> Path:
        return self.path.parent

    def working_dir(self) -> Path:
        wd = self.manifest.run.working_dir
        return self.dir if not wd else self.dir / expand_user(wd)


@dataclass
class LoadResult:
    path: Path
    sha256: str
    manifest: Manifest | None = None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    clamps: list[Clamp] = field(default_factory=list)
    text: str = ""
    declared_name: str | None = None  # agent.name as written, even when invalid

    @property
    def ok(self) -> bool:
        return self.manifest is not None and not self.errors

    def loaded(self) -> LoadedManifest:
        assert self.manifest is not None
        return LoadedManifest(self.path, self.manifest, self.sha256, tuple(self.warnings),
                              tuple(self.clamps), self.text)


def expand_user(path: str) -> Path:
    """`~` and `~user` expanded; an unknown user leaves the path as written (it will then
    simply not exist, which is reported where it matters)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        return Path(path)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def field_path(loc: Iterable[str | int]) -> str:
    """('schedules', 1, 'minute') -> 'schedules[1].minute'. Keys that are not bare TOML keys
    are quoted as TOML would (`agent."x.y"`), so a path is unambiguous and on one line."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        key = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
        out += f".{key}" if out else key
    return out


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------
MAX_MANIFEST_BYTES = 1 << 20


def load_manifest(path: Path) -> LoadResult:
    """Read and validate one agent.toml. Never raises for bad content; IO errors surface as
    a problem too, so one unreadable file cannot stop discovery of the others.

    Only a regular file of at most 1 MiB is read, without blocking: a manifest that is a
    FIFO, a device or a link to /dev/zero must not hang or exhaust dotagent.
    """
    try:
        data = _read_bounded(path)
    except OSError as exc:
        result = LoadResult(path=path, sha256="")
        result.errors.append(Problem(str(path), None, "",
                                     f"cannot read: {exc.strerror or exc}"))
        return result
    return parse_manifest(data, path)


def _read_bounded(path: Path) -> bytes:
    return read_bounded(path, MAX_MANIFEST_BYTES)


_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


def parse_manifest(data: bytes, path: Path) -> LoadResult:
    shown = str(path)
    result = LoadResult(path=path, sha256=hashlib.sha256(data).hexdigest())
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = data[: exc.start].count(b"\n") + 1
        result.errors.append(Problem(shown, bad_line, "", "file is not valid UTF-8"))
        return result
    # A UTF-8 byte-order mark is what some Windows editors put first; it is not content.
    text = text.removeprefix("\ufeff")
    try:
        raw = tomllib.loads(text)
    except RecursionError:
        # tomllib gives no position here: point at where the deepest value begins.
        deepest = deepest_nesting(text)
        where, depth = (deepest[0], f" ({deepest[1]} levels)") if deepest else (None, "")
        result.errors.append(Problem(shown, where, "", "TOML syntax error: values are nested "
                                     f"too deeply to be read{depth}"))
        return result
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        line: int | None = None
        m = _TOML_POS.search(msg)
        if m:
            line, msg = int(m.group(1)), f"{msg[: m.start()]} (column {m.group(2)})"
        elif _TOML_END.search(msg):
            line, msg = text.count("\n") + 1, _TOML_END.sub(" (at end of file)", msg)
        result.errors.append(Problem(shown, line, "", f"TOML syntax error: {msg}"))
        return result

    result.text = text
    index: list[LineIndex] = []
    agent_table = raw.get("agent")
    if isinstance(agent_table, dict) and isinstance(agent_table.get("name"), str):
        result.declared_name = agent_table["name"]

    def locate(loc: Sequence[str | int]) -> int | None:
        if not index:
            index.append(LineIndex(text))
        return index[0].line_of(tuple(loc)) or 1

    clamped = _apply_clamps(raw, result.clamps)
    for c in result.clamps:
        loc = _parse_field_path(c.field)
        key = next(str(part) for part in reversed(loc) if isinstance(part, str))
        result.warnings.append(Problem(
            shown, locate(loc), c.field,
            f"{_show(c.declared)} → {_show(c.effective)} (safety limit: {_CLAMP_HINT[key]})",
            "warning"))
    for loc, message in _unknown_keys(raw):
        result.warnings.append(Problem(shown, locate(loc), field_path(loc), message, "warning"))
    for loc, message in _unknown_events(raw):
        result.warnings.append(Problem(shown, locate(loc), field_path(loc), message, "warning"))
    result.warnings.sort(key=Problem.sort_key)

    problems: list[tuple[tuple[str | int, ...], str]] = []
    manifest: Manifest | None = None
    try:
        manifest = Manifest.model_validate(clamped)
    except ValidationError as exc:
        problems.extend(_render_errors(exc, raw))
    problems.extend(_semantic_errors(raw))
    problems.sort(key=lambda p: locate(p[0]) or 0)
    for loc, message in problems:
        result.errors.append(Problem(shown, locate(loc), field_path(loc), message))
    if not result.errors:
        result.manifest = manifest
    return result


def _parse_field_path(text: str) -> tuple[str | int, ...]:
    out: list[str | int] = []
    for name, idx in re.findall(r"([^.\[\]]+)|\[(\d+)\]", text):
        out.append(int(idx) if idx else name)
    return tuple(out)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)


# -- clamps -----------------------------------------------------------------------------
_CLAMP_HINT = {
    "timeout_seconds": f"{MIN_TIMEOUT_SECONDS}..{MAX_TIMEOUT_SECONDS} seconds",
    "max_retries": f"at most {MAX_RETRIES}",
    "retry_backoff_minutes": f"each step at least {MIN_BACKOFF_MINUTES} minute",
    "retry_backoff_seconds": "each step at least 1 second",
    "jitter_seconds": f"at most {MAX_JITTER_SECONDS} seconds (one day)",
    **{key: f"{lo}..{hi}" for key, (lo, hi) in LIMIT_RANGES.items()},
}


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _apply_clamps(raw: dict[str, Any], clamps: list[Clamp]) -> dict[str, Any]:
    """Return a copy of `raw` with the V7 clamps applied, recording each change.

    Negative numbers are left alone: they are errors, not clamps.
    """
    out = dict(raw)

    def clamp_timeout(table: Mapping[str, Any], loc: str) -> dict[str, Any]:
        t = dict(table)
        v = t.get("timeout_seconds")
        if _is_int(v) and v >= 0:
            eff = min(max(v, MIN_TIMEOUT_SECONDS), MAX_TIMEOUT_SECONDS)
            if eff != v:
                clamps.append(Clamp(f"{loc}.timeout_seconds", v, eff))
                t["timeout_seconds"] = eff
        return t

    def clamp_policy(table: Mapping[str, Any], loc: str) -> dict[str, Any]:
        t = dict(table)
        v = t.get("max_retries")
        if _is_int(v) and v > MAX_RETRIES:
            clamps.append(Clamp(f"{loc}.max_retries", v, MAX_RETRIES))
            t["max_retries"] = MAX_RETRIES
        j = t.get("jitter_seconds")
        if _is_int(j) and j > MAX_JITTER_SECONDS:
            clamps.append(Clamp(f"{loc}.jitter_seconds", j, MAX_JITTER_SECONDS))
            t["jitter_seconds"] = MAX_JITTER_SECONDS
        b = t.get("retry_backoff_minutes")
        if isinstance(b, list):
            # Each step on its own: a step below the minimum is raised (a warning) whatever
            # the other steps hold; a negative or non-integer step stays, as an error.
            eff = list(b)
            for i, x in enumerate(b):
                if _is_int(x) and 0 <= x < MIN_BACKOFF_MINUTES:
                    clamps.append(Clamp(f"{loc}.retry_backoff_minutes[{i}]", x,
                                        MIN_BACKOFF_MINUTES))
                    eff[i] = MIN_BACKOFF_MINUTES
            if not b:
                clamps.append(Clamp(f"{loc}.retry_backoff_minutes", b, [MIN_BACKOFF_MINUTES]))
                eff = [MIN_BACKOFF_MINUTES]
            t["retry_backoff_minutes"] = eff
        b = t.get("retry_backoff_seconds")
        if isinstance(b, list):
            eff = list(b)
            for i, x in enumerate(b):
                if _is_int(x) and x == 0:
                    clamps.append(Clamp(f"{loc}.retry_backoff_seconds[{i}]", x, 1))
                    eff[i] = 1
            if not b:
                clamps.append(Clamp(f"{loc}.retry_backoff_seconds", b, [1]))
                eff = [1]
            t["retry_backoff_seconds"] = eff
        return t

    if isinstance(raw.get("agent"), dict):
        out["agent"] = clamp_timeout(raw["agent"], "agent")
    if isinstance(raw.get("limits"), dict):
        lim = dict(raw["limits"])
        for key, (lo, hi) in LIMIT_RANGES.items():
            v = lim.get(key)
            if _is_int(v) and v > 0:
                eff = min(max(v, lo), hi)
                if eff != v:
                    clamps.append(Clamp(f"limits.{key}", v, eff))
                    lim[key] = eff
        out["limits"] = lim
    if isinstance(raw.get("defaults"), dict):
        out["defaults"] = clamp_policy(raw["defaults"], "defaults")
    if isinstance(raw.get("schedules"), list):
        out["schedules"] = [
            clamp_policy(s, f"schedules[{i}]") if isinstance(s, dict) else s
            for i, s in enumerate(raw["schedules"])
        ]
    for hook in ("preflight", "on_success", "on_failure"):
        if isinstance(raw.get(hook), list):
            out[hook] = [
                clamp_timeout(h, f"{hook}[{i}]") if isinstance(h, dict) else h
                for i, h in enumerate(raw[hook])
            ]
    return out


# -- unknown keys ---------------------------------------------------------------------------
_FREE_FORM = {"config", "extra"}  # tables whose keys belong to the user


def _known(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _unknown_keys(raw: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    found: list[tuple[tuple[str | int, ...], str]] = []

    def check(table: Any, known: list[str], loc: tuple[str | int, ...]) -> None:
        if not isinstance(table, Mapping):
            return
        for key in table:
            if key in known:
                continue
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            found.append(((*loc, key), f"unknown key, ignored ({hint})"))

    check(raw, _known(Manifest), ())
    sections: dict[str, type[BaseModel]] = {
        "agent": AgentSection, "run": RunSection, "env": EnvSection, "defaults": Defaults,
        "security": Security, "limits": Limits,
    }
    for name, model in sections.items():
        check(raw.get(name), _known(model), (name,))
    for i, sched in enumerate(_list(raw.get("schedules"))):
        kind = sched.get("type") if isinstance(sched, Mapping) else None
        smodel = SCHEDULE_TYPES.get(kind) if isinstance(kind, str) else None
        known = _known(smodel) if smodel else sorted({k for m in SCHEDULE_TYPES.values()
                                                      for k in _known(m)})
        check(sched, known, ("schedules", i))
    for hook in ("preflight", "on_success", "on_failure"):
        for i, ref in enumerate(_list(raw.get(hook))):
            check(ref, _known(PluginRef), (hook, i))
    for i, notifier in enumerate(_list(raw.get("notifiers"))):
        driver = notifier.get("driver") if isinstance(notifier, Mapping) else None
        nmodel = NOTIFIER_TYPES.get(driver) if isinstance(driver, str) else None
        if nmodel is not None:
            check(notifier, _known(nmodel), ("notifiers", i))
    return found


def _unknown_events(raw: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    found: list[tuple[tuple[str | int, ...], str]] = []
    for section in ("on_success", "on_failure", "notifiers"):
        for i, entry in enumerate(_list(raw.get(section))):
            events = entry.get("events") if isinstance(entry, Mapping) else None
            for j, ev in enumerate(_list(events)):
                if isinstance(ev, str) and ev not in KNOWN_EVENTS:
                    close = difflib.get_close_matches(ev, KNOWN_EVENTS, n=1, cutoff=0.6)
                    hint = (f"did you mean {close[0]!r}?" if close
                            else f"known events: {', '.join(KNOWN_EVENTS)}")
                    found.append(((section, i, "events", j),
                                  f"{ev!r} is not an event dotagent emits, so this filter "
                                  f"never matches ({hint})"))
    return found


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# -- pydantic errors -> our messages ---------------------------------------------------
_TOML_TYPE = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
              list: "an array", dict: "a table"}
_EXPECTED = {
    "string_type": "a string", "int_type": "an integer", "bool_type": "true or false",
    "list_type": "an array", "tuple_type": "an array", "dict_type": "a table",
    "model_type": "a table", "model_attributes_type": "a table", "float_type": "a number",
}


def _describe(value: Any) -> str:
    for typ, name in _TOML_TYPE.items():
        if type(value) is typ:
            if isinstance(value, list | dict):
                return name
            return f"{name} ({_show(value)})"
    return type(value).__name__


def _render_errors(exc: ValidationError,
                   raw: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    seen: dict[tuple[str | int, ...], str] = {}
    unions: dict[tuple[str | int, ...], list[str]] = {}
    for err in exc.errors(include_url=False):
        loc = _strip_tags(tuple(err["loc"]))
        kind = err["type"]
        value = err.get("input")
        ctx = err.get("ctx") or {}
        if kind == "missing":
            msg = "required field is missing"
        elif kind in _EXPECTED:
            # A value allowed to be one of several types fails once per alternative.
            unions.setdefault(loc, []).append(_EXPECTED[kind])
            seen.setdefault(loc, f"expected {{types}}, got {_describe(value)}")
            continue
        elif kind == "literal_error":
            msg = f"{_show(value)} is not allowed (expected {ctx.get('expected', '')})"
        elif kind == "union_tag_invalid":
            tag = ctx.get("discriminator", "").strip("'")
            loc = (*loc, tag)
            msg = f"{_show(ctx.get('tag'))} is not a valid {tag} (expected " \
                  f"{ctx.get('expected_tags', '')})"
        elif kind == "union_tag_not_found":
            tag = ctx.get("discriminator", "").strip("'")
            loc = (*loc, tag)
            choices = "cron, interval or expression" if tag == "type" else \
                ", ".join(NOTIFIER_TYPES)
            msg = f"required field is missing ({choices})"
        elif kind == "too_short" and loc == ("schedules",):
            msg = "at least one [[schedules]] entry is required"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        seen.setdefault(loc, msg)
    out = []
    for loc, msg in seen.items():
        if loc in unions:
            types = sorted(set(unions[loc]), key=unions[loc].index)
            msg = msg.replace("{types}", " or ".join(types))
        out.append((loc, msg))
    if "schedules" not in raw:
        out.append((("schedules",), "at least one [[schedules]] entry is required"))
    return [(loc, m) for loc, m in out
            if not (loc == ("schedules",) and m == "required field is missing")]


_UNION_TAGS = {"schedules": set(SCHEDULE_TYPES), "notifiers": set(NOTIFIER_TYPES)}


_MARKER = re.compile(r"^(literal|list|tuple|dict|set|function-[a-z-]+|lax-or-strict|nullable)"
                     r"\[.*\]$|^(str|int|bool|float|none)$")


def _strip_tags(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """Drop pydantic's union-member markers: ('schedules', 0, 'cron', 'minute') ->
    ('schedules', 0, 'minute'); ('x', 'list[str]', 0) -> ('x', 0)."""
    out: list[str | int] = []
    if loc[:2] == ("env", "extra") and len(loc) >= 3:
        # A user's variable name, then pydantic's "[key]" when the name itself is wrong.
        return tuple(loc[:3])
    for i, part in enumerate(loc):
        if isinstance(part, str):
            if i >= 2 and isinstance(loc[i - 1], int) and \
                    part in _UNION_TAGS.get(str(loc[i - 2]), ()):
                continue
            if _MARKER.match(part):
                continue
        out.append(part)
    return tuple(out)


# -- rules that need the whole manifest ---------------------------------------------------
def _semantic_errors(raw: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Rules that span fields. They run on the raw table so that they are reported together
    with type errors elsewhere in the file."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    first_index: dict[str, int] = {}
    for i, sched in enumerate(_list(raw.get("schedules"))):
        if not isinstance(sched, Mapping):
            continue
        sid = sched.get("id")
        if isinstance(sid, str):
            if sid in first_index:
                errors.append((("schedules", i, "id"),
                               f"duplicate schedule id {quote_name(sid)} (already used by "
                               f"schedules[{first_index[sid]}])"))
            else:
                first_index[sid] = i
        kind = sched.get("type")
        if kind == "interval" and "timezone" in sched:
            errors.append((("schedules", i, "timezone"),
                           "does not apply to interval schedules (they count minutes from "
                           "the last start; use a cron or expression schedule for wall-clock "
                           "times)"))
        if kind == "interval" and "jitter_seconds" in sched:
            errors.append((("schedules", i, "jitter_seconds"),
                           "does not apply to interval schedules (they count from the last "
                           "start, so a fixed delay would only lengthen every interval; it "
                           "spreads cron and expression schedules)"))
        if "retry_backoff_minutes" in sched and "retry_backoff_seconds" in sched:
            errors.append((("schedules", i, "retry_backoff_seconds"), _BOTH_BACKOFFS))
        expr = sched.get("expression")
        if kind == "expression" and isinstance(expr, str) and expr.strip():
            problem = _expression_problem(expr, sched.get("timezone"))
            if problem:
                errors.append((("schedules", i, "expression"), problem))
    defaults = raw.get("defaults")
    if isinstance(defaults, Mapping) and "retry_backoff_minutes" in defaults \
            and "retry_backoff_seconds" in defaults:
        errors.append((("defaults", "retry_backoff_seconds"), _BOTH_BACKOFFS))
    errors.extend(_exit_code_errors(raw.get("run")))
    security = raw.get("security")
    network = security.get("network") if isinstance(security, Mapping) else None
    for j, host in enumerate(_list(network)):
        if isinstance(host, str) and (not host.strip() or
                                      any(c.isspace() or c == "/" for c in host)):
            errors.append((("security", "network", j),
                           f"{host!r} is not a host name (expected e.g. 'api.example.com')"))
    return errors


_BOTH_BACKOFFS = ("retry_backoff_minutes is also set in this table; give the backoff in one "
                  "unit (retry_backoff_seconds for steps under a minute)")


def _exit_code_errors(run: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """`[run]` exit-status rules that span the two lists (ranges are the model's)."""
    if not isinstance(run, Mapping):
        return []
    errors: list[tuple[tuple[str | int, ...], str]] = []
    success = [c for c in _list(run.get("success_exit_codes")) if _is_int(c)]
    for j, code in enumerate(_list(run.get("success_exit_codes"))):
        if _is_int(code) and code in RESERVED_EXIT_CODES:
            errors.append((("run", "success_exit_codes", j),
                           f"{code} is the status dotagent records for "
                           f"{RESERVED_EXIT_CODES[code]}, which is never a success (list "
                           "statuses your agent exits with; 124, 126 and 127 are reserved)"))
    for j, code in enumerate(_list(run.get("no_retry_exit_codes"))):
        if not _is_int(code):
            continue
        if code == 0:
            errors.append((("run", "no_retry_exit_codes", j),
                           "0 is always a success, so it cannot be a failure that is not "
                           "retried (expected 1..255)"))
        elif code in success:
            errors.append((("run", "no_retry_exit_codes", j),
                           f"{code} is also in run.success_exit_codes; a status is either a "
                           "success or a failure not to retry, not both (remove it from one "
                           "of run.success_exit_codes and run.no_retry_exit_codes)"))
    return errors


def _expression_problem(expression: str, timezone: Any) -> str | None:
    """Validate an OnCalendar expression when the calendar engine is available."""
    from dotagent.schedule import oncalendar

    try:
        spec = oncalendar.parse(expression)
    except oncalendar.CalendarSyntaxError as exc:
        return str(exc)
    if timezone and (spec.timezone or spec.utc):
        return ("has its own time zone and `timezone` is also set; keep only one "
                "(the expression's zone suffix or the `timezone` key)")
    return None
