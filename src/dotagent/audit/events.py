"""Every audit event type, one typed definition each, and their severities.

An event is a frozen dataclass. Its fields are written in declaration order right after
`event_type`, which is what makes a line byte-compatible with upstream (serde writes struct
fields in declaration order). Upstream's fields therefore come first and keep upstream's
order; anything we add goes after them.

Adding an event: subclass `Event` below with `event_type` and `default_severity` class
variables, list the fields (reuse `agent`, `schedule`, `path`, `sha256`, `plugin`, `reason`
before inventing a name), keep every value a str/int/bool/None, and document it in
docs/audit.md. `EVENT_TYPES` picks it up automatically.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal

__all__ = [
    "EVENT_TYPES",
    "AgentApproved",
    "AgentGivenUp",
    "AgentRecovered",
    "AgentRun",
    "AgentSnoozed",
    "AuditBreakAcknowledged",
    "AuditChainBroken",
    "AuditLogRotated",
    "AuditRepaired",
    "ChainBreakKind",
    "CommandNotAllowed",
    "ConfigReloaded",
    "DaemonStarted",
    "DaemonStopped",
    "DurationAnomaly",
    "Event",
    "ManifestCacheMissing",
    "ManifestDriftDetected",
    "ManifestInvalid",
    "ManifestLoaded",
    "ManifestSignatureInvalid",
    "NotifierFailed",
    "OrphanReaped",
    "PhantomAgentDetected",
    "PluginDriftDetected",
    "PluginInvoked",
    "PluginNotAllowed",
    "PreflightFailed",
    "RunInterrupted",
    "RunSkippedOverlap",
    "SandboxUnavailable",
    "SecretsLoaded",
    "SecretsRefused",
    "SelfcheckFailed",
    "SelfcheckRecorded",
    "Severity",
    "TickCompleted",
    "TickStarted",
    "WindowMissed",
    "no_retry_reason",
]


class Severity(StrEnum):
    INFO = "info"
    NOTICE = "notice"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.NOTICE: 1, Severity.CRITICAL: 2}

# `head`: the head record was deleted, garbled or rewritten while a head existed (S15.9); the
# others are damage to the lines themselves (docs/audit.md, "How damage is classified").
ChainBreakKind = Literal["edit", "deletion", "reorder", "truncation", "torn", "head"]

# Field metadata flag: leave the field out of the line while it holds its default. Used for
# fields we add to an upstream event (agent_run.dry_run), so upstream-shaped runs stay
# byte-identical to what upstream writes.
_OMIT_DEFAULT = {"omit_default": True}


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base class. Subclasses set `event_type`, `default_severity` and declare fields."""

    event_type: ClassVar[str]
    default_severity: ClassVar[Severity]
    upstream: ClassVar[bool] = False  # True when upstream (v0.1.3, or 0.3-0.6) defines it

    @property
    def severity(self) -> Severity:
        return self.default_severity

    def fields(self) -> dict[str, Any]:
        """`event_type` followed by the fields in declaration order (the `event` object)."""
        out: dict[str, Any] = {"event_type": self.event_type}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("omit_default") and value == f.default:
                continue
            out[f.name] = value
        return out


# --------------------------------------------------------------------------------------
# Upstream events (S8), upstream's field order.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DaemonStarted(Event):
    event_type: ClassVar[str] = "daemon_started"
    default_severity: ClassVar[Severity] = Severity.INFO
    upstream: ClassVar[bool] = True
    version: str
    pid: int


@dataclass(frozen=True, kw_only=True)
class DaemonStopped(Event):
    event_type: ClassVar[str] = "daemon_stopped"
    default_severity: ClassVar[Severity] = Severity.INFO
    upstream: ClassVar[bool] = True
    reason: str


@dataclass(frozen=True, kw_only=True)
class TickStarted(Event):
    event_type: ClassVar[str] = "tick_started"
    default_severity: ClassVar[Severity] = Severity.INFO
    upstream: ClassVar[bool] = True
    agents_scanned: int


@dataclass(frozen=True, kw_only=True)
class TickCompleted(Event):
    event_type: ClassVar[str] = "tick_completed"
    default_severity: ClassVar[Severity] = Severity.INFO
    upstream: ClassVar[bool] = True
    agents_scanned: int
    runs_dispatched: int
    next_event_iso: str | None = None


@dataclass(frozen=True, kw_only=True)
class AgentRun(Event):
    event_type: ClassVar[str] = "agent_run"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    upstream: ClassVar[bool] = True
    agent: str
    schedule: str
    slug: str
    manifest_sha256: str = ""  # upstream writes "" when the manifest hash is unknown
    exit_code: int
    duration_seconds: int
    timed_out: bool
    # Ours (S14.18): only written when true, after upstream's fields.
    dry_run: bool = field(default=False, metadata=_OMIT_DEFAULT)
    # Ours ([limits], docs/manifest.md): the limit that most likely ended the run, and
    # whether its output was cut in the log at max_output_mb; only written when set.
    limit: str = field(default="", metadata=_OMIT_DEFAULT)
    output_cut: bool = field(default=False, metadata=_OMIT_DEFAULT)

    @property
    def severity(self) -> Severity:
        return Severity.NOTICE if self.exit_code == 0 else Severity.CRITICAL


@dataclass(frozen=True, kw_only=True)
class AgentRecovered(Event):
    event_type: ClassVar[str] = "agent_recovered"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    upstream: ClassVar[bool] = True
    agent: str
    schedule: str
    attempts: int


@dataclass(frozen=True, kw_only=True)
class AgentGivenUp(Event):
    event_type: ClassVar[str] = "agent_given_up"
    default_severity: ClassVar[Severity] = Severity.CRITICAL
    upstream: ClassVar[bool] = True
    agent: str
    schedule: str
    attempts: int
    last_exit: int = -1
    stderr_tail: str = ""
    # Ours, only written when set: why the window was given up before its retries ran out
    # (`no_retry_reason`); an ordinary give-up stays byte-identical to upstream's line.
    reason: str = field(default="", metadata=_OMIT_DEFAULT)


def no_retry_reason(exit_code: int | None) -> str:
    """`agent_given_up.reason` for a status listed in `[run] no_retry_exit_codes`."""
    return f"exit {exit_code} is in no_retry_exit_codes: not retried"


@dataclass(frozen=True, kw_only=True)
class PreflightFailed(Event):
    event_type: ClassVar[str] = "preflight_failed"
    default_severity: ClassVar[Severity] = Severity.CRITICAL
    upstream: ClassVar[bool] = True
    agent: str
    schedule: str
    plugin: str
    suggest: str | None = None


@dataclass(frozen=True, kw_only=True)
class PluginInvoked(Event):
    event_type: ClassVar[str] = "plugin_invoked"
    default_severity: ClassVar[Severity] = Severity.INFO
    upstream: ClassVar[bool] = True
    agent: str
    plugin: str  # "<name>" or "notifier:<driver>"
    plugin_kind: str
    ok: bool

    @property
    def severity(self) -> Severity:
        return Severity.INFO if self.ok else Severity.NOTICE


@dataclass(frozen=True, kw_only=True)
class ManifestLoaded(Event):
    event_type: ClassVar[str] = "manifest_loaded"
    default_severity: ClassVar[Severity] = Severity.INFO
    upstream: ClassVar[bool] = True
    agent: str
    path: str
    sha256: str


@dataclass(frozen=True, kw_only=True)
class ManifestDriftDetected(Event):
    event_type: ClassVar[str] = "manifest_drift_detected"
    default_severity: ClassVar[Severity] = Severity.CRITICAL
    upstream: ClassVar[bool] = True
    agent: str
    path: str
    expected_sha256: str
    actual_sha256: str


@dataclass(frozen=True, kw_only=True)
class PhantomAgentDetected(Event):
    event_type: ClassVar[str] = "phantom_agent_detected"
    default_severity: ClassVar[Severity] = Severity.CRITICAL
    upstream: ClassVar[bool] = True
    agent: str
    path: str
    sha256: str


@dataclass(frozen=True, kw_only=True)
class AuditChainBroken(Event):
    """Upstream's three fields, then ours: what kind of damage, where, and in words."""

    event_type: ClassVar[str] = "audit_chain_broken"
    default_severity: ClassVar[Severity] = Severity.CRITICAL
    upstream: ClassVar[bool] = True
    position: int  # 0-based index among non-blank lines, as upstream counts
    expected_prev_hash: str
    actual_prev_hash: str
    kind: ChainBreakKind
    line: int | None = None  # 1-based line number in the file
    detail: str | None = None
    # The rotated segment holding the damaged line (`audit.log.<stamp>`); left out of the line
    # for damage in the live file, so such records read exactly as before rotation existed.
    segment: str | None = field(default=None, metadata=_OMIT_DEFAULT)


@dataclass(frozen=True, kw_only=True)
class AuditLogRotated(Event):
    """Upstream 0.3+: the first line of a fresh audit.log after rotation (the seam, §1).

    `rotated_to` names the segment the previous live file became, `entries` counts its
    non-blank lines, `first_ts` is its first entry's ts (or "unknown"), `tail_hash` the sha256
    of its last non-blank line (GENESIS when empty); the line's prev_hash equals tail_hash.
    """

    event_type: ClassVar[str] = "audit_log_rotated"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    upstream: ClassVar[bool] = True
    rotated_to: str
    entries: int
    first_ts: str
    tail_hash: str


@dataclass(frozen=True, kw_only=True)
class ConfigReloaded(Event):
    event_type: ClassVar[str] = "config_reloaded"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    upstream: ClassVar[bool] = True
    reason: str = "SIGHUP"


@dataclass(frozen=True, kw_only=True)
class SecretsLoaded(Event):
    event_type: ClassVar[str] = "secrets_loaded"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    upstream: ClassVar[bool] = True
    path: str
    key_count: int
    unresolved_references: int = 0


@dataclass(frozen=True, kw_only=True)
class SecretsRefused(Event):
    event_type: ClassVar[str] = "secrets_refused"
    default_severity: ClassVar[Severity] = Severity.CRITICAL
    upstream: ClassVar[bool] = True
    path: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class OrphanReaped(Event):
    """Upstream 0.3+: a process group left by a crashed daemon was killed at boot (§12)."""

    event_type: ClassVar[str] = "orphan_reaped"
    default_severity: ClassVar[Severity] = Severity.CRITICAL
    upstream: ClassVar[bool] = True
    agent: str
    kind: str  # display form: "agent", "persistent", "sink", ...
    label: str
    pid: int
    age_seconds: int
    deadline_seconds: int


# --------------------------------------------------------------------------------------
# Our events (S14.26). Upstream's verifier cannot read these; compatibility is one-way.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ManifestInvalid(Event):
    """A manifest failed to load or validate; the other agents keep running (S14.3)."""

    event_type: ClassVar[str] = "manifest_invalid"
    default_severity: ClassVar[Severity] = Severity.CRITICAL
    path: str
    error: str  # same name upstream later chose for this event
    agent: str | None = None  # when the name could be read (duplicate names, S14.15)


@dataclass(frozen=True, kw_only=True)
class ManifestCacheMissing(Event):
    """known_manifests.json vanished while the audit log has history (S14.7)."""

    event_type: ClassVar[str] = "manifest_cache_missing"
    default_severity: ClassVar[Severity] = Severity.CRITICAL
    path: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class PluginDriftDetected(Event):
    event_type: ClassVar[str] = "plugin_drift_detected"
    default_severity: ClassVar[Severity] = Severity.CRITICAL
    plugin: str
    path: str
    expected_sha256: str
    actual_sha256: str


@dataclass(frozen=True, kw_only=True)
class SelfcheckFailed(Event):
    """Our installed files no longer hash to `daemon.sha256` (V3)."""

    event_type: ClassVar[str] = "selfcheck_failed"
    default_severity: ClassVar[Severity] = Severity.CRITICAL
    path: str
    expected_sha256: str
    actual_sha256: str
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class SelfcheckRecorded(Event):
    """The installed files were recorded as trusted in `daemon.sha256` (first use or
    `selfcheck --record`): whoever accepts a new installation leaves a trace."""

    event_type: ClassVar[str] = "selfcheck_recorded"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    path: str
    sha256: str
    previous_sha256: str | None = None
    files: int = 0


@dataclass(frozen=True, kw_only=True)
class AuditRepaired(Event):
    """The audit writer fixed something it found (torn tail moved aside, head rebuilt)."""

    event_type: ClassVar[str] = "audit_repaired"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    reason: str
    path: str | None = None  # side file holding moved bytes, or the head that was rebuilt
    sha256: str | None = None  # of the moved bytes
    line: int | None = None


@dataclass(frozen=True, kw_only=True)
class AuditBreakAcknowledged(Event):
    """A person acknowledged a recorded break (`dotagent audit acknowledge`, S15.9).

    `line` and `sha256` name the `audit_chain_broken` entry acknowledged: its line in
    audit.log and the hash of that line (which still names it if lines move). Who is `user`
    and `uid`; when is the entry's own `ts`.
    """

    event_type: ClassVar[str] = "audit_break_acknowledged"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    line: int
    sha256: str
    kind: str | None = None  # the acknowledged break's kind (null for one upstream recorded)
    user: str = ""
    uid: int = -1
    # The rotated segment holding the acknowledged record, when it is no longer in the live
    # file (`line` is then a line of that segment); left out for the live file.
    segment: str | None = field(default=None, metadata=_OMIT_DEFAULT)


@dataclass(frozen=True, kw_only=True)
class WindowMissed(Event):
    """A schedule window passed without a run (downtime beyond stale_after, S14.1/S14.20)."""

    event_type: ClassVar[str] = "window_missed"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    agent: str
    schedule: str
    expected_at_iso: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class RunSkippedOverlap(Event):
    """A due run did not start because the agent was already running (S14.4)."""

    event_type: ClassVar[str] = "run_skipped_overlap"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    agent: str
    schedule: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class RunInterrupted(Event):
    """A run was cut short by the daemon stopping, or found unfinished after a crash."""

    event_type: ClassVar[str] = "run_interrupted"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    agent: str
    schedule: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class NotifierFailed(Event):
    event_type: ClassVar[str] = "notifier_failed"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    agent: str
    plugin: str  # "notifier:<driver>" or the plugin name, as in plugin_invoked
    reason: str


@dataclass(frozen=True, kw_only=True)
class CommandNotAllowed(Event):
    """`[run].command` is outside `[security].allowed_commands`; the run was refused."""

    event_type: ClassVar[str] = "command_not_allowed"
    default_severity: ClassVar[Severity] = Severity.CRITICAL
    agent: str
    schedule: str
    command: str
    # False under `[security] enforcement = "warn"`: recorded (at notice), and the run went on.
    refused: bool = True


@dataclass(frozen=True, kw_only=True)
class PluginNotAllowed(Event):
    """A hook names a plugin outside `[security].allowed_plugins`; it was not run (also
    recorded as `plugin_invoked` with ok=false)."""

    event_type: ClassVar[str] = "plugin_not_allowed"
    default_severity: ClassVar[Severity] = Severity.CRITICAL
    agent: str
    schedule: str
    plugin: str
    plugin_kind: str


@dataclass(frozen=True, kw_only=True)
class SandboxUnavailable(Event):
    """`[security]` asks for enforcement this machine cannot provide."""

    event_type: ClassVar[str] = "sandbox_unavailable"
    default_severity: ClassVar[Severity] = Severity.CRITICAL
    agent: str
    schedule: str
    reason: str
    # False under `[security] enforcement = "warn"`: the agent ran unconfined.
    refused: bool = True


@dataclass(frozen=True, kw_only=True)
class ManifestSignatureInvalid(Event):
    event_type: ClassVar[str] = "manifest_signature_invalid"
    default_severity: ClassVar[Severity] = Severity.CRITICAL
    agent: str
    path: str
    sha256: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class AgentApproved(Event):
    """A manifest (its current hash) approved to run under `[trust] approve_new_agents`.

    `via` is `approve` (a person ran `dotagent approve`; who is `user` and `uid`, when is the
    entry's `ts`) or `baseline` (known and unchanged when approval was first switched on)."""

    event_type: ClassVar[str] = "agent_approved"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    agent: str
    path: str
    sha256: str
    via: Literal["approve", "baseline"] = "approve"
    user: str = ""
    uid: int = -1


@dataclass(frozen=True, kw_only=True)
class DurationAnomaly(Event):
    """A successful run took more than 3× its p95, or under a tenth of its p50, over its last
    successful runs (S15.13; docs/notifications.md). Durations in milliseconds."""

    event_type: ClassVar[str] = "duration_anomaly"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    agent: str
    schedule: str
    duration_ms: int
    p50_ms: int
    p95_ms: int
    runs: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class AgentSnoozed(Event):
    """`dotagent snooze`: alerts for the agent (or one schedule, "" for all) are silenced
    until `until_iso`; "" when the snooze is lifted (`snooze NAME off`)."""

    event_type: ClassVar[str] = "agent_snoozed"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    agent: str
    schedule: str
    until_iso: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class AgentPaused(Event):
    """`dotagent pause`: the agent (or one schedule; "" for all) is not dispatched until
    `until_iso` ("" until resumed); windows that come due meanwhile are settled unrun."""

    event_type: ClassVar[str] = "agent_paused"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    agent: str
    schedule: str
    until_iso: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class AgentResumed(Event):
    """`dotagent resume`: the pause of the agent (or one schedule; "" for all) is lifted
    before its end. A pause that reaches its `until` ends without a line of its own."""

    event_type: ClassVar[str] = "agent_resumed"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    agent: str
    schedule: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class WindowsBootstrapped(Event):
    """`dotagent bootstrap`: `count` windows due at that moment were settled without a run,
    so that a fresh install fires no burst and raises no alert."""

    event_type: ClassVar[str] = "windows_bootstrapped"
    default_severity: ClassVar[Severity] = Severity.NOTICE
    count: int
    schedules: int
    reason: str


def _collect() -> dict[str, type[Event]]:
    found: dict[str, type[Event]] = {}
    pending = list(Event.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        found[cls.event_type] = cls
    return dict(sorted(found.items()))


EVENT_TYPES: dict[str, type[Event]] = _collect()
