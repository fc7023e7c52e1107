"""`dotagent calendar` prints what the real `systemd-analyze calendar` prints.

Only the "From now" lines (they depend on the clock) are left out of the comparison, and
error messages, which are ours on purpose. There is no skip: without systemd-analyze these
tests fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from dotagent.cli.app import run_app

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oncal_oracle import SYSTEMD_ANALYZE, _env, run_lib

from conftest import REPO
from helpers import dotagent

# POSIX TZ strings (no tzdata file has these names), each with base times just before its
# DST changes. glibc reads them; systemd-analyze takes its local time from glibc.
SPRING_2026 = 1774735200  # Sat 2026-03-28 22:00 UTC
POSIX_CASES = [
    ("JST-9", [SPRING_2026]),
    ("<+0330>-3:30", [SPRING_2026]),
    ("CET-1CEST,M3.5.0,M10.5.0/3", [1774735200, 1792879200]),
    ("CET-1CEST,M3.5.0/2,M10.5.0/3", [1774735200, 1792879200]),
    ("EST5EDT,M3.2.0,M11.1.0", [1772942400, 1793505600]),
    ("AEST-10AEDT,M10.1.0,M4.1.0/3", [1775311200, 1791036000]),
    ("<-03>3<-02>,M3.5.0/-2,M10.5.0/-1", [1774735200, 1792879200]),
    ("ABC5DEF,J60,J300", [1772236800, 1792800000]),  # 2026-02-28, 2026-10-24
    ("ABC5DEF,60,300", [1772236800, 1792800000]),
    ("<+0545>-5:45<+0645>,M4.1.0/0,M10.1.0/0", [1775001600, 1790985600]),
    ("<ABCDEFGHIJKLMN>5", [SPRING_2026]),  # systemd drops an abbreviation this long
    ("12", [SPRING_2026]),  # glibc cannot parse it: UTC without a name
    ("garbage", [SPRING_2026]),  # glibc cannot parse it: UTC named 'garbage'
]
EXPRESSIONS = ["daily", "*:0/30", "*-*-* 02:30", "Sun *-*-* 01:30", "*-*-01 00:00",
               "daily CET", "daily CEST", "daily EDT"]


def systemd(args: list[str], tz: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None, "systemd-analyze is required for this comparison"
    return subprocess.run([SYSTEMD_ANALYZE, "calendar", *args], env=_env(tz),
                          capture_output=True, text=True, timeout=60, check=False)


def ours(args: list[str], tz: str, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    monkeypatch.setenv("TZ", tz)
    code = run_app(["calendar", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def without_from_now(text: str) -> str:
    return "".join(ln for ln in text.splitlines(keepends=True) if "From now:" not in ln)


def test_systemd_analyze_is_installed() -> None:
    assert SYSTEMD_ANALYZE is not None, "systemd-analyze is required for this comparison"


@pytest.mark.parametrize(("tz", "bases"), POSIX_CASES, ids=[c[0] for c in POSIX_CASES])
def test_posix_tz_strings_as_systemd(tz: str, bases: list[int], monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    for base in bases:
        args = [f"--base-time=@{base}", "--iterations=8", *EXPRESSIONS]
        theirs = systemd(args, tz)
        code, out, _ = ours(args, tz, monkeypatch, capsys)
        assert without_from_now(out) == without_from_now(theirs.stdout), (tz, base)
        assert code == theirs.returncode


@pytest.mark.parametrize("base", ["@99999999999999", "@18446744073709", "@-1",
                                  "@253402214400", "@253402214399.000001", "@253402214399"])
def test_base_times_out_of_range_as_systemd(base: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    args = [f"--base-time={base}", "daily", "Mon 25:00"]
    theirs = systemd(args, "UTC")
    code, out, err = ours(args, "UTC", monkeypatch, capsys)
    assert (code, out) == (theirs.returncode, theirs.stdout)
    assert "internal error" not in err and "Traceback" not in err
    if "Failed to parse --base-time=" in theirs.stderr:
        assert err.startswith(f"Error: invalid base time '{base}': out of range")
    elif "Failed to determine next elapse" in theirs.stderr:
        assert "cannot determine the next elapse of 'daily'" in err


def test_zero_iterations_show_only_the_forms(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--iterations=0", "--base-time=@1774735200", "daily", "2020-01-01", "*:30"]
    theirs = systemd(args, "Europe/Berlin")
    code, out, _ = ours(args, "Europe/Berlin", monkeypatch, capsys)
    assert (code, out) == (theirs.returncode, theirs.stdout) == (0, (
        "  Original form: daily\nNormalized form: *-*-* 00:00:00\n\n"
        "  Original form: 2020-01-01\nNormalized form: 2020-01-01 00:00:00\n\n"
        "  Original form: *:30\nNormalized form: *-*-* *:30:00\n"))


def test_posix_example_in_the_docs(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    text = (REPO / "docs/oncalendar.md").read_text()
    block = re.search(r"```console\n\$ TZ='(CET-1CEST[^']*)' dotagent calendar (.*?)\n(.*?)```",
                      text, re.S)
    assert block is not None
    tz, args, shown = block.groups()
    argv = [a.strip("'") for a in re.findall(r"'[^']*'|\S+", args)]
    code, out, _ = ours(argv, tz, monkeypatch, capsys)
    assert code == 0
    assert re.sub(r"(From now:) .*", r"\1 …", out) == shown
    assert without_from_now(out) == without_from_now(systemd(argv, tz).stdout)


# ------------------------------------------------------------------ leap-second zones (right/)
# The real executables side by side, each in its own process with $TZ set: glibc (and Python's
# datetime through it) reads a leap-second $TZ once per process, so only a subprocess shows
# what a user sees.

LEAP_CASES = [
    # (TZ, arguments)
    ("UTC", ["--base-time=@1767225600", "--iterations=2", "daily right/UTC",
             "daily right/Europe/Berlin", "*-*-* 12:00 right/America/New_York"]),
    ("right/UTC", ["--base-time=@1767225600", "--iterations=5", "daily", "*:*:0/20", "12:00 UTC",
                   "daily right/UTC", "daily Europe/Berlin"]),
    # the example: from 02:20:00 every 20 s, never backwards
    ("right/UTC", ["--base-time=2026-03-09 02:20:00", "--iterations=6", "*:*:0/20"]),
    # across the leap second at the end of 2016: 23:59:60 exists
    ("right/UTC", ["--base-time=@1483228820", "--iterations=8", "*:*:0/2", "*:*:*", "daily",
                   "*:*:59", "@1483228825", "@1483228827"]),
    ("right/Europe/Berlin", ["--base-time=@1483228820", "--iterations=6", "*:*:0/2", "*:*:*",
                             "daily", "*:*:0/20 right/UTC", "00:59:*"]),
    # across DST changes, and after the end of the leap-second table (June 2026)
    ("right/Europe/Berlin", ["--base-time=@1711843200", "--iterations=6", "*:0/30",
                             "*-*-* 02:30", "daily", "daily CET", "daily CEST"]),
    ("right/Europe/Berlin", ["--base-time=@1792879200", "--iterations=6", "*:0/30", "daily"]),
    ("right/Europe/Berlin", ["--base-time=@1790000000", "--iterations=4", "monthly", "hourly"]),
    ("right/America/New_York", ["--base-time=@1793505600", "--iterations=6", "*:0/30",
                                "*-*-* 01:30", "daily right/UTC"]),
    ("right/America/New_York", ["--base-time=2025-11-02 01:30", "--iterations=3", "*:0/20"]),
]


@pytest.mark.parametrize(("tz", "args"), LEAP_CASES,
                         ids=[f"{tz}-{i}" for i, (tz, _a) in enumerate(LEAP_CASES)])
def test_leap_second_zones_print_as_systemd(tz: str, args: list[str]) -> None:
    theirs = systemd(args, tz)
    mine = dotagent("calendar", *args, env={**os.environ, **_env(tz)})
    assert without_from_now(mine.stdout) == without_from_now(theirs.stdout)
    assert mine.returncode == theirs.returncode == 0
    assert "Traceback" not in mine.stderr


def test_daily_right_utc_is_27_seconds_after_midnight() -> None:
    p = dotagent("calendar", "--base-time=@1767225600", "--json", "daily right/UTC",
                 env={**os.environ, **_env("UTC")})
    assert json.loads(p.stdout)["next"] == ["2026-01-01T00:00:27+00:00"]
    # In the zone itself the wall clock says midnight; the offset includes the 27 leap
    # seconds, so the text still converts back to the same time_t.
    p = dotagent("calendar", "--base-time=@1483228820", "--iterations=4", "--json", "*:*:0/2",
                 env={**os.environ, **_env("right/UTC")})
    assert json.loads(p.stdout)["next"] == [
        "2016-12-31T23:59:56-00:00:26", "2016-12-31T23:59:58-00:00:26",
        "2016-12-31T23:59:60-00:00:26", "2017-01-01T00:00:02-00:00:27"]


def test_manifest_timezone_right_zone_as_systemd() -> None:
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from dotagent.localzone import named_zone
    from dotagent.schedule.rules import rule_for

    for tz, expression in [("right/Europe/Berlin", "*-*-* 02:30"), ("right/UTC", "*:*:0/20"),
                           ("right/America/New_York", "Mon..Fri 08:30")]:
        schedule = SimpleNamespace(type="expression", expression=expression, timezone=tz)
        rule = rule_for(schedule, named_zone("UTC"))
        base = 1711843200
        lib = run_lib([f"{expression} {tz}"], "UTC", base * 10**6, 8)[0]
        got, t = [], datetime.fromtimestamp(base, UTC)
        for _ in range(8):
            nxt = rule.next_after(t)  # type: ignore[union-attr]
            assert nxt is not None
            got.append(round(nxt.timestamp() * 10**6))
            t = nxt
        assert got == lib["elapses"], (tz, expression)


# ------------------------------------------------------------- local base times (--base-time)
# systemd reads a local base time with glibc's mktime(tm_isdst = -1), the first call of its
# process: in a repeated hour Berlin gets the second pass, New York the first; in a skipped
# hour the time moves forward by the gap.

BASE_TIME_CASES = [
    ("Europe/Berlin", ["2026-10-25 02:00", "2026-10-25 02:30", "2026-10-25 02:59:59",
                       "2026-10-25 03:00", "2026-10-25 01:59:59.25", "2026-10-25T02:30:00.5",
                       "2026-03-29 02:00", "2026-03-29 02:30", "2026-03-29 02:59:59",
                       "2026-03-29 03:00"]),
    ("America/New_York", ["2026-11-01 01:00", "2026-11-01 01:30", "2026-11-01 01:59:59",
                          "2026-03-08 02:00", "2026-03-08 02:30"]),
    ("Australia/Lord_Howe", ["2026-04-05 01:30", "2026-04-05 01:45", "2026-04-05 01:59",
                             "2026-10-04 02:00", "2026-10-04 02:15", "2026-10-04 02:29"]),
    ("Australia/Sydney", ["2026-04-05 02:30", "2026-10-04 02:30"]),
    ("America/Santiago", ["2026-04-04 23:30", "2026-09-06 00:30"]),
    ("right/Europe/Berlin", ["2026-03-29 02:30", "2025-10-26 02:30", "2016-12-31 23:59:59"]),
    ("EST5EDT,M3.2.0,M11.1.0", ["2026-11-01 01:30", "2026-03-08 02:30"]),
    # a leap second's :60 (strptime takes it), and a date alone
    ("UTC", ["2016-12-31 23:59:60", "2016-12-31 23:59:60.5", "2026-03-09"]),
    ("right/UTC", ["2016-12-31 23:59:60", "2016-12-31 23:59:60.25", "2017-01-01 00:00:00"]),
    ("right/Europe/Berlin", ["2017-01-01 00:59:60", "2017-01-01 01:00:00"]),
]


@pytest.mark.parametrize(("tz", "bases"), BASE_TIME_CASES, ids=[c[0] for c in BASE_TIME_CASES])
def test_local_base_times_as_systemd(tz: str, bases: list[str]) -> None:
    for base in bases:
        # systemd reads only a space between date and time; we also take ISO's 'T'.
        args = [f"--base-time={base.replace('T', ' ')}", "--iterations=3", "*:*:0/20", "*:0/30"]
        theirs = systemd(args, tz)
        mine = dotagent("calendar", f"--base-time={base}", *args[1:],
                        env={**os.environ, **_env(tz)})
        assert theirs.returncode == 0, (tz, base, theirs.stderr)
        assert without_from_now(mine.stdout) == without_from_now(theirs.stdout), (tz, base)
        assert mine.returncode == 0


def test_base_time_now() -> None:
    before = time.time()
    p = dotagent("calendar", "--base-time", "now", "--json", "--iterations", "2", "*:*:0/10",
                 env={**os.environ, **_env("Europe/Berlin")})
    after = time.time()
    assert p.returncode == 0, p.stderr
    first, second = (datetime.fromisoformat(s).timestamp() for s in json.loads(p.stdout)["next"])
    assert before < first <= after + 10 and second == first + 10
    assert dotagent("calendar", "--base-time", "now", "2199-12-31",
                    env={**os.environ, **_env("UTC")}).stdout.splitlines()[2] == \
        "    Next elapse: Tue 2199-12-31 00:00:00 UTC"


# ------------------------------------------------------------------------- --json positions


def test_json_keeps_one_entry_per_argument() -> None:
    env = {**os.environ, **_env("UTC")}
    p = dotagent("calendar", "--json", "--base-time=@1767225600", "daily", "Mon 25:00",
                 "hourly", "nonsense", env=env)
    assert p.returncode == 1
    entries = json.loads(p.stdout)
    assert [e.get("expression", e.get("input")) for e in entries] == \
        ["daily", "Mon 25:00", "hourly", "nonsense"]
    assert entries[0] == {"expression": "daily", "normalized": "*-*-* 00:00:00",
                          "next": ["2026-01-02T00:00:00+00:00"]}
    assert entries[1] == {"input": "Mon 25:00", "error": "invalid calendar expression "
                          "'Mon 25:00': hour 25 is out of range (0..23)"}
    assert set(entries[3]) == {"input", "error"}
    assert entries[2]["next"] == ["2026-01-01T01:00:00+00:00"]
    assert "Error: invalid calendar expression 'Mon 25:00'" in p.stderr
    assert "Traceback" not in p.stderr


def test_json_single_invalid_expression_is_an_object() -> None:
    p = dotagent("calendar", "--json", "Mon 25:00", env={**os.environ, **_env("UTC")})
    assert p.returncode == 1
    assert json.loads(p.stdout) == {"input": "Mon 25:00", "error": "invalid calendar "
                                    "expression 'Mon 25:00': hour 25 is out of range (0..23)"}
    # an expression that parses but cannot be evaluated is an error entry too
    p = dotagent("calendar", "--json", "--base-time=@253402214400", "daily", "hourly",
                 env={**os.environ, **_env("UTC")})
    assert p.returncode == 1
    assert [set(e) for e in json.loads(p.stdout)] == [{"input", "error"}] * 2
    # all valid: exit 0 and a list of objects
    p = dotagent("calendar", "--json", "daily", "hourly", env={**os.environ, **_env("UTC")})
    assert p.returncode == 0
    assert [e["expression"] for e in json.loads(p.stdout)] == ["daily", "hourly"]


def test_cli_md_json_example() -> None:
    text = (REPO / "docs/cli.md").read_text()
    block = re.search(r"```console\n\$ TZ=UTC dotagent calendar (--json .*?)\n(.*?)```", text,
                      re.S)
    assert block is not None
    args, shown = block.groups()
    argv = [a.strip("'") for a in re.findall(r"'[^']*'|\S+", args)]
    p = dotagent("calendar", *argv, env={**os.environ, **_env("UTC")})
    assert p.returncode == 1
    assert p.stdout + p.stderr == shown


def test_json_of_an_argument_that_is_not_utf8_is_valid_utf8() -> None:
    p = subprocess.run([sys.executable, "-m", "dotagent", "calendar", "--json", b"\xff",
                        "daily"], capture_output=True, env={**os.environ, **_env("UTC")},
                       timeout=60, check=False)
    assert p.returncode == 1
    text = p.stdout.decode("utf-8")  # must not raise
    entries = json.loads(text)
    assert entries[0]["input"] == "\udcff"  # the byte, as Python names it, reads back
    assert entries[1]["expression"] == "daily"
