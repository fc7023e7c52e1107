"""`doctor`: everything discoverable, checked without running anything.

The checks are pure reads: manifests, name conflicts, the V7 clamps, `[security]`, commands
on PATH, slugs shared by two schedules. Later subsystems (scheduling, audit, plugins,
secrets) add their checks here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dotagent.discovery import Discovery, claimed_name, discover
from dotagent.display import printable, quote_name
from dotagent.errors import DotagentError
from dotagent.manifest import LoadedManifest, Problem
from dotagent.runner.process import SpawnError
from dotagent.runner.spawn import resolve_command

__all__ = ["DoctorReport", "ManifestReport", "run_doctor"]

LIMIT_KEYS = ("memory_mb", "cpu_seconds", "nofile", "nice", "max_output_mb")


@dataclass
class ManifestReport:
    path: Path
    name: str | None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    declared_name: str | None = None  # for manifests that failed: agent.name as written
    plugins: list[dict[str, Any]] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    limits: dict[str, int | None] = field(default_factory=dict)  # [limits], null when unset
    notes: list[str] = field(default_factory=list)  # informational lines (plugin paths)
    claims: str | None = None  # the name this manifest holds (None for a duplicate)
    seen_by_daemon: bool = True  # False when found only through ./agents or ./

    @property
    def status(self) -> Literal["ok", "warnings", "errors"]:
        return "errors" if self.errors else "warnings" if self.warnings else "ok"

    @property
    def label(self) -> str:
        """How the text report names this manifest: always quoted."""
        if self.name or self.declared_name is not None:
            return quote_name(self.name or self.declared_name or "")
        return f"{quote_name(self.path.parent.name)} (its directory name)"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "declared_name": self.name if self.declared_name is None else self.declared_name,
            "claims": self.claims,
            "path": str(self.path), "status": self.status,
            "seen_by_daemon": self.seen_by_daemon,
            "errors": [p.to_json() for p in self.errors],
            "warnings": [p.to_json() for p in self.warnings],
            "schedules": self.schedules,
            "plugins": self.plugins,
            "limits": {key: self.limits.get(key) for key in LIMIT_KEYS},
        }


@dataclass
class DoctorReport:
    home: Path
    roots: list[Path]
    manifests: list[ManifestReport]
    general: list[Problem] = field(default_factory=list)  # about the setup, not one agent
    notes: list[str] = field(default_factory=list)  # said once per run (not findings)

    @property
    def error_count(self) -> int:
        return sum(len(m.errors) for m in self.manifests) + \
            sum(p.severity == "error" for p in self.general)

    @property
    def warning_count(self) -> int:
        return sum(len(m.warnings) for m in self.manifests) + \
            sum(p.severity == "warning" for p in self.general)

    @property
    def agent_count(self) -> int:
        return sum(1 for m in self.manifests if m.name is not None and not m.errors)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "home": str(self.home),
            "roots": [str(r) for r in self.roots],
            "general": [p.to_json() for p in self.general],
            "notes": self.notes,
            "manifests": [m.to_json() for m in self.manifests],
            "summary": {"agents": self.agent_count, "manifests": len(self.manifests),
                        "errors": self.error_count, "warnings": self.warning_count},
            "ok": self.error_count == 0,
        }


def run_doctor(home: Path, env: Mapping[str, str] | None = None,
               found: Discovery | None = None) -> DoctorReport:
    env = os.environ if env is None else env
    found = found or discover(env, include_cwd=True)  # doctor sees what `run` sees (S15.8)
    from dotagent.clock import utc_now
    from dotagent.localzone import local_zone
    from dotagent.paths import Home

    zone, now = local_zone(env), utc_now()
    cache = _cache_findings(home, found)
    unsigned = _signature_findings(home, found, now)
    waiting = _approval_findings(home, found, now)
    plugins = _plugin_findings(home, found, env)
    answers = _plugin_answers(home, found, env, plugins)
    reports: list[ManifestReport] = []
    store, secret_problems = _secrets_findings(home, env)
    enforcement = _enforcement(home)
    for loaded in found.agents.values():
        report = _check_agent(loaded, env)
        _check_agent_secrets(report, loaded, store)
        _check_agent_sandbox(report, loaded, enforcement, env)
        for message in cache.get(loaded.name, []):
            report.warnings.append(Problem(str(loaded.path), None, "", message, "warning"))
        if loaded.name in waiting:
            report.errors.append(Problem(
                str(loaded.path), None, "", f"waits for approval ({waiting[loaded.name]}): "
                "[trust] approve_new_agents is on, so this agent does not run until "
                f"`dotagent approve {loaded.name}`"))
        if loaded.name in unsigned:
            report.errors.append(Problem(
                str(loaded.path), None, "", f"{unsigned[loaded.name]}: [trust] "
                "require_signed_manifests is on, so this agent does not run (`dotagent sign "
                f"{loaded.name}` signs it)"))
        _add_schedules(report, loaded, Home(home), zone, now)
        _add_limits(report, loaded)
        _add_plugins(report, loaded, plugins, env)
        _add_plugin_answers(report, loaded, answers)
        reports.append(report)
    for failure in found.failures:
        reports.append(ManifestReport(failure.path, None, list(failure.errors),
                                      list(failure.warnings), failure.declared_name,
                                      claims=claimed_name(failure)))
    for dup in found.duplicates:
        reports.append(ManifestReport(dup.path, None, [*dup.errors, dup.problem()],
                                      list(dup.warnings),
                                      declared_name=None if dup.by_directory else dup.name))
    for report in reports:
        report.errors.sort(key=Problem.sort_key)
        report.warnings.sort(key=Problem.sort_key)
        if not found.seen_by_daemon(report.path):
            report.seen_by_daemon = False
            root = found.origin.get(report.path)
            report.notes.insert(0, f"not seen by the daemon: found in {printable(str(root))}, "
                                "which only `run` and `doctor` search")
    # Findings about the setup rather than one manifest; each check adds to this list.
    general: list[Problem] = []
    if home.exists() and not home.is_dir():
        general.append(Problem(
            str(home), None, "DOTAGENT_HOME", "the state directory is not a directory; "
            "nothing can be recorded (point DOTAGENT_HOME elsewhere)"))
    general.extend(_state_problems(home))
    general.extend(_pause_problems(home))
    general.extend(_config_problems(home))
    general.extend(_root_problems(env))
    general.extend(_permission_warnings(home, env))
    general.extend(secret_problems)
    notes = []
    if any(loaded.manifest.security is not None for loaded in found.agents.values()):
        notes.append(SECURITY_NOTE)
    # Agents by name, then the manifests with errors by the name they declare; manifests of
    # one name in discovery order, so the one holding a name comes before its duplicates.
    order = {path: i for i, path in enumerate(found.origin)}
    reports.sort(key=lambda r: (r.name is None, r.name or r.declared_name or r.claims or "",
                                order.get(r.path, len(order)), str(r.path)))
    return DoctorReport(home=home, roots=found.roots, manifests=reports, general=general,
                        notes=notes)


SECURITY_NOTE = ("[security] is enforced: network and filesystem_writable through bubblewrap "
                 "(fail closed), env_passthrough and allowed_commands by dotagent, "
                 "allowed_plugins for hooks; a user who can edit the manifest can change all "
                 "of it (see docs/security.md)")


# dotagent's own places that every recording command opens: each must be what dotagent
# creates (or absent), never a FIFO, a device, a directory in a file's place, or a link.
_OWN_PLACES = (("audit.log", "file"), ("audit.log.lock", "file"), ("state", "directory"),
               ("state/audit.head", "file"), ("logs", "directory"))


def _state_problems(home: Path) -> list[Problem]:
    """An unusable state directory (docs/cli.md): what would make every run refuse or lose
    its record. Read-only: statvfs flags and lstat types, nothing created or opened (a
    permission test through access(2) would be wrong for root)."""
    import stat

    if not home.is_dir():
        return []  # said once, by run_doctor
    out: list[Problem] = []
    nothing = "nothing can be recorded"
    try:
        read_only = bool(os.statvfs(home).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        out.append(Problem(str(home), None, "DOTAGENT_HOME", "the state directory is on a "
                           f"read-only file system: {nothing}, and `run` refuses every agent"))
    for rel, want in _OWN_PLACES:
        path = home / rel
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue  # created when first needed
        except OSError as exc:
            out.append(Problem(str(path), None, "", f"cannot be examined: "
                               f"{exc.strerror or exc}; {nothing}"))
            continue
        if stat.S_ISLNK(st.st_mode):
            try:
                to = f" (to {os.readlink(path)})"
            except OSError:
                to = ""
            message = (f"it is a symlink{to}; dotagent does not follow links in its state "
                       f"directory: {nothing} (remove the link)")
        elif want == "file" and not stat.S_ISREG(st.st_mode):
            message = (f"it is {_kind(st.st_mode)}, not a regular file: {nothing} (move it "
                       "aside; dotagent creates the file it needs)")
        elif want == "directory" and not stat.S_ISDIR(st.st_mode):
            message = f"it is not a directory: {nothing} (move it aside)"
        else:
            continue
        out.append(Problem(str(path), None, "", message))
    return out


def _pause_problems(home: Path) -> list[Problem]:
    """A `state/paused.json` that means nothing: every pause it held is ignored."""
    from dotagent.paths import Home
    from dotagent.state.pause import Pauses

    if not home.is_dir():
        return []
    try:
        pauses = Pauses(Home(home))
    except DotagentError:
        return []
    problem = pauses.problem()
    return [] if problem is None else [Problem(str(pauses.path), None, "", problem,
                                               "warning")]


def _kind(mode: int) -> str:
    import stat

    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _root_problems(env: Mapping[str, str]) -> list[Problem]:
    out = []
    for entry in [p for p in env.get("DOTAGENT_ROOT", "").split(os.pathsep) if p]:
        root = Path.cwd() / entry
        if not root.is_dir():
            what = "does not exist" if not root.exists() else "is not a directory"
            out.append(Problem(str(root), None, "DOTAGENT_ROOT",
                               f"entry {entry!r} {what}; nothing is found there", "warning"))
    return out


def _permission_warnings(home: Path, env: Mapping[str, str]) -> list[Problem]:
    """Loose modes on the user's own files (S15.11): reported here, never changed.

    The home directory and config.toml should not be readable or writable by group or
    others, the secrets file must be owner-only (S6 refuses it otherwise), and a manifest or
    manifest directory under `$DOTAGENT_HOME/agents` that others may write lets them change
    what an agent runs. (What dotagent creates itself is kept 0700/0600: see private.py.)
    """
    import stat

    out: list[Problem] = []

    def check(path: Path, mask: int, why: str, fix: str, *, regular: bool = False) -> None:
        try:
            st = path.stat()
        except OSError:
            return
        if regular and not stat.S_ISREG(st.st_mode):
            return  # not a usable file at all: reported as an error where it is read
        mode = stat.S_IMODE(st.st_mode)
        rights = {}
        for cls, shift in (("group", 3), ("others", 0)):
            bits = (mode & mask) >> shift & 0o7
            if bits:
                verbs = [v for v, m in (("read", 0o4), ("write", 0o2)) if bits & m]
                rights[cls] = " and ".join(verbs) or "use"
        if not rights:
            return
        if len(set(rights.values())) == 1:
            access = f"{' and '.join(rights)} may {next(iter(rights.values()))} it"
        else:
            access = ", ".join(f"{cls} may {verbs} it" for cls, verbs in rights.items())
        out.append(Problem(str(path), None, "", f"{access} (mode {mode:04o}){why}: "
                           f"chmod {fix} {path}", "warning"))

    if not home.is_dir():
        return out
    check(home, 0o066, "; it holds agent output and the audit log, and dotagent leaves "
          "its mode to you", "700")
    check(home / "config.toml", 0o066, "; dotagent leaves its mode to you", "600",
          regular=True)
    from dotagent.config import load_config
    from dotagent.secrets import secrets_path

    # A warning, as for the user's other files (S15.11), though the daemon refuses it (S6).
    secrets = secrets_path(home, load_config(home).config, env)
    check(secrets, 0o077, "; secrets must be owner-only, and such a file is refused",
          "600", regular=True)
    agents = home / "agents"
    if agents.is_dir():
        check(agents, 0o022, ", so they could add or replace agents", "go-w")
        with contextlib.suppress(OSError):
            for entry in sorted(agents.iterdir()):
                if entry.is_dir() and (entry / "agent.toml").is_file():
                    check(entry, 0o022, ", so they could replace its manifest", "go-w")
                    check(entry / "agent.toml", 0o022, ", so they could change what the "
                          "agent runs", "go-w")
    return out


def _add_schedules(report: ManifestReport, loaded: LoadedManifest, home: Any, zone: Any,
                   now: Any) -> None:
    """Each schedule's meaning and next fire, so a wrong expression is seen before it bites."""
    from datetime import datetime

    from dotagent.clock import from_epoch
    from dotagent.machineid import jitter_salt
    from dotagent.manifest import ExpressionSchedule, IntervalSchedule
    from dotagent.schedule.oncalendar import parse_cached
    from dotagent.schedule.rules import cron_expression, rule_for
    from dotagent.schedule.windows import ScheduleState, next_due
    from dotagent.state.heartbeat import HeartbeatStore

    def when(t: datetime) -> str:
        return t.astimezone(zone).strftime("%a %Y-%m-%d %H:%M:%S %Z")

    heartbeats = HeartbeatStore(home)
    salt = jitter_salt(home)
    shown = str(loaded.path)
    for i, sched in enumerate(loaded.manifest.schedules):
        info: dict[str, Any] = {"id": sched.id, "type": sched.type, "slug": sched.slug}
        rule = rule_for(sched, zone)
        policy = loaded.manifest.policy(sched, salt=salt)
        if isinstance(sched, IntervalSchedule):
            unreadable: str | None = None
            try:
                beat = heartbeats.read(loaded.name, sched.slug)
                path = heartbeats.path(loaded.name, sched.slug)
                if beat is None and os.path.lexists(path):
                    unreadable = f"heartbeat {path} is unreadable"
            except DotagentError as exc:  # its path leads outside the home: said above too
                beat, unreadable = None, f"heartbeat cannot be used: {exc}"
            if unreadable is not None:
                report.warnings.append(Problem(
                    shown, loaded.line_of(f"schedules[{i}]"), f"schedules[{i}]",
                    f"{unreadable}; the schedule counts as never started", "warning"))
            start = from_epoch(beat.started_at) if beat and beat.started_at \
                else None
            nxt = next_due(rule, ScheduleState(last_start=start), policy, now)
            assert nxt is not None
            info.update(interval_minutes=sched.interval_minutes)
            text = "due now" + (" (never started)" if start is None else "") if nxt <= now \
                else f"next {when(nxt)}"
            report.notes.append(f"schedule {quote_name(sched.id)}: every "
                                f"{sched.interval_minutes} min "
                                f"from its last start → {text}")
        else:
            expression = sched.expression if isinstance(sched, ExpressionSchedule) else \
                cron_expression(sched.weekdays, sched.hours, sched.minute)
            # The next dispatch: the first calendar instant whose delayed instant is after now.
            fire = rule.next_after(now - policy.delay)  # type: ignore[union-attr]
            nxt = None if fire is None else fire + policy.delay
            jitter = loaded.manifest.jitter_seconds(sched)
            info.update(expression=expression,
                        normalized=parse_cached(expression).normalized,
                        timezone=sched.timezone, jitter_seconds=jitter,
                        delay_seconds=policy.delay.total_seconds())
            if nxt is None:
                report.warnings.append(Problem(
                    shown, loaded.line_of(f"schedules[{i}]"), f"schedules[{i}]",
                    f"{info['normalized']!r} has no future elapse: this schedule never fires "
                    "again", "warning"))
            delayed = (f" (jitter_seconds = {jitter}: fires {_seconds(policy.delay)} after "
                       "each calendar instant)") if jitter else ""
            report.notes.append(f"schedule {quote_name(sched.id)}: {info['normalized']} → "
                                f"{'next ' + when(nxt) if nxt else 'never again'}{delayed}")
        info["next_fire"] = nxt.astimezone(zone).isoformat(timespec="seconds") if nxt else None
        report.schedules.append(info)


def _add_limits(report: ManifestReport, loaded: LoadedManifest) -> None:
    """The agent's `[limits]`, as every run gets them (runner/limits.py)."""
    import resource

    from dotagent.runner.limits import MEMORY_RLIMIT, describe

    limits = loaded.manifest.limits
    if limits is None or not limits.declared():
        return
    report.limits = dict(limits.declared())
    memory = f" (as RLIMIT_{MEMORY_RLIMIT.upper()})" if limits.memory_mb is not None else ""
    report.notes.append(f"limits: {describe(limits)}{memory}")
    if limits.nofile is not None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY and limits.nofile > hard:
            report.warnings.append(Problem(
                str(loaded.path), loaded.line_of("limits.nofile"), "limits.nofile",
                f"{limits.nofile} is above this session's hard limit ({hard}); runs get "
                f"{hard}", "warning"))


def _seconds(delay: Any) -> str:
    """A fixed delay for people: `12.345 s`."""
    return f"{delay.total_seconds():.3f} s"


def _plugin_findings(home: Path, found: Discovery, env: Mapping[str, str]) -> Any:
    from dotagent.clock import utc_now
    from dotagent.paths import Home
    from dotagent.security.plugins import check_plugins

    return check_plugins(Home(home), found, utc_now(), env=env, update=False)


def _add_plugins(report: ManifestReport, loaded: LoadedManifest, plugins: Any,
                 env: Mapping[str, str]) -> None:
    from dotagent.plugins.resolve import plugin_search_dirs
    from dotagent.security.plugins import plugin_fields

    shown = str(loaded.path)
    reported: set[str] = set()
    for field_name, name in plugin_fields(loaded.manifest):
        status = plugins.plugins[name]
        line = loaded.line_of(field_name)
        if status.path is None:
            searched = ", ".join(str(d) for d in plugin_search_dirs({**env, "PATH": ""}))
            report.errors.append(Problem(
                shown, line, field_name, f"plugin {quote_name(name)} not found: no "
                f"dotagent-plugin-{name} in {searched} or on PATH"))
            continue
        if name in reported:
            continue
        reported.add(name)
        report.plugins.append({
            "name": name, "path": str(status.path), "sha256": status.sha256,
            "known_sha256": status.known_sha256, "drift": status.drifted})
        report.notes.append(f"plugin {quote_name(name)} → {printable(str(status.path))} "
                            f"(sha256 {status.sha256})")
        if not os.access(status.path, os.X_OK):
            report.warnings.append(Problem(shown, line, field_name,
                                           f"plugin {quote_name(name)} at {status.path} is "
                                           "not executable",
                                           "warning"))
        if status.drifted:
            report.warnings.append(Problem(
                shown, line, field_name,
                f"plugin {quote_name(name)} changed since first seen (registered "
                f"{status.known_sha256[:12]} → now {status.sha256[:12]})", "warning"))


PLUGIN_INFO_TIMEOUT = 10.0
PLUGIN_VALIDATE_TIMEOUT = 30.0
_OS_NAMES = {"linux": "linux", "darwin": "macos"}


def _plugin_configs(loaded: LoadedManifest) -> list[tuple[str, str, Any]]:
    """(field path of the plugin name, plugin, config) for every plugin reference."""
    from dotagent.manifest import PluginNotifier

    out: list[tuple[str, str, Any]] = []
    manifest = loaded.manifest
    for section in ("preflight", "on_success", "on_failure"):
        for i, ref in enumerate(getattr(manifest, section)):
            out.append((f"{section}[{i}].plugin", ref.plugin, ref.config))
    for i, notifier in enumerate(manifest.notifiers):
        if isinstance(notifier, PluginNotifier):
            out.append((f"notifiers[{i}].name", notifier.name, notifier.config))
    return out


def _plugin_answers(home: Path, found: Discovery, env: Mapping[str, str],
                    plugins: Any) -> dict[Any, Any]:
    """`info` of every referenced plugin that resolves, and `validate` of every reference
    with its config (S14.11), all at once in threads; nothing at all when no manifest names
    a plugin, so doctor stays fast then."""
    calls: list[tuple[Any, str, str, Any]] = []  # (key, name, verb, payload)
    for loaded in found.agents.values():
        for field_name, name, config in _plugin_configs(loaded):
            status = plugins.plugins.get(name)
            if status is None or status.path is None:
                continue
            calls.append((("validate", loaded.name, field_name), name, "validate", config))
            if ("info", name) not in {c[0] for c in calls}:
                calls.append((("info", name), name, "info", None))
    if not calls:
        return {}
    from concurrent.futures import ThreadPoolExecutor

    from dotagent.paths import Home
    from dotagent.plugins.client import invoke

    def one(call: tuple[Any, str, str, Any]) -> Any:
        _, name, verb, payload = call
        timeout = PLUGIN_INFO_TIMEOUT if verb == "info" else PLUGIN_VALIDATE_TIMEOUT
        return invoke(name, verb, payload, home=Home(home), env=env,  # type: ignore[arg-type]
                      timeout=timeout)

    with ThreadPoolExecutor(max_workers=min(8, len(calls))) as pool:
        results = list(pool.map(one, calls))
    return {call[0]: result for call, result in zip(calls, results, strict=True)}


def _add_plugin_answers(report: ManifestReport, loaded: LoadedManifest,
                        answers: dict[Any, Any]) -> None:
    if not answers:
        return
    import sys

    shown = str(loaded.path)
    ours = _OS_NAMES.get(sys.platform, sys.platform)
    checked_platform: set[str] = set()
    for field_name, name, _config in _plugin_configs(loaded):
        line = loaded.line_of(field_name)
        info = answers.get(("info", name))
        if info is not None and name not in checked_platform:
            checked_platform.add(name)
            platforms = info.data.get("platforms") if info.ok else None
            if not info.ok:
                report.warnings.append(Problem(shown, line, field_name,
                                               f"plugin {quote_name(name)} info: {info.error}",
                                               "warning"))
            elif isinstance(platforms, list) and platforms and ours not in platforms:
                report.errors.append(Problem(
                    shown, line, field_name,
                    f"plugin {quote_name(name)} does not support {ours} (its info lists "
                    f"platforms {', '.join(str(p) for p in platforms)})"))
        result = answers.get(("validate", loaded.name, field_name))
        if result is None:
            continue
        for entry in report.plugins:
            if entry.get("name") == name:
                entry.setdefault("validate", {})[field_name] = (
                    result.data if result.data else {"ok": False, "error": result.error})
        if result.ok:
            report.notes.append(f"plugin {quote_name(name)} ({field_name}) validate: ok")
        elif result.data.get("ok") is False:
            report.errors.append(Problem(
                shown, line, field_name, f"plugin {quote_name(name)} rejects its config: "
                f"{result.error or 'validate answered ok=false'}"))
        else:
            report.errors.append(Problem(shown, line, field_name,
                                         f"plugin {quote_name(name)} validate failed: "
                                         f"{result.error}"))


def _cache_findings(home: Path, found: Discovery) -> dict[str, list[str]]:
    """Drift and phantoms as the next executing command would see them; writes nothing."""
    from dotagent.clock import utc_now
    from dotagent.paths import Home
    from dotagent.security.manifests import check_manifests, load_cache

    if load_cache(Home(home))[0] is None and not Home(home).audit_log.exists():
        return {}  # first start: everything will be a baseline
    report = check_manifests(Home(home), found, utc_now(), update=False)
    out: dict[str, list[str]] = {}
    for d in report.drifts:
        out.setdefault(d.agent, []).append(
            f"manifest drift since last seen (cached {d.expected_sha256[:12]} → now "
            f"{d.actual_sha256[:12]})")
    for name in report.phantoms:
        out.setdefault(name, []).append(
            "not in known_manifests.json: the next run will report it as a phantom agent")
    return out


def _signature_findings(home: Path, found: Discovery, now: Any) -> dict[str, str]:
    """Agents `[trust]` would refuse, and why; writes and audits nothing. A broken
    config.toml is reported by the config check itself."""
    from dotagent.config import load_config
    from dotagent.paths import Home
    from dotagent.security.trust import check_signatures

    config = load_config(home).config
    if config is None or not config.trust.require_signed_manifests:
        return {}
    return check_signatures(Home(home), found, config.trust, now, update=False).refused


def _approval_findings(home: Path, found: Discovery, now: Any) -> dict[str, str]:
    """Agents waiting for approval under `[trust] approve_new_agents`, and why; read-only."""
    from dotagent.config import load_config
    from dotagent.paths import Home
    from dotagent.security.approval import check_approvals
    from dotagent.security.manifests import check_manifests

    config = load_config(home).config
    if config is None or not config.trust.approve_new_agents:
        return {}

    def fresh() -> list[str]:
        cache = check_manifests(Home(home), found, now, update=False)
        return [*cache.phantoms, *(d.agent for d in cache.drifts)]

    report = check_approvals(Home(home), found, now, unapproved=fresh, update=False)
    return {name: w.reason for name, w in report.waiting.items()}


def _secrets_findings(home: Path, env: Mapping[str, str]) -> tuple[Any, list[Problem]]:
    """The secrets store as the daemon would load it (doctor's own copy: nothing is audited
    or registered), and what is wrong with it: a refusal (mode, kind, a line of the grammar,
    located) is an error; duplicate keys and unreadable `op://` references are warnings."""
    from dotagent.config import load_config
    from dotagent.secrets import (
        SecretsError,
        SecretStore,
        read_store,
        relative_override,
        secrets_path,
    )

    problems: list[Problem] = []
    note = relative_override(env)
    if note is not None:
        problems.append(Problem("", None, "DOTAGENT_SECRETS_FILE", note, "warning"))
    if home.exists() and not home.is_dir():
        return SecretStore.empty(), problems
    path = secrets_path(home, load_config(home).config, env)
    try:
        store = read_store(path, env)
    except FileNotFoundError:
        return SecretStore.empty(), problems
    except SecretsError as exc:
        if exc.message.startswith("insecure permissions"):
            # Already a warning of _permission_warnings (S15.11), which says how to fix it.
            return SecretStore(refused=exc.message), problems
        message = exc.reason if exc.line is not None else exc.message
        if exc.line is None:
            message += "; the daemon refuses this file (no secret is loaded)"
        problems.append(Problem(str(path), exc.line, "", message))
        return SecretStore(refused=exc.message), problems
    for warning in store.warnings:
        problems.append(Problem(str(path), None, "", warning, "warning"))
    return store, problems


def _check_agent_secrets(report: ManifestReport, loaded: LoadedManifest, store: Any) -> None:
    """`[env] secrets` names the store does not hold: the run would not start (an error)."""
    for i, name in enumerate(loaded.manifest.env.secrets):
        if store.get(name) is not None:
            continue
        field_name = f"env.secrets[{i}]"
        if store.refused:
            why = "the secrets file is refused (see below)"
        elif store.path is None:
            why = "there is no secrets file"
        else:
            why = f"{store.path} does not define it"
        report.errors.append(Problem(str(loaded.path), loaded.line_of(field_name), field_name,
                                     f"secret {name} is not available: {why}; runs of this "
                                     "agent will not start"))


def _enforcement(home: Path) -> str:
    from dotagent.config import load_config

    config = load_config(home).config
    return "enforce" if config is None else config.security.enforcement


def _check_agent_sandbox(report: ManifestReport, loaded: LoadedManifest, enforcement: str,
                         env: Mapping[str, str]) -> None:
    """A `[security]` restriction this machine cannot enforce: under "enforce" the agent will
    not run (an error); under "warn" it runs unconfined (a warning)."""
    from dotagent.runner.confine import unenforceable
    from dotagent.sandbox import Policy, select_sandbox

    policy = Policy.from_security(loaded.manifest.security, loaded.working_dir())
    why = unenforceable(policy, select_sandbox(env))
    if why is None:
        return
    field_name = "security.network" if policy.hosts else \
        "security.network" if policy.network == "deny" else "security.filesystem_writable"
    line = loaded.line_of(field_name)
    if enforcement == "warn":
        report.warnings.append(Problem(str(loaded.path), line, field_name,
                                       f"{why}; runs go unconfined ([security] enforcement = "
                                       "\"warn\")", "warning"))
    else:
        report.errors.append(Problem(str(loaded.path), line, field_name,
                                     f"cannot be enforced: {why}; runs of this agent are "
                                     "refused (sandbox_unavailable)"))


def _check_agent(loaded: LoadedManifest, env: Mapping[str, str]) -> ManifestReport:
    report = ManifestReport(loaded.path, loaded.name, warnings=list(loaded.warnings),
                            claims=loaded.name)
    shown = str(loaded.path)
    manifest = loaded.manifest

    def warn(field_name: str, message: str) -> None:
        report.warnings.append(Problem(shown, loaded.line_of(field_name), field_name, message,
                                       "warning"))

    if manifest.security is None:
        warn("", "no [security] section: declare what this agent may run, reach and write "
                 "(see docs/security.md)")
    resolved: str | None = None
    try:
        resolved = resolve_command(manifest.run.command, loaded.working_dir(), env.get("PATH"))
    except SpawnError as exc:
        field_name = "run.working_dir" if exc.message.startswith("working_dir") else \
            "run.command"
        warn(field_name, exc.message)
    by_slug: dict[str, str] = {}
    for i, sched in enumerate(manifest.schedules):
        other = by_slug.setdefault(sched.slug, sched.id)
        if other != sched.id:
            warn(f"schedules[{i}].args",
                 f"schedule {quote_name(sched.id)} derives the same slug {sched.slug!r} as "
                 f"{quote_name(other)}, so they share one heartbeat file; give them distinct "
                 "args")
    for field_name, message in _security_findings(loaded, env, resolved):
        warn(field_name, message)
    if manifest.notifiers:
        from dotagent.notify.doctor import check_entry
        for i, notifier in enumerate(manifest.notifiers):
            for level, key, message in check_entry(notifier, env):
                where = f"notifiers[{i}].{key}"
                if level == "error":
                    report.errors.append(Problem(shown, loaded.line_of(where), where, message))
                else:
                    warn(where, message)
    return report


def _security_findings(loaded: LoadedManifest, env: Mapping[str, str],
                       resolved: str | None) -> list[tuple[str, str]]:
    """Where a manifest contradicts its own `[security]` declaration: what a run would
    refuse (runner.confine), seen in advance."""
    from dotagent.manifest import expand_user
    from dotagent.security.plugins import plugin_fields

    manifest, sec = loaded.manifest, loaded.manifest.security
    if sec is None:
        return []
    out: list[tuple[str, str]] = []
    if sec.allowed_commands:
        from dotagent.runner.confine import command_allowed

        command = manifest.run.command
        if not command_allowed(sec.allowed_commands, command, resolved,
                               working_dir=loaded.working_dir(), path_env=env.get("PATH")):
            where = f" ({resolved})" if resolved and resolved != command else ""
            out.append(("run.command",
                        f"{quote_name(command)}{where} is not in security.allowed_commands "
                        f"({', '.join(quote_name(c) for c in sec.allowed_commands)}); runs "
                        "are refused"))
    if sec.allowed_plugins:
        for field_name, name in plugin_fields(manifest):
            if name not in sec.allowed_plugins:
                out.append((field_name,
                            f"plugin {quote_name(name)} is not in security.allowed_plugins "
                            f"({', '.join(quote_name(p) for p in sec.allowed_plugins)})"))
    for i, entry in enumerate(sec.filesystem_writable):
        if not entry.strip():
            out.append((f"security.filesystem_writable[{i}]",
                        "is empty: name a path (an empty one would mean the working "
                        "directory)"))
            continue
        path = expand_user(entry)
        if not path.is_absolute():
            path = loaded.working_dir() / path
        try:
            exists = os.path.lexists(path)
        except (OSError, ValueError):
            exists = False
        if not exists:
            out.append((f"security.filesystem_writable[{i}]",
                        f"{path} does not exist"))
    return out


def _config_problems(home: Path) -> list[Problem]:
    """config.toml's errors and warnings, located (docs/config.md). Nothing when the home
    itself is not a directory: that is reported once, by run_doctor."""
    if home.exists() and not home.is_dir():
        return []
    from dotagent.config import load_config

    result = load_config(home)
    return sorted([*result.errors, *result.warnings], key=Problem.sort_key)
