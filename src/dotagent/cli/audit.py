"""`dotagent audit verify | acknowledge | show | repair`."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import click

from dotagent.paths import Home

__all__ = ["group"]

_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SEVERITIES = ("info", "notice", "critical")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BARE = re.compile(r"[\w.:/@+-]+")  # shown without quotes


class _StderrWarnings(logging.Handler):
    """Library warnings (lagging head, torn tail moved) as `[dotagent] warning: …` lines on
    stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        # sys.stderr is looked up per message: test runners swap it between invocations.
        sys.stderr.write(f"[dotagent] {record.levelname.lower()}: {record.getMessage()}\n")


def _route_warnings() -> None:
    logger = logging.getLogger("dotagent.audit")
    if not any(isinstance(h, _StderrWarnings) for h in logger.handlers):
        logger.addHandler(_StderrWarnings(logging.WARNING))
        logger.propagate = False


def _audit_log() -> Any:
    from dotagent.audit import AuditLog
    from dotagent.cli.app import invocation_env

    return AuditLog(Home.from_env(invocation_env()))


@click.group("audit")
def group() -> None:
    """Check and read the tamper-evident audit log ($DOTAGENT_HOME/audit.log)."""


class _Refused(click.ClickException):
    """A usage mistake that needs no usage banner: `Error: …`, exit 2."""

    exit_code = 2


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def _head_phrase(report: Any) -> str:
    """`, head record at entry 7 (…)`, saying why when it is not the count just checked."""
    head = report.head
    if head is None:
        return ""
    sha = head.sha256[:12]
    if head.count == report.lines:
        return f", head record at entry {head.count:,} ({sha})"
    if head.count < report.lines:
        return f", head record at entry {head.count:,} ({sha}, behind the log)"
    why = []
    if report.appended:
        why.append(f"{_plural(report.appended, 'entry', 'entries')} recorded by this check")
    others = head.count - report.lines - report.appended
    if others > 0:
        why.append(f"{_plural(others, 'entry', 'entries')} appended meanwhile")
    return f", head record now at entry {head.count:,} ({sha}: {', '.join(why)})"


def _who(ack: Any) -> str:
    if ack.user and ack.uid is not None:
        return f"{ack.user} (uid {ack.uid})"
    return ack.user or (f"uid {ack.uid}" if ack.uid is not None else "someone")


def _verify_lines(report: Any, path: Any) -> Iterator[str]:
    entries = _plural(report.lines, "entry", "entries")
    unacknowledged = report.unacknowledged
    if report.problems:
        verdict = "DAMAGED" if not report.ok else "DAMAGED (acknowledged)"
        yield (f"audit log {verdict}: {_plural(len(report.problems), 'problem')} in {entries}"
               f"{_head_phrase(report)} ({path})")
        for p in report.problems:
            where = "head record" if p.kind == "head" else f"line {p.line}: {p.kind}"
            told = (f" [break {p.record_line}]" if p.record_line is not None
                    else " [not recorded]")
            yield f"  {where} — {p.detail}{told}"
        if report.recorded:
            yield f"recorded {_plural(report.recorded, 'new audit_chain_broken event')}"
    elif unacknowledged:
        yield (f"audit log NOT OK: {_plural(len(unacknowledged), 'recorded break')} not "
               f"acknowledged (the chain itself is intact: {entries}{_head_phrase(report)})")
    else:
        yield f"audit log intact: {entries}{_head_phrase(report)}"
    if report.breaks:
        waiting = (f"{len(unacknowledged):,} not acknowledged" if unacknowledged
                   else "all acknowledged")
        yield (f"recorded breaks: {len(report.breaks):,} ({waiting}), numbered by the line of "
               "their record in the log")
        for b in report.breaks:
            state = ("NOT ACKNOWLEDGED" if b.acknowledged is None else
                     f"acknowledged by {_who(b.acknowledged)} at {b.acknowledged.at}")
            yield f"  break {b.record_line}, recorded {b.recorded_at}: {b.describe()} — {state}"
    if unacknowledged:
        more = " (or --all)" if len(unacknowledged) > 1 else ""
        yield ("once looked into, acknowledge with: dotagent audit acknowledge "
               f"{unacknowledged[0].record_line}{more}")


@group.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def verify(ctx: click.Context, as_json: bool) -> None:
    """Check the hash chain and the head record, and list every break the log records.

    Exit 1 while anything is wrong now or a recorded break is not acknowledged. Each new
    break is itself recorded once as an audit_chain_broken event.
    """
    _route_warnings()
    log = _audit_log()
    from dotagent.private import tighten_home

    tighten_home(log.home)  # S15.11: verify writes too (breaks, a repaired head)
    report = log.verify()
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False))
    elif not log.path.exists() and report.ok and not report.breaks:
        click.echo(f"no audit log yet ({log.path})")
    else:
        for line in _verify_lines(report, log.path):
            click.echo(line)
    if not report.ok:
        ctx.exit(1)


def _whoami() -> tuple[str, int]:
    uid = os.getuid()
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name, uid
    except (ImportError, KeyError):
        return os.environ.get("USER") or os.environ.get("LOGNAME") or "", uid


@group.command("acknowledge")
@click.argument("position", type=click.IntRange(min=1), required=False)
@click.option("--all", "every", is_flag=True,
              help="Acknowledge every recorded break not acknowledged yet.")
def acknowledge(position: int | None, every: bool) -> None:
    """Acknowledge a recorded break once you have looked into it.

    POSITION is the break's number as `dotagent audit verify` lists it ("break 9"): the line
    of its audit_chain_broken entry in audit.log. Who and when are recorded
    (audit_break_acknowledged); verify keeps listing the break, marked acknowledged, and no
    longer fails on it.
    """
    from dotagent.errors import UsageError

    if (position is None) == (not every):
        raise click.UsageError("give the number of one break, as `dotagent audit verify` "
                               "lists it, or --all (not both)")
    _route_warnings()
    user, uid = _whoami()
    log = _audit_log()
    # Judge the log first, as verify does: damage nobody recorded yet is recorded and said
    # before anything is acknowledged (and never acknowledged unseen by --all), and a log
    # that cannot be checked fails here, as verify fails.
    report = log.verify()
    new = report.breaks[len(report.breaks) - report.recorded:]
    for b in new:
        sys.stderr.write(f"[dotagent] critical: the audit log is damaged: {b.describe()} "
                         f"(recorded just now as break {b.record_line}; look into it, then "
                         "acknowledge it)\n")
    fresh = {b.record_line for b in new}
    lines = None if every or position is None else [position]
    if every and new:
        lines = [b.record_line for b in report.unacknowledged if b.record_line not in fresh]
        if not lines:
            waiting = "the break waiting was" if len(new) == 1 else \
                f"the {len(new)} breaks waiting were"
            raise click.ClickException(f"nothing acknowledged: {waiting} recorded just now, by "
                                       "this command")
    elif position in fresh:
        raise click.ClickException(f"break {position} was recorded just now, by this command:"
                                   " look into it first, then acknowledge it")
    try:
        done = log.acknowledge(lines, user=user, uid=uid)
    except UsageError as exc:
        raise _Refused(exc.message) from None
    who = f"{user} (uid {uid})" if user else f"uid {uid}"
    for b in done:
        click.echo(f"acknowledged break {b.record_line} (recorded {b.recorded_at}: "
                   f"{b.describe()}) as {who}")
    if new:
        raise click.exceptions.Exit(1)  # damage waits: like verify, not 0


@group.command("repair")
def repair() -> None:
    """Move a torn final line aside and rebuild a missing or lagging head record.

    Nothing is deleted: damaged bytes go to audit.log.torn-<time> next to the log, and the
    repair is itself recorded (audit_repaired).
    """
    _route_warnings()
    log = _audit_log()
    from dotagent.private import tighten_home

    tighten_home(log.home)  # S15.11
    # The writer already reports each action as a warning; silence that here and print
    # the same notes once, as the command's own output.
    logger = logging.getLogger("dotagent.audit")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        notes = log.repair()
    finally:
        logger.setLevel(previous)
    if not notes:
        click.echo("nothing to repair")
    for note in notes:
        click.echo(note)


@group.command("show")
@click.option("--agent", help="Only events about this agent.")
@click.option("--severity", type=click.Choice(_SEVERITIES), help="Minimum severity.")
@click.option("--event", "event_type", help="Only this event type (e.g. agent_run).")
@click.option("--since", callback=lambda _ctx, _param, value: _parse_since(value),
              help="ISO time (2026-05-19T14:30:00-0300, 2026-05-19) or a duration "
                   "back from now (90m, 2h, 3d, 1w).")
@click.option("-n", "limit", type=click.IntRange(min=1), help="Only the last N matching events.")
@click.option("--json", "as_json", is_flag=True, help="Print the matching lines exactly as stored.")
def show(agent: str | None, severity: str | None, event_type: str | None,
         since: datetime | None, limit: int | None, as_json: bool) -> None:
    """Print audit events, oldest first.

    A line that is not an audit entry (unparsable, or not shaped like one) is printed as
    `?  unreadable line N: …` whatever the filters: it cannot be judged against them, and
    hiding it would hide damage.
    """
    reader = _audit_log().reader()
    if reader is None:
        return
    min_rank = _SEVERITIES.index(severity) if severity else 0
    matches: Iterator[tuple[int, str, dict[str, Any] | None]] = _matching(
        reader, agent, min_rank, event_type, since)
    selected: Any = deque(matches, maxlen=limit) if limit else matches
    if as_json:
        for _line_no, raw, _entry in selected:
            click.echo(raw)
        return
    render = _rich_renderer() if _use_colour() else None
    for line_no, raw, entry in selected:
        if entry is None:
            click.echo(_unreadable(line_no, raw))
        elif render is not None:
            render(entry)
        else:
            click.echo(_plain(entry))


def _unreadable(line_no: int, raw: str) -> str:
    shown = raw if len(raw) <= 120 else raw[:119] + "…"
    return f"?  unreadable line {line_no}: {shown!r}"


def _entry_of(text: str) -> dict[str, Any] | None:
    """The entry on a line, or None when the line is not shaped like one."""
    try:
        entry = json.loads(text)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    event = entry.get("event")
    if not (isinstance(event, dict) and isinstance(event.get("event_type"), str)
            and isinstance(entry.get("ts"), str) and isinstance(entry.get("severity"), str)):
        return None
    return entry


def _matching(reader: Any, agent: str | None, min_rank: int, event_type: str | None,
              cutoff: datetime | None) -> Iterator[tuple[int, str, dict[str, Any] | None]]:
    with reader as fh:
        for line_no, raw in enumerate(fh, start=1):
            text = raw.rstrip(b"\n").decode("utf-8", "replace")
            if not text.strip():
                continue
            entry = _entry_of(text)
            if entry is None:
                yield line_no, text, None
                continue
            event = entry["event"]
            if agent is not None and event.get("agent") != agent:
                continue
            if event_type is not None and event.get("event_type") != event_type:
                continue
            if min_rank and _rank(entry.get("severity")) < min_rank:
                continue
            if cutoff is not None:
                when = _when(entry.get("ts"))
                if when is None or when < cutoff:
                    continue
            yield line_no, text, entry


def _when(ts: Any) -> datetime | None:
    if not isinstance(ts, str):
        return None
    try:
        return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None


def _rank(severity: Any) -> int:
    return _SEVERITIES.index(severity) if isinstance(severity, str) and \
        severity in _SEVERITIES else 0


def _parse_since(value: str | None) -> datetime | None:
    """--since as an aware datetime; a usage error (exit 2) for anything unusable."""
    if value is None:
        return None
    text = value.strip()
    m = _DURATION.fullmatch(text)
    if not m:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is neither an ISO time (2026-05-19T14:30:00-0300, 2026-05-19) "
                "nor a duration (90m, 2h, 3d, 1w)", param_hint="'--since'") from None
    try:
        if m:
            delta = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
            return datetime.now().astimezone() - delta
        return when.astimezone()  # a value without an offset means local time
    except (OverflowError, ValueError, OSError):
        # The duration, or the time in local time, falls outside the years datetime can
        # hold (1–9999), or the platform cannot convert it.
        raise click.BadParameter(f"{value!r} is out of range (years 1–9999 only)",
                                 param_hint="'--since'") from None


def _fields(event: dict[str, Any]) -> str:
    parts = []
    for key, value in event.items():
        if key == "event_type" or value is None:
            continue
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else \
            json.dumps(value)
        if isinstance(value, str) and _SHA256.fullmatch(value):
            shown = value[:12] + "…"  # full hashes are in --json; twelve digits identify one
        elif isinstance(value, str) and _BARE.fullmatch(value):
            shown = value
        if len(shown) > 200:
            shown = shown[:197] + "…"
        parts.append(f"{key}={shown}")
    return " ".join(parts)


def _plain(entry: dict[str, Any]) -> str:
    event = entry["event"]
    return (f"{entry.get('ts', '?')!s}  {entry.get('severity', '?')!s:<8}  "
            f"{event.get('event_type', '?')!s:<24}  {_fields(event)}").rstrip()


def _use_colour() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _rich_renderer() -> Any:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    styles = {"critical": "bold red", "notice": "yellow", "info": "dim"}

    def render(entry: dict[str, Any]) -> None:
        event = entry["event"]
        sev = str(entry.get("severity", "?"))
        style = styles.get(sev, "none")
        console.print(f"[dim]{escape(str(entry.get('ts', '?')))}[/]  "
                      f"[{style}]{sev:<8}[/]  [bold]{escape(str(event.get('event_type', '?'))):<24}"
                      f"[/]  {escape(_fields(event))}")

    return render
