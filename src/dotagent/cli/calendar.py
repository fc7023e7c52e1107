"""`dotagent calendar`: what OnCalendar expressions mean, laid out like `systemd-analyze calendar`.

The engine (dotagent.schedule.oncalendar) is pure; this shell supplies what it must not read
itself: the local zone ($TZ, else /etc/localtime, else UTC) and the real clock (default base
time and the "From now" line).
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import click

from dotagent.errors import DotagentError
from dotagent.localzone import LeapZone, at_time_t, local_zone, without_leaps

__all__ = ["command", "format_relative", "parse_base_time", "render_human"]

USEC = 1_000_000
_NAME_WIDTH = len("Normalized form:")  # systemd right-aligns the labels to the widest one
# systemd's format_timestamp_relative() units (time-util.h): a month is 30.44 days.
_MINUTE = 60 * USEC
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
_WEEK = 7 * _DAY
_MONTH = 2629800 * USEC
_YEAR = 31557600 * USEC
# systemd's parse_time() refuses @SECONDS whose whole part reaches USEC_INFINITY / 10**6 ...
_BASE_LIMIT_SECONDS = (2**64 - 1) // USEC
# ... and calendar_spec_next_usec() refuses base times after USEC_TIMESTAMP_FORMATTABLE_MAX.
FORMATTABLE_MAX_USEC = 253402214399 * USEC  # Thu 9999-12-30 23:59:59 UTC
# systemd's format_timestamp() leaves out a zone abbreviation that does not fit its buffer.
_MAX_SHOWN_ABBREVIATION = 13


def parse_base_time(text: str, zone: ZoneInfo, now_usec: int | None = None) -> int:
    """`now`, `@EPOCH[.frac]` or ISO-8601 (no offset means local time) -> epoch microseconds.

    A local time is resolved as systemd's parse_timestamp() resolves it: glibc's mktime() with
    tm_isdst = -1 in a process that has not called it before. So a time in the hour repeated
    in autumn is read as mktime then reads it (Berlin: the second pass, 02:30 CET; New York:
    the first, 01:30 EDT), and one in the hour skipped in spring moves forward by the gap.
    Like systemd, times before 1970 and `@SECONDS` of 2**64 microseconds or more are refused.
    """
    value = text.strip()
    if value == "now":
        return time.time_ns() // 1000 if now_usec is None else now_usec
    if value.startswith("@"):
        try:
            seconds = float(value[1:]) if "." in value else int(value[1:])
        except ValueError:
            raise DotagentError(f"invalid base time {text!r}: expected @SECONDS") from None
        whole = int(value[1:].partition(".")[0] or "0") if isinstance(seconds, float) else seconds
        if value[1:].startswith("-") or whole >= _BASE_LIMIT_SECONDS:
            raise _out_of_range(text)
        if isinstance(seconds, float):
            frac = value[1:].partition(".")[2]
            return whole * USEC + int((frac + "000000")[:6])
        return seconds * USEC
    # systemd (strptime) also takes a leap second's :60; datetime does not, so read :59 + 1 s.
    leap = re.fullmatch(r"(.*\d:\d\d):60((?:[.,]\d+)?)(.*)", value)
    extra = 1 if leap else 0
    if leap:
        value = f"{leap[1]}:59{leap[2]}{leap[3]}"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise DotagentError(
            f"invalid base time {text!r}: expected now, @SECONDS or ISO-8601 "
            "(e.g. 2026-03-09T06:30:00, 2026-03-09 06:30+01:00)"
        ) from None
    if moment.tzinfo is None:
        from dotagent.schedule.oncalendar import local_mktime

        seconds = local_mktime(zone, (moment.year, moment.month, moment.day, moment.hour,
                                      moment.minute, moment.second + extra))
        usec = seconds * USEC + moment.microsecond
    else:
        usec = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) \
            + extra * USEC
    if usec < 0:
        raise _out_of_range(text)
    return usec


def _out_of_range(text: str) -> DotagentError:
    return DotagentError(f"invalid base time {text!r}: out of range "
                         f"(from @0, 1970-01-01 UTC, up to below @{_BASE_LIMIT_SECONDS})")


def _in_utc(zone: ZoneInfo) -> bool:
    # systemd-analyze omits "(in UTC)" when glibc says timezone == 0 and daylight == 0
    # (leap seconds do not count: right/UTC has no "(in UTC)" line).
    zone = without_leaps(zone)
    for month in (1, 7):
        probe = datetime(2100, month, 1, tzinfo=zone)
        if probe.utcoffset() != timedelta(0) or probe.dst():
            return False
    return True


def format_timestamp(usec: int, zone: ZoneInfo | timezone) -> str:
    """systemd's format_timestamp(): 'Tue 2026-03-10 06:30:00 CET' (no fractions)."""
    if isinstance(zone, LeapZone):
        local, hit, raw = zone.localtime(usec // USEC)
        return _stamp(local, hit) + _shown_name(raw.tzname())
    moment = at_time_t(usec // USEC, zone)
    return moment.strftime("%a %Y-%m-%d %H:%M:%S") + _shown_name(moment.tzname())


def format_utc_timestamp(usec: int, local: ZoneInfo) -> str:
    """The "(in UTC)" line: glibc's gmtime(), which under a leap-second zone ($TZ=right/…)
    subtracts the leap correction too (and shows an inserted second as :60)."""
    if isinstance(local, LeapZone):
        seconds, hit = local.utc(usec // USEC)
        return _stamp(seconds, hit) + " UTC"
    return format_timestamp(usec, UTC)


def _shown_name(name: str | None) -> str:
    return f" {name}" if name and len(name) <= _MAX_SHOWN_ABBREVIATION else ""


def _stamp(seconds: int, hit: int) -> str:
    """'Sat 2016-12-31 23:59:60' for local seconds (as if UTC) plus `hit` leap seconds."""
    moment = datetime(1970, 1, 1) + timedelta(seconds=seconds)
    return moment.strftime("%a %Y-%m-%d %H:%M:") + f"{moment.second + hit:02d}"


def format_relative(usec: int, now_usec: int) -> str:
    """systemd's format_timestamp_relative() as of v252."""
    if now_usec > usec:
        d, suffix = now_usec - usec, "ago"
    else:
        d, suffix = usec - now_usec, "left"

    def plural(n: int, unit: str) -> str:
        return f"{n} {unit}" if n == 1 else f"{n} {unit}s"

    if d >= _YEAR:
        years, months = d // _YEAR, (d % _YEAR) // _MONTH
        return f"{plural(years, 'year')} {plural(months, 'month')} {suffix}"
    if d >= _MONTH:
        months, days = d // _MONTH, (d % _MONTH) // _DAY
        return f"{plural(months, 'month')} {plural(days, 'day')} {suffix}"
    if d >= _WEEK:
        weeks, days = d // _WEEK, (d % _WEEK) // _DAY
        return f"{plural(weeks, 'week')} {plural(days, 'day')} {suffix}"
    if d >= 2 * _DAY:
        return f"{d // _DAY} days {suffix}"
    if d >= 25 * _HOUR:
        return f"1 day {(d - _DAY) // _HOUR}h {suffix}"
    if d >= 6 * _HOUR:
        return f"{d // _HOUR}h {suffix}"
    if d >= _HOUR:
        return f"{d // _HOUR}h {(d % _HOUR) // _MINUTE}min {suffix}"
    if d >= 5 * _MINUTE:
        return f"{d // _MINUTE}min {suffix}"
    if d >= _MINUTE:
        return f"{d // _MINUTE}min {(d % _MINUTE) // USEC}s {suffix}"
    if d >= USEC:
        return f"{d // USEC}s {suffix}"
    if d >= 1000:
        return f"{d // 1000}ms {suffix}"
    if d > 0:
        return f"{d}us {suffix}"
    return "now"


def _iso(usec: int, zone: ZoneInfo) -> str:
    if isinstance(zone, LeapZone):
        # The wall clock glibc shows, with the offset that turns it back into this time_t
        # (it includes the leap correction, e.g. -00:00:27); an inserted second is :60.
        t = usec // USEC
        local, hit, _raw = zone.localtime(t)
        offset = local + hit - t
        moment = datetime(1970, 1, 1) + timedelta(seconds=local)
        frac = f".{usec % USEC:06d}" if usec % USEC else ""
        sign = "-" if offset < 0 else "+"
        hours, rest = divmod(abs(offset), 3600)
        minutes, secs = divmod(rest, 60)
        shown = f"{sign}{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")
        return moment.strftime("%Y-%m-%dT%H:%M:") + f"{moment.second + hit:02d}{frac}{shown}"
    moment = at_time_t(usec // USEC, zone, usec % USEC)
    return moment.isoformat(timespec="microseconds" if usec % USEC else "seconds")


def render_human(
    expression: str,
    normalized: str,
    elapses: list[int],
    zone: ZoneInfo,
    now_usec: int,
    never: bool | None = None,
) -> str:
    """The table `systemd-analyze calendar` prints for one expression.

    `never` (default: no elapses) adds "Next elapse: never"; with --iterations 0 systemd
    prints neither elapses nor that line.
    """
    rows: list[tuple[str, str]] = []
    if normalized != expression:
        rows.append(("Original form:", expression))
    rows.append(("Normalized form:", normalized))
    if not elapses if never is None else never:
        rows.append(("Next elapse:", "never"))
    show_utc = not _in_utc(zone)
    for i, usec in enumerate(elapses):
        label = "Next elapse:" if i == 0 else f"Iter. #{i + 1}:"
        rows.append((label, format_timestamp(usec, zone)))
        if show_utc:
            rows.append(("(in UTC):", format_utc_timestamp(usec, zone)))
        rows.append(("From now:", format_relative(usec, now_usec)))
    return "".join(f"{name:>{_NAME_WIDTH}} {value}\n" for name, value in rows)


def _elapses(spec: object, base_usec: int, zone: ZoneInfo, iterations: int) -> list[int]:
    from dotagent.schedule.oncalendar import CalendarSpec

    assert isinstance(spec, CalendarSpec)
    out: list[int] = []
    usec = base_usec
    for _ in range(iterations):
        nxt = spec.next_elapse_usec(usec, zone)
        if nxt is None:
            break
        out.append(nxt)
        usec = nxt
    return out


@click.command("calendar")
@click.option("--iterations", "-n", type=click.IntRange(min=0), default=1, show_default=True,
              help="How many elapses to show (0: only the normalized form).")
@click.option("--base-time", metavar="T",
              help="Compute from T instead of now: now, @EPOCH or ISO-8601 "
                   "(no offset = local time).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.argument("expressions", nargs=-1, required=True, metavar="EXPR...")
def command(iterations: int, base_time: str | None, as_json: bool,
            expressions: tuple[str, ...]) -> None:
    """Show what OnCalendar expressions mean and when they elapse next, like
    `systemd-analyze calendar`.

    \b
    Examples:
      dotagent calendar 'Mon..Fri 08:30'
      dotagent calendar --iterations 5 '*-*~01 18:00 Europe/Berlin'
      dotagent calendar --base-time 2026-03-29T01:00 --json '*-*-* 02:30'
    """
    from dotagent.schedule.oncalendar import parse

    zone = local_zone()
    now_usec = time.time_ns() // 1000
    base_usec = now_usec if base_time is None else parse_base_time(base_time, zone, now_usec)

    documents: list[dict[str, object]] = []
    errors: list[str] = []
    chunks: list[str] = []
    for expression in expressions:
        try:
            spec = parse(expression, zone)
            if iterations and base_usec > FORMATTABLE_MAX_USEC:
                # systemd: "Failed to determine next elapse for '…': Invalid argument"
                raise DotagentError(
                    f"cannot determine the next elapse of {expression!r}: the base time is "
                    "after 9999-12-30 23:59:59 UTC")
            elapses = _elapses(spec, base_usec, zone, iterations)
        except DotagentError as exc:  # a syntax error, or systemd's own search gave up
            errors.append(exc.message)
            chunks.append("")
            documents.append({"input": expression, "error": exc.message})
            continue
        if as_json:
            documents.append({"expression": expression, "normalized": spec.normalized,
                              "next": [_iso(u, zone) for u in elapses]})
        else:
            chunks.append(render_human(expression, spec.normalized, elapses, zone, now_usec,
                                       never=iterations > 0 and not elapses))

    if as_json:
        # One entry per argument, in order (a failed one as {"input", "error"}); a single
        # expression is a single object.
        payload: object = documents[0] if len(expressions) == 1 else documents
        # An argument that is not UTF-8 holds lone surrogates (\udcff for the byte 0xff):
        # written as JSON escapes, so the output stays valid UTF-8 and reads back the same.
        text = json.dumps(payload, ensure_ascii=False, indent=2)
        click.echo(text.encode("utf-8", "backslashreplace").decode("utf-8"))
    else:
        # Like systemd-analyze: one blank line between expressions, invalid ones print nothing.
        click.echo("\n".join(chunks), nl=False)
    if errors:
        raise DotagentError("\n".join(errors) if len(errors) == 1 else
                            "\nError: ".join(errors))
