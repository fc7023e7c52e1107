"""`dotagent calendar` prints what the real `systemd-analyze calendar` prints.

Only the "From now" lines (they depend on the clock) are left out of the comparison, and
error messages, which are ours on purpose. There is no skip: without systemd-analyze these
tests fail.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dotagent.cli.app import run_app

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oncal_oracle import SYSTEMD_ANALYZE, _env

from conftest import REPO

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
