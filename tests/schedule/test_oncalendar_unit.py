"""Unit tests for the OnCalendar engine and `dotagent calendar`.

Expected instants here were taken from systemd-analyze 252; the oracle test covers the
breadth, these pin down the API and the behaviours people ask about.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dotagent.cli import calendar as cli_calendar
from dotagent.cli.app import run_app
from dotagent.errors import DotagentError
from dotagent.schedule import CalendarSyntaxError, parse, parse_cached

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def at(zone: ZoneInfo, *fields: int, fold: int = 0) -> datetime:
    return datetime(*fields, tzinfo=zone, fold=fold)  # type: ignore[misc]


def elapses(expr: str, start: datetime, zone: ZoneInfo, n: int) -> list[str]:
    spec = parse(expr, zone)
    out: list[str] = []
    moment: datetime | None = start
    for _ in range(n):
        assert moment is not None
        moment = spec.next_elapse(moment, zone)
        if moment is None:
            break
        out.append(moment.isoformat())
    return out


# ---------------------------------------------------------------------------------- parsing


def test_error_says_what_and_where() -> None:
    with pytest.raises(CalendarSyntaxError) as err:
        parse("Mon *-*-* 25:00")
    assert str(err.value) == (
        "invalid calendar expression 'Mon *-*-* 25:00': hour 25 is out of range (0..23)"
    )
    assert isinstance(err.value, DotagentError)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty expression"),
        ("Mond", "after weekday name"),
        ("Fri..Mon", "runs backwards"),
        ("*:0/0", "repetition '/0'"),
        ("12:00:5.", "digits after the decimal point"),
        ("*-02~29", "out of range (1..28)"),
        ("1969-01-01", "year 1969 is out of range (1970..2199)"),
        ("*:*:1.5..2", "shorter than its default one-second step"),
        ("12:00 Foo/Bar", "'Foo/Bar' is not a known time zone"),
    ],
)
def test_rejections_explain_themselves(text: str, fragment: str) -> None:
    with pytest.raises(CalendarSyntaxError) as err:
        parse(text)
    assert fragment in err.value.reason


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("daily", "*-*-* 00:00:00"),
        ("Sat,Sun", "Sat,Sun *-*-* 00:00:00"),
        ("Mon,Tue,Wed,Fri", "Mon..Wed,Fri *-*-* 00:00:00"),
        ("quarterly", "*-01,04,07,10-01 00:00:00"),
        ("*-02~03", "*-02~03 00:00:00"),
        ("*:*:0/0.5", "*-*-* *:*:00/0.500000"),
        ("12:00:30.25", "*-*-* 12:00:30.250000"),
        ("24-06-15", "2024-06-15 00:00:00"),
        ("99-06-15", "1999-06-15 00:00:00"),
        ("*:10..12/5", "*-*-* *:10:00"),
        ("*-*-* 12:00 utc", "*-*-* 12:00:00 UTC"),
        ("weekly Europe/Berlin", "Mon *-*-* 00:00:00 Europe/Berlin"),
        ("@1700000000", "2023-11-14 22:13:20 UTC"),
    ],
)
def test_normalized_form(text: str, normalized: str) -> None:
    assert parse(text).normalized == normalized


def test_local_abbreviation_pins_the_zone_name() -> None:
    assert parse("daily cet", BERLIN).normalized == "*-*-* 00:00:00 CET"


def test_specs_are_values() -> None:
    a, b = parse("Mon..Fri 08:30"), parse("Mon..Fri 08:30")
    assert a == b and hash(a) == hash(b)
    assert parse_cached("hourly") is parse_cached("hourly")
    with pytest.raises(AttributeError):
        a.text = "x"  # type: ignore[misc]


# ---------------------------------------------------------------------------- next elapse


def test_next_elapse_is_strictly_after_and_in_the_local_zone() -> None:
    spec = parse("Mon..Fri 08:30")
    start = at(BERLIN, 2026, 3, 9, 8, 30)  # a Monday, exactly on an elapse
    nxt = spec.next_elapse(start, BERLIN)
    assert nxt == at(BERLIN, 2026, 3, 10, 8, 30)
    assert nxt is not None and nxt.tzinfo is BERLIN


def test_zone_in_the_expression_wins() -> None:
    nxt = parse("*-*-* 12:00 America/New_York").next_elapse(at(BERLIN, 2026, 3, 9), BERLIN)
    assert nxt is not None and nxt.isoformat() == "2026-03-09T12:00:00-04:00"
    assert nxt.tzinfo == NEW_YORK


def test_fractional_seconds_keep_microseconds() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert elapses("*:*:0/0.25", start, ZoneInfo("UTC"), 3) == [
        "2026-01-01T00:00:00.250000+00:00",
        "2026-01-01T00:00:00.500000+00:00",
        "2026-01-01T00:00:00.750000+00:00",
    ]


def test_nonexistent_local_time_is_skipped() -> None:
    # 2024-03-31 02:30 does not exist in Berlin; systemd fires the next day.
    assert elapses("*-*-* 02:30", at(BERLIN, 2024, 3, 31, 1, 0), BERLIN, 2) == [
        "2024-04-01T02:30:00+02:00",
        "2024-04-02T02:30:00+02:00",
    ]


def test_repeated_hour_fires_once() -> None:
    # 02:30 happens twice on 2024-10-27 in Berlin; systemd keeps the first (CEST) only.
    assert elapses("*:30", at(BERLIN, 2024, 10, 27, 1, 59), BERLIN, 3) == [
        "2024-10-27T02:30:00+02:00",
        "2024-10-27T03:30:00+01:00",
        "2024-10-27T04:30:00+01:00",
    ]


def test_thirty_minute_dst_in_lord_howe() -> None:
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    assert elapses("*:0/30", at(lord_howe, 2024, 10, 6, 1, 0), lord_howe, 3) == [
        "2024-10-06T01:30:00+10:30",
        "2024-10-06T02:30:00+11:00",
        "2024-10-06T03:00:00+11:00",
    ]


def test_feb_29_and_end_of_month() -> None:
    utc = ZoneInfo("UTC")
    assert elapses("*-02-29", at(utc, 2024, 3, 1), utc, 1) == ["2028-02-29T00:00:00+00:00"]
    assert elapses("*-02~01", at(utc, 2023, 12, 1), utc, 2) == [
        "2024-02-29T00:00:00+00:00",
        "2025-02-28T00:00:00+00:00",
    ]


def test_never_again() -> None:
    assert parse("2024-01-01").next_elapse(at(BERLIN, 2025, 1, 1), BERLIN) is None
    assert parse("*-02-30").next_elapse(at(BERLIN, 2025, 1, 1), BERLIN) is None


def test_matches() -> None:
    spec = parse("Sat,Sun 10:00")
    assert spec.matches(at(BERLIN, 2026, 3, 7, 10, 0), BERLIN)
    assert not spec.matches(at(BERLIN, 2026, 3, 7, 10, 0, 1), BERLIN)
    assert not spec.matches(at(BERLIN, 2026, 3, 9, 10, 0), BERLIN)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse("daily").next_elapse(datetime(2026, 1, 1), BERLIN)


# -------------------------------------------------------------------------------------- CLI


def test_cli_human_output_mirrors_systemd(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TZ", ":Europe/Berlin")
    assert run_app(["calendar", "--iterations", "2", "--base-time", "@1711846800",
                    "*-*-* 02:30", "daily"]) == 0
    lines = [ln for ln in capsys.readouterr().out.split("\n") if "From now" not in ln]
    assert lines == [
        "  Original form: *-*-* 02:30",
        "Normalized form: *-*-* 02:30:00",
        "    Next elapse: Mon 2024-04-01 02:30:00 CEST",
        "       (in UTC): Mon 2024-04-01 00:30:00 UTC",
        "       Iter. #2: Tue 2024-04-02 02:30:00 CEST",
        "       (in UTC): Tue 2024-04-02 00:30:00 UTC",
        "",
        "  Original form: daily",
        "Normalized form: *-*-* 00:00:00",
        "    Next elapse: Mon 2024-04-01 00:00:00 CEST",
        "       (in UTC): Sun 2024-03-31 22:00:00 UTC",
        "       Iter. #2: Tue 2024-04-02 00:00:00 CEST",
        "       (in UTC): Mon 2024-04-01 22:00:00 UTC",
        "",
    ]


def test_cli_omits_utc_line_in_utc_and_says_never(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TZ", "UTC")
    assert run_app(["calendar", "--base-time", "@1711846800", "2020-01-01 00:00:00"]) == 0
    assert capsys.readouterr().out == (
        "Normalized form: 2020-01-01 00:00:00\n    Next elapse: never\n"
    )


def test_cli_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    assert run_app(["calendar", "--json", "--iterations", "3", "--base-time",
                    "2026-03-09T06:00", "*:*:0/0.5 UTC"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "expression": "*:*:0/0.5 UTC",
        "normalized": "*-*-* *:*:00/0.500000 UTC",
        "next": ["2026-03-09T06:00:00.500000+01:00", "2026-03-09T06:00:01+01:00",
                 "2026-03-09T06:00:01.500000+01:00"],
    }


def test_cli_invalid_expression_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TZ", "UTC")
    assert run_app(["calendar", "Mon *-*-* 25:00"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "Error: invalid calendar expression 'Mon *-*-* 25:00': hour 25 is out of range (0..23)\n"
    )


def test_local_zone_resolution() -> None:
    assert cli_calendar.local_zone({"TZ": ":Europe/Berlin"}).key == "Europe/Berlin"
    assert cli_calendar.local_zone({"TZ": "Asia/Kolkata"}).key == "Asia/Kolkata"
    # glibc cannot parse it: UTC, with the leading letters as the abbreviation
    unusable = datetime(2026, 7, 1, tzinfo=cli_calendar.local_zone({"TZ": "Not/AZone"}))
    assert (unusable.utcoffset(), unusable.tzname()) == (timedelta(0), "Not")


def test_base_time_forms() -> None:
    assert cli_calendar.parse_base_time("@1711846800", BERLIN) == 1711846800 * 10**6
    assert cli_calendar.parse_base_time("@1.25", BERLIN) == 1_250_000
    local = cli_calendar.parse_base_time("2026-03-09T06:30", BERLIN)
    assert local == int(at(BERLIN, 2026, 3, 9, 6, 30).timestamp()) * 10**6
    offset = cli_calendar.parse_base_time("2026-03-09T06:30+00:00", BERLIN)
    assert offset - local == 3600 * 10**6
    with pytest.raises(DotagentError):
        cli_calendar.parse_base_time("yesterday-ish", BERLIN)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(0), "now"),
        (timedelta(microseconds=5), "5us left"),
        (timedelta(seconds=42), "42s left"),
        (timedelta(minutes=3, seconds=7), "3min 7s left"),
        (timedelta(minutes=30), "30min left"),
        (timedelta(hours=2, minutes=5), "2h 5min left"),
        (timedelta(hours=7), "7h left"),
        (timedelta(hours=26), "1 day 2h left"),
        (timedelta(days=3), "3 days left"),
        (timedelta(days=9), "1 week 2 days left"),
        (timedelta(days=40), "1 month 9 days left"),
        (timedelta(days=800), "2 years 2 months left"),
        (-timedelta(days=1, hours=1), "1 day 1h ago"),
    ],
)
def test_relative_times_match_systemd(delta: timedelta, text: str) -> None:
    now = 1_800_000_000 * 10**6
    assert cli_calendar.format_relative(now + delta // timedelta(microseconds=1), now) == text
