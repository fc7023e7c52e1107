"""`$DOTAGENT_HOME/config.toml`: text in, a validated `Config` or located problems out.

The file is optional and a partial overlay: a missing file, section or key takes its default.
Unlike upstream, which silently falls back to defaults when the file does not parse, a broken
file is reported the way a broken manifest is — every problem at once, each as
`PATH:LINE: FIELD: problem (what is valid)` — and yields no `Config` at all, so nothing can
run with settings the user did not write. Values beyond a safety limit load with the limit
and a warning; unknown keys warn with a "did you mean"; the sections of upstream's
chat-assistant layer load with a warning that they are not used here. docs/config.md lists
every key.

The bounded read, the line index and the pieces of each message are the manifest's
(`dotagent.manifest`, `dotagent._tomllines`); this module adds the config schema, its
adjustments (clamps, lenient spellings) and the walk for unknown keys.
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from datetime import time as TimeOfDay
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dotagent._tomllines import LineIndex
from dotagent.errors import ConfigError
from dotagent.manifest import (
    _EXPECTED,
    _TOML_END,
    _TOML_POS,
    Clamp,
    NonEmpty,
    Notifier,
    Problem,
    _describe,
    _http_url,
    _in_range,
    _is_int,
    _no_nul,
    _read_bounded,
    _show,
    _strip_tags,
    field_path,
)
from dotagent.paths import Home

__all__ = [
    "CONFIG_FILE_NAME",
    "UNUSED_SECTIONS",
    "Config",
    "ConfigResult",
    "DaemonSection",
    "DailySummarySection",
    "LoggingSection",
    "OnBattery",
    "PowerSection",
    "QuietHoursSection",
    "SecretsSection",
    "SecuritySection",
    "StateSection",
    "SummaryNotifier",
    "TelemetrySection",
    "TrustSection",
    "load_config",
    "parse_config",
    "public_key_problem",
]

CONFIG_FILE_NAME = "config.toml"

# --------------------------------------------------------------------------------------
# Limits. Values beyond them are clamped with a warning (as the manifest's V7 clamps);
# negative numbers are errors, not clamps.
# --------------------------------------------------------------------------------------
MAX_CONCURRENT_RUNS = 64
MAX_RUNS_PER_AGENT = 1  # S14.4: one lock per agent; runs of an agent share its state files
MAX_RESCAN_MINUTES = 24 * 60
MAX_SHUTDOWN_GRACE_SECONDS = 60
MAX_GRACE_MINUTES = 24 * 60
MAX_DAYS = 100 * 366  # beyond a century a retention is a typo
MAX_AGENT_LOG_MB = 1024
MAX_AGENT_LOG_KEEP = 100

# (section, key) -> (lowest, highest, what the limit is, shown in the warning)
_CLAMPS: dict[tuple[str, str], tuple[int, int, str]] = {
    ("daemon", "max_concurrent_runs"): (1, MAX_CONCURRENT_RUNS,
                                        f"1..{MAX_CONCURRENT_RUNS} runs at once"),
    ("daemon", "max_runs_per_agent"): (1, MAX_RUNS_PER_AGENT,
                                       "one run per agent at a time"),
    ("daemon", "rescan_minutes"): (1, MAX_RESCAN_MINUTES, f"1..{MAX_RESCAN_MINUTES} minutes"),
    ("daemon", "shutdown_grace_seconds"): (1, MAX_SHUTDOWN_GRACE_SECONDS,
                                           f"1..{MAX_SHUTDOWN_GRACE_SECONDS} seconds"),
    ("daily_summary", "grace_minutes"): (1, MAX_GRACE_MINUTES,
                                         f"1..{MAX_GRACE_MINUTES} minutes"),
    ("logging", "agent_log_max_mb"): (1, MAX_AGENT_LOG_MB, f"1..{MAX_AGENT_LOG_MB} MiB"),
    ("logging", "agent_log_keep"): (0, MAX_AGENT_LOG_KEEP,
                                    f"0..{MAX_AGENT_LOG_KEEP} old files"),
}

# Upstream's chat-assistant layer (SPEC S15, "we leave out"): accepted, warned, ignored.
UNUSED_SECTIONS: dict[str, str] = {
    "telegram": "Telegram chat",
    "memory": "memory workspace",
    "skills": "skills",
    "commands": "slash commands",
    "os": "commands from chat",
}

LogLevel = Literal["error", "warn", "info", "debug", "trace", "off"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


# --------------------------------------------------------------------------------------
# Field validators
# --------------------------------------------------------------------------------------
def _clamped(section: str, key: str) -> AfterValidator:
    """The range check after clamping: only a negative number can still fail it."""
    lo, _hi, hint = _CLAMPS[(section, key)]

    def check(value: int) -> int:
        if value < lo:
            raise PydanticCustomError("out_of_range", "{msg}", {
                "msg": f"{value} is negative (expected {hint}; larger values are lowered "
                       "to the limit)"})
        return value

    return AfterValidator(check)


_HHMM = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?")


def _summary_time(value: Any) -> TimeOfDay:
    """"HH:MM" or "HH:MM:SS" (or a TOML local time) → a local time of day."""
    if isinstance(value, TimeOfDay) and value.tzinfo is None:
        return value
    if isinstance(value, str):
        m = _HHMM.fullmatch(value.strip())
        if m:
            return TimeOfDay(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
        shown = _show(value)
    elif isinstance(value, date | TimeOfDay):
        shown = f"a TOML date or time ({value.isoformat()})"
    else:
        shown = _describe(value)
    raise PydanticCustomError("bad_time", "{msg}", {
        "msg": f"{shown} is not a time of day (expected \"HH:MM\" or \"HH:MM:SS\" in local "
               "time, e.g. \"22:45\")"})


def _otlp_endpoint(value: str) -> str:
    # "" switches telemetry off; anything else must be a URL the exporter can reach.
    return value if value == "" else _http_url(value)


def _string_table(value: dict[str, str]) -> dict[str, str]:
    for item in value.values():
        _no_nul(item)
    return value


Days = Annotated[int, _in_range(0, MAX_DAYS)]
Percent = Annotated[int, _in_range(0, 100)]
OnBattery = Literal["run", "defer"]
StringTable = Annotated[dict[str, str], AfterValidator(_string_table)]


class _Model(BaseModel):
    # TOML already has types: no coercion of "5" into 5, no bool as int.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


# --------------------------------------------------------------------------------------
# Sections (docs/config.md describes each key)
# --------------------------------------------------------------------------------------
class LoggingSection(_Model):
    level: LogLevel = "info"
    format: Literal["json", "text"] = "json"
    retention_days: Days = 30
    per_agent_retention_days: Days = 14
    compress_after_days: Days = 1
    agent_log_max_mb: Annotated[int, _clamped("logging", "agent_log_max_mb")] = 10
    agent_log_keep: Annotated[int, _clamped("logging", "agent_log_keep")] = 5

    @property
    def agent_log_max_bytes(self) -> int:
        """`agent_log_max_mb` in bytes (MiB, as `ls -h` counts)."""
        return self.agent_log_max_mb * 1024 * 1024


class TelemetrySection(_Model):
    otlp_endpoint: Annotated[str, AfterValidator(_otlp_endpoint)] = ""
    protocol: Literal["grpc", "http/protobuf", "http/json"] = "grpc"
    service_name: NonEmpty = "dotagent"
    resource: StringTable = Field(default_factory=dict)
    headers: StringTable = Field(default_factory=dict)


class SecretsSection(_Model):
    file: Annotated[str, AfterValidator(_no_nul)] = ""


class DaemonSection(_Model):
    max_concurrent_runs: Annotated[int, _clamped("daemon", "max_concurrent_runs")] = 10
    max_runs_per_agent: Annotated[int, _clamped("daemon", "max_runs_per_agent")] = 1
    rescan_minutes: Annotated[int, _clamped("daemon", "rescan_minutes")] = 30
    shutdown_grace_seconds: Annotated[int, _clamped("daemon", "shutdown_grace_seconds")] = 5


class PowerSection(_Model):
    on_battery: OnBattery = "run"
    min_battery_percent: Percent = 0


class StateSection(_Model):
    window_retention_days: Days = 30
    history_retention_days: Days = 90


class SummaryNotifier(BaseModel):
    """One `[[daily_summary.notifiers]]` entry, kept as written: only `driver` is checked
    here; the notifier registry validates the rest when it builds the notifier."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    driver: NonEmpty

    def table(self) -> dict[str, Any]:
        """The entry as written in config.toml (a fresh dict)."""
        return {"driver": self.driver, **(self.model_extra or {})}


class DailySummarySection(_Model):
    enabled: bool = True
    time: Annotated[TimeOfDay, BeforeValidator(_summary_time)] = TimeOfDay(22, 45)
    grace_minutes: Annotated[int, _clamped("daily_summary", "grace_minutes")] = 30
    notifiers: list[SummaryNotifier] = []


def _zone_name(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    _no_nul(value)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError("bad_zone", "{msg}", {
            "msg": f"{_show(value)} is not a time zone (expected an IANA name such as "
                   "\"Europe/Berlin\"; leave it out for the local zone)"}) from None
    return value


class QuietHoursSection(_Model):
    """`[quiet_hours]`: between `start` and `end` (local wall time, or `timezone`'s),
    non-critical notices are held and delivered as one digest when they end."""

    start: Annotated[TimeOfDay, BeforeValidator(_summary_time)] | None = None
    end: Annotated[TimeOfDay, BeforeValidator(_summary_time)] | None = None
    timezone: Annotated[str, AfterValidator(_zone_name)] | None = None

    @model_validator(mode="after")
    def _both(self) -> QuietHoursSection:
        if (self.start is None) != (self.end is None):
            missing = "end" if self.end is None else "start"
            raise ValueError(f"`{missing}` is missing: quiet hours need both `start` and "
                             "`end` (e.g. start = \"22:00\", end = \"07:00\")")
        if self.start is not None and self.start == self.end:
            raise ValueError("`start` and `end` are the same time; leave the section out "
                             "for no quiet hours")
        return self

    @property
    def enabled(self) -> bool:
        return self.start is not None and self.end is not None


class SecuritySection(_Model):
    enforcement: Literal["enforce", "warn"] = "enforce"


def public_key_problem(text: str) -> str | None:
    """Why `text` is not a minisign public key line (None when it is one): base64 of "Ed",
    an 8-byte key id and a 32-byte Ed25519 key. No cryptography is imported here."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "is not base64 (expected the second line of a minisign .pub file, \"RW…\")"
    if len(raw) != 42 or raw[:2] != b"Ed":
        return ("is not a minisign Ed25519 public key (expected the second line of a .pub "
                "file, \"RW…\")")
    return None


def _public_key(value: str) -> str:
    problem = public_key_problem(value)
    if problem is not None:
        raise PydanticCustomError("bad_key", "{msg}", {"msg": f"{_show(value)} {problem}"})
    return value.strip()


class TrustSection(_Model):
    """`[trust]`: opt-in signed manifests and approval of new agents (docs/security.md)."""

    require_signed_manifests: bool = False
    trusted_public_keys: list[Annotated[str, AfterValidator(_public_key)]] = []
    approve_new_agents: bool = False

    @model_validator(mode="after")
    def _keys(self) -> TrustSection:
        if self.require_signed_manifests and not self.trusted_public_keys:
            raise ValueError("`require_signed_manifests` is true but `trusted_public_keys` is "
                             "empty: no manifest could run (add the line `dotagent key "
                             "generate` prints)")
        return self


class Config(_Model):
    """Everything config.toml can say; `Config()` is the all-defaults configuration."""

    logging: LoggingSection = Field(default_factory=LoggingSection)
    telemetry: TelemetrySection = Field(default_factory=TelemetrySection)
    secrets: SecretsSection = Field(default_factory=SecretsSection)
    daemon: DaemonSection = Field(default_factory=DaemonSection)
    power: PowerSection = Field(default_factory=PowerSection)
    state: StateSection = Field(default_factory=StateSection)
    daily_summary: DailySummarySection = Field(default_factory=DailySummarySection)
    security: SecuritySection = Field(default_factory=SecuritySection)
    quiet_hours: QuietHoursSection = Field(default_factory=QuietHoursSection)
    trust: TrustSection = Field(default_factory=TrustSection)
    # Daemon-wide notifiers: critical events that belong to no single agent.
    notifiers: list[Notifier] = []


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------
@dataclass
class ConfigResult:
    """The outcome of reading config.toml.

    `config` is None exactly when there are errors: a broken file never silently becomes the
    defaults. A missing file is not an error (`exists` is False, `config` is `Config()`).
    """

    path: Path
    exists: bool = False
    config: Config | None = None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    clamps: list[Clamp] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.errors

    def require(self) -> Config:
        """The config, or ConfigError (sysexit 78, EX_CONFIG) whose message lists every
        error on its own line. Never returns defaults for a broken file."""
        if self.config is not None and not self.errors:
            return self.config
        lines = [str(p) for p in self.errors] or [f"{self.path}: cannot be used"]
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  {ln}" for ln in lines))


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------
def load_config(home: Home | Path) -> ConfigResult:
    """Read and validate `<home>/config.toml`. Never raises for bad or unreadable content.

    A missing file gives the defaults. Anything else that cannot be read — a directory, a
    FIFO, a device, a dangling symlink, no permission, more than 1 MiB — is one located error;
    only a regular file is read, without blocking. Reads the file once; writes nothing.
    """
    root = home.root if isinstance(home, Home) else Path(home)
    path = root / CONFIG_FILE_NAME
    try:
        data = _read_bounded(path)
    except FileNotFoundError:
        if not path.is_symlink():
            return ConfigResult(path=path, exists=False, config=Config())
        return _unreadable(path, "it is a symlink to a file that does not exist")
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            return _unreadable(path, f"{root} is not a directory")
        return _unreadable(path, exc.strerror or str(exc))
    return parse_config(data, path)


def _unreadable(path: Path, reason: str) -> ConfigResult:
    result = ConfigResult(path=path, exists=True)
    result.errors.append(Problem(str(path), None, "", f"cannot read: {reason}"))
    return result


def parse_config(data: bytes, path: Path) -> ConfigResult:
    """Validate config.toml's bytes (pure; `path` is only used in messages)."""
    shown = str(path)
    result = ConfigResult(path=path, exists=True)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        result.errors.append(Problem(shown, data[: exc.start].count(b"\n") + 1, "",
                                     "file is not valid UTF-8"))
        return result
    text = text.removeprefix("\ufeff")
    try:
        raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        result.errors.append(_syntax_problem(exc, text, shown))
        return result

    index: list[LineIndex] = []

    def locate(loc: Sequence[str | int]) -> int | None:
        if not index:
            index.append(LineIndex(text))
        return index[0].line_of(tuple(loc)) or None

    adjusted, notes = _adjust(raw, result.clamps)
    warnings = notes + _unused_sections(raw) + _unknown_keys(raw, Config, ())
    for loc, message in warnings:
        result.warnings.append(Problem(shown, locate(loc), field_path(loc), message, "warning"))
    errors: list[tuple[tuple[str | int, ...], str]] = []
    config: Config | None = None
    try:
        config = Config.model_validate(adjusted)
    except ValidationError as exc:
        errors = _render_errors(exc)
    for loc, message in errors:
        result.errors.append(Problem(shown, locate(loc), field_path(loc), message))
    result.errors.sort(key=lambda p: p.line or 0)
    result.warnings.sort(key=lambda p: p.line or 0)
    if not result.errors:
        result.config = config
    return result


def _syntax_problem(exc: Exception, text: str, shown: str) -> Problem:
    """A tomllib failure as a located problem (tomllib puts the position in its message)."""
    if isinstance(exc, RecursionError):
        return Problem(shown, None, "", "TOML syntax error: values are nested too deeply to "
                       "be read")
    msg, line = str(exc), None
    m = _TOML_POS.search(msg)
    if m:
        line, msg = int(m.group(1)), f"{msg[: m.start()]} (column {m.group(2)})"
    elif _TOML_END.search(msg):
        line, msg = text.count("\n") + 1, _TOML_END.sub(" (at end of file)", msg)
    return Problem(shown, line, "", f"TOML syntax error: {msg}")


# -- adjustments: clamps and values that load with a warning ------------------------------
Loc = tuple[str | int, ...]


def _adjust(raw: Mapping[str, Any], clamps: list[Clamp]) -> tuple[dict[str, Any],
                                                                   list[tuple[Loc, str]]]:
    """A copy of `raw` with the clamps applied and lenient spellings normalised, and the
    warnings that explain each change."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    notes: list[tuple[Loc, str]] = []
    for (section, key), (lo, hi, hint) in _CLAMPS.items():
        table = out.get(section)
        value = table.get(key) if isinstance(table, dict) else None
        if isinstance(table, dict) and _is_int(value) and value >= 0:
            effective = min(max(value, lo), hi)
            if effective != value:
                table[key] = effective
                clamps.append(Clamp(f"{section}.{key}", value, effective))
                notes.append(((section, key),
                              f"{value} → {effective} (safety limit: {hint})"))

    logging = out.get("logging")
    level = logging.get("level") if isinstance(logging, dict) else None
    if isinstance(logging, dict) and isinstance(level, str):
        effective_level, note = _log_level(level)
        if effective_level is not None:
            logging["level"] = effective_level
        if note:
            notes.append((("logging", "level"), note))

    secrets = out.get("secrets")
    file = secrets.get("file") if isinstance(secrets, dict) else None
    if isinstance(secrets, dict) and isinstance(file, str) and file and \
            not os.path.isabs(file):
        # SPEC S6: only an absolute path is honoured; the next source in the chain is used.
        secrets["file"] = ""
        notes.append((("secrets", "file"),
                      f"{_show(file)} is not an absolute path; ignored (secrets are read from "
                      "$DOTAGENT_SECRETS_FILE or $DOTAGENT_HOME/secrets.env instead)"))
    return out, notes


def _log_level(value: str) -> tuple[str | None, str | None]:
    """(the level to use, a warning) for a `[logging].level` as written (the parsing is the
    daemon log's, shared with `$DOTAGENT_LOG`). None: leave the value to the validator,
    which reports it."""
    from dotagent.daemonlog import parse_level

    level, simplified = parse_level(value)
    if level is None or not simplified:
        return level, None
    return level, (f"{_show(value)}: per-target filter directives are not supported here; "
                   f"using {level!r} for everything")


# -- warnings about keys ----------------------------------------------------------------
def _unused_sections(raw: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    return [((name,), f"not used by this implementation (it configures upstream's {what}); "
                      "ignored")
            for name, what in UNUSED_SECTIONS.items() if name in raw]


def _submodel(model: type[BaseModel], key: str) -> tuple[type[BaseModel] | None, bool]:
    """The model of a field that is a table of known keys, or of each element of an array
    of such tables (then True); None for anything free-form."""
    annotation = model.model_fields[key].annotation
    if isinstance(annotation, type) and issubclass(annotation, _Model):
        return annotation, False
    if get_origin(annotation) is list:
        (item,) = get_args(annotation) or (None,)
        if isinstance(item, type) and issubclass(item, _Model):
            return item, True
    return None, False


def _unknown_keys(table: Any, model: type[BaseModel], loc: Loc) -> list[tuple[Loc, str]]:
    """Keys no model declares, at every level of known tables (free-form tables such as
    `[telemetry.resource]` and notifier entries are the user's)."""
    if not isinstance(table, Mapping):
        return []
    known = list(model.model_fields)
    if not loc:
        known += list(UNUSED_SECTIONS)
    found: list[tuple[Loc, str]] = []
    for key, value in table.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            found.append(((*loc, key), f"unknown key, ignored ({hint})"))
            continue
        sub, is_list = _submodel(model, key) if key in model.model_fields else (None, False)
        if sub is None:
            continue
        if is_list:
            for i, item in enumerate(value if isinstance(value, list) else []):
                found += _unknown_keys(item, sub, (*loc, key, i))
        else:
            found += _unknown_keys(value, sub, (*loc, key))
    return found


# -- pydantic errors -> our messages ---------------------------------------------------
def _render_errors(exc: ValidationError) -> list[tuple[Loc, str]]:
    seen: dict[Loc, str] = {}
    unions: dict[Loc, list[str]] = {}
    for err in exc.errors(include_url=False):
        loc = _strip_tags(tuple(err["loc"]))
        kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
        if kind == "missing":
            msg = "required field is missing"
        elif kind in _EXPECTED:
            unions.setdefault(loc, []).append(_EXPECTED[kind])
            seen.setdefault(loc, f"expected {{types}}, got {_describe(value)}")
            continue
        elif kind == "literal_error":
            msg = f"{_show(value)} is not allowed (expected {ctx.get('expected', '')})"
        elif kind == "union_tag_invalid":
            msg = (f"unknown {ctx.get('discriminator', 'tag').strip(chr(39))} "
                   f"{_show(str(ctx.get('tag', '')))} (expected one of "
                   f"{ctx.get('expected_tags', '')})")
        elif kind == "union_tag_not_found":
            msg = f"required field {ctx.get('discriminator', '').strip(chr(39))} is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        seen.setdefault(loc, msg)
    out = []
    for loc, msg in seen.items():
        if loc in unions:
            types = sorted(set(unions[loc]), key=unions[loc].index)
            msg = msg.replace("{types}", " or ".join(types))
        out.append((loc, msg))
    return out
