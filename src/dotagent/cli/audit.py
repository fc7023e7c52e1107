"""`dotagent audit verify | acknowledge | show | repair`.

The log may span rotated segments (`audit.log.<stamp>`, linked by `audit_log_rotated` seams):
`verify --full` walks them, `show` reads them by default, and a break recorded in a segment
is numbered `SEGMENT:LINE`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import click

from dotagent.cli._since import SINCE_HELP, parse_since
from dotagent.paths import Home

__all__ = ["group"]

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
    live = report.live_lines
    of = " of audit.log" if report.lines != live else ""
    if head.count == live:
        return f", head record at entry {head.count:,}{of} ({sha})"
    if head.count < live:
        return f", head record at entry {head.count:,}{of} ({sha}, behind the log)"
    why = []
    if report.appended:
        why.append(f"{_plural(report.appended, 'entry', 'entries')} recorded by this check")
    others = head.count - live - report.appended
    if others > 0:
        why.append(f"{_plural(others, 'entry', 'entries')} appended meanwhile")
    return f", head record now at entry {head.count:,}{of} ({sha}: {', '.join(why)})"


def _who(ack: Any) -> str:
    if ack.user and ack.uid is not None:
        return f"{ack.user} (uid {ack.uid})"
    return ack.user or (f"uid {ack.uid}" if ack.uid is not None else "someone")


def _verify_lines(report: Any, path: Any) -> Iterator[str]:
    entries = _plural(report.lines, "entry", "entries")
    if report.scope == "full" and report.walked:
        entries += f" in {len(report.walked) + 1} files"
    unacknowledged = report.unacknowledged
    if report.problems:
        verdict = "DAMAGED" if not report.ok else "DAMAGED (acknowledged)"
        yield (f"audit log {verdict}: {_plural(len(report.problems), 'problem')} in {entries}"
               f"{_head_phrase(report)} ({path})")
        for p in report.problems:
            where = "head record" if p.kind == "head" else f"line {p.line}: {p.kind}"
            if p.segment:
                where = f"{p.segment} {where}"
            told = f" [break {p.record}]" if p.record is not None else " [not recorded]"
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
            yield f"  break {b.number}, recorded {b.recorded_at}: {b.describe()} — {state}"
    if unacknowledged:
        more = " (or --all)" if len(unacknowledged) > 1 else ""
        yield ("once looked into, acknowledge with: dotagent audit acknowledge "
               f"{unacknowledged[0].number}{more}")
    yield _status_line(report)
    for warning in report.unreached:
        yield f"  not reached along the seams: {warning}"
    yield f"file: {path}"
    yield ("scope: full (every segment along the seams)" if report.scope == "full" else
           "scope: current segment" + (" (--full walks the rotated segments too)"
                                       if report.segments else ""))
    yield f"segments: {_segments_phrase(report.segments)}"


def _segments_phrase(names: list[str]) -> str:
    if not names:
        return "none — the log has never rotated"
    if len(names) <= 4:
        return ", ".join(names)
    return f"{len(names):,} (oldest {names[0]}, newest {names[-1]})"


def _status_line(report: Any) -> str:
    """Upstream's verdict (UPSTREAM-0.6 §1): ✓ or ✗ and what the walk along the seams found."""
    st = report.status
    if st.status == "intact_from_genesis":
        text = "✓ chain intact from genesis"
    elif st.status == "intact_since_rotation":
        where = (f"{st.segment} holds the {st.entries_before:,} entries before it"
                 if st.segment_present else
                 f"{st.segment}, with the {st.entries_before:,} entries before it, is not on "
                 "disk: earlier history cannot be checked")
        text = f"✓ chain intact since rotation at {st.since_ts} ({where})"
    elif st.status == "unexplained_truncation":
        text = (f"✗ unexplained truncation: the first entry chains to "
                f"{(st.orphan_prev_hash or '')[:12]}, which is neither GENESIS nor a seam")
    else:
        where = st.segment or "audit.log"
        text = (f"✗ chain broken at entry {st.position} of {where}: expected {_short(st.expected)}"
                f", found {_short(st.actual)}")
    if _use_colour():
        return click.style(text, fg="green" if st.intact else "red")
    return text


def _short(value: str | None) -> str:
    text = value or ""
    return text[:12] if _SHA256.fullmatch(text) else text


@group.command("verify")
@click.option("--full", is_flag=True,
              help="Walk back along the rotation seams and check every segment too.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def verify(ctx: click.Context, full: bool, as_json: bool) -> None:
    """Check the hash chain and the head record, and list every break the log records.

    Without --full the chain of the live audit.log is checked (and its seam's claim, after a
    rotation); breaks recorded in every segment are listed either way. Exit 1 while
    anything is wrong now or a recorded break is not acknowledged. Each new break is itself
    recorded once as an audit_chain_broken event.
    """
    _route_warnings()
    log = _audit_log()
    from dotagent.private import tighten_home

    tighten_home(log.home)  # S15.11: verify writes too (breaks, a repaired head)
    report = log.verify(full=full)
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False))
    elif not log.path.exists() and report.ok and not report.breaks and not report.segments:
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
@click.argument("position", required=False)
@click.option("--all", "every", is_flag=True,
              help="Acknowledge every recorded break not acknowledged yet.")
def acknowledge(position: str | None, every: bool) -> None:
    """Acknowledge a recorded break once you have looked into it.

    POSITION is the break's number as `dotagent audit verify` lists it ("break 9"): the line
    of its audit_chain_broken entry in audit.log, or SEGMENT:LINE for a record that has
    been rotated into a segment ("break audit.log.20260826T101500:9"). Who and when are
    recorded (audit_break_acknowledged); verify keeps listing the break, marked
    acknowledged, and no longer fails on it.
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
                         f"(recorded just now as break {b.number}; look into it, then "
                         "acknowledge it)\n")
    fresh = {b.number for b in new}
    lines: list[str | tuple[str | None, int]] | None = \
        None if every or position is None else [position]
    if every and new:
        lines = [(b.record_segment, b.record_line) for b in report.unacknowledged
                 if b.number not in fresh]
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
        click.echo(f"acknowledged break {b.number} (recorded {b.recorded_at}: "
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
@click.option("--since", callback=lambda _ctx, _param, value: parse_since(value),
              help=SINCE_HELP)
@click.option("-n", "limit", type=click.IntRange(min=1), help="Only the last N matching events.")
@click.option("--current-segment", "current", is_flag=True,
              help="Only the live audit.log, not the rotated segments before it.")
@click.option("--json", "as_json", is_flag=True, help="Print the matching lines exactly as stored.")
def show(agent: str | None, severity: str | None, event_type: str | None,
         since: datetime | None, limit: int | None, current: bool, as_json: bool) -> None:
    """Print audit events, oldest first, across the rotated segments.

    The segments are read back along the rotation seams (not by name); with -n only as far
    back as needed, with --since not past a segment rotated away before that time.

    A line that is not an audit entry (unparsable, or not shaped like one) is printed as
    `?  unreadable line N: …` (`SEGMENT:N` in a rotated segment) whatever the filters: it
    cannot be judged against them, and hiding it would hide damage.
    """
    from dotagent.audit.rotation import first_entry, parse_seam

    log = _audit_log()
    min_rank = _SEVERITIES.index(severity) if severity else 0
    # Newest file first: -n stops as soon as enough lines are found, --since at the first
    # segment rotated away before the cutoff (the seam that names it says when).
    chunks: list[tuple[str | None, Any]] = []
    need = limit
    for name, fh in log.readers(newest_first=True):
        rotated = parse_seam(first_entry(fh.fileno()) or b"", log.path.name)
        matches = _matching(fh, agent, min_rank, event_type, since)
        found: Any = deque(matches, maxlen=need) if need else list(matches)
        chunks.append((name, found))
        if need is not None:
            need -= len(found)
            if need <= 0:
                break
        when = _when(rotated.ts) if rotated is not None else None
        if current or (since is not None and when is not None and when < since):
            # Everything older was written before that rotation, before the cutoff.
            break
    render = None if as_json or not _use_colour() else _rich_renderer()
    for name, found in reversed(chunks):
        for line_no, raw, entry in found:
            if as_json:
                click.echo(raw)
            elif entry is None:
                click.echo(_unreadable(line_no, raw, name))
            elif render is not None:
                render(entry)
            else:
                click.echo(_plain(entry))


def _unreadable(line_no: int, raw: str, segment: str | None = None) -> str:
    shown = raw if len(raw) <= 120 else raw[:119] + "…"
    where = f"{segment}:{line_no}" if segment else str(line_no)
    return f"?  unreadable line {where}: {shown!r}"


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


def _matching(fh: Any, agent: str | None, min_rank: int, event_type: str | None,
              cutoff: datetime | None) -> Iterator[tuple[int, str, dict[str, Any] | None]]:
    """The lines of one file (read from its start) that pass the filters, numbered."""
    fh.seek(0)
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
