"""The OnCalendar engine against the real systemd (252), expression by expression.

For every zone × base time the whole corpus goes through one `systemd-analyze calendar` call
(validity, normalized form, next elapses to the second) and one call of the same systemd
library through ctypes (elapses to the microsecond). Any difference fails, listed in full.
The leap-second zones (right/…) also run from base times next to leap seconds, and glibc's
own localtime/gmtime/mktime are compared with ours there. There is no skip: without
systemd-analyze, or without the right/ zone files (Debian package tzdata), this test fails.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oncal_corpus import BASES, EXPRESSIONS, LEAP_BASES, RIGHT_ZONES, ZONES
from oncal_oracle import SYSTEMD_ANALYZE, Verdict, run_cli, run_lib

from dotagent.localzone import LeapZone, named_zone
from dotagent.schedule.oncalendar import (
    CalendarEvaluationError,
    CalendarSyntaxError,
    parse,
)

ITERATIONS = 6
USEC = 1_000_000


def ours(expr: str, tz: str, base_usec: int, iterations: int) -> dict[str, object]:
    """Our answer in the shape of the library oracle's."""
    zone = named_zone(tz)
    try:
        spec = parse(expr, zone)
    except CalendarSyntaxError:
        return {"valid": False}
    elapses: list[int] = []
    errno = 0
    usec = base_usec
    for _ in range(iterations):
        try:
            nxt = spec.next_elapse_usec(usec, zone)
        except CalendarEvaluationError:
            errno = 35
            break
        if nxt is None:
            errno = 2
            break
        elapses.append(nxt)
        usec = nxt
    return {"valid": True, "normalized": spec.normalized, "elapses": elapses, "errno": errno}


def printed_utc(usec: int, zone: ZoneInfo) -> int:
    """The UTC time systemd-analyze prints for an elapse (whole seconds, in µs): under a
    leap-second $TZ glibc's gmtime() subtracts the leap seconds, and :60 reads as the next :00."""
    if isinstance(zone, LeapZone):
        seconds, hit = zone.utc(usec // USEC)
        return (seconds + hit) * USEC
    return usec // USEC * USEC


def compare_cli(expr: str, mine: dict[str, object], ref: Verdict,
                zone: ZoneInfo) -> str | None:
    if not ref.valid:
        return None if not mine["valid"] else f"systemd rejects it ({ref.error}), we accept"
    if not mine["valid"]:
        return "systemd accepts it, we reject it"
    if ref.error is not None:  # parsed, but systemd failed computing an elapse
        return None if mine["errno"] == 35 else f"systemd fails ({ref.error}), we do not"
    if ref.normalized != mine["normalized"]:
        return f"normalized {mine['normalized']!r} != systemd {ref.normalized!r}"
    seconds = [printed_utc(u, zone) for u in mine["elapses"]]  # type: ignore[attr-defined]
    if seconds != ref.elapses:
        return f"elapses {seconds} != systemd {ref.elapses}"
    if not mine["elapses"] and not ref.never:
        return "we find no elapse, systemd does"
    return None


def test_oracle_is_installed() -> None:
    assert SYSTEMD_ANALYZE is not None, "systemd-analyze is required for the OnCalendar oracle"


def test_corpus_is_broad() -> None:
    assert len(EXPRESSIONS) >= 150
    assert len(set(EXPRESSIONS)) == len(EXPRESSIONS)
    assert {"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"} <= set(ZONES)
    assert {"right/UTC", "right/Europe/Berlin", "right/America/New_York"} <= set(RIGHT_ZONES)


@pytest.mark.parametrize("tz", RIGHT_ZONES)
def test_right_zones_are_installed(tz: str) -> None:
    # Debian 12's tzdata package ships them (.ci/run installs it when they are missing).
    assert Path("/usr/share/zoneinfo", tz).is_file(), \
        f"/usr/share/zoneinfo/{tz} is missing: install the Debian package tzdata"
    zone = named_zone(tz)
    assert isinstance(zone, LeapZone), f"{tz} has no leap-second records"
    assert zone.correction(1483228827) == (27, 0)  # since 2017, 27 leap seconds


@pytest.mark.parametrize("tz", ZONES + RIGHT_ZONES)
def test_agrees_with_systemd(tz: str) -> None:
    assert SYSTEMD_ANALYZE is not None, "systemd-analyze is required for the OnCalendar oracle"
    bases = BASES + (LEAP_BASES if tz in RIGHT_ZONES else [])
    zone = named_zone(tz)
    with ThreadPoolExecutor(max_workers=4) as pool:
        cli = {b: pool.submit(run_cli, EXPRESSIONS, tz, b, ITERATIONS) for b in bases}
        lib = {b: pool.submit(run_lib, EXPRESSIONS, tz, b * USEC, ITERATIONS) for b in bases}
        cli_results = {b: f.result() for b, f in cli.items()}
        lib_results = {b: f.result() for b, f in lib.items()}

    problems: list[str] = []
    valid = invalid = 0
    for base in bases:
        for expr, ref, exact in zip(EXPRESSIONS, cli_results[base], lib_results[base],
                                    strict=True):
            mine = ours(expr, tz, base * USEC, ITERATIONS)
            problem = compare_cli(expr, mine, ref, zone)
            if problem is None and ref.valid and ref.error is None:
                valid += 1
                # The library answers in microseconds: fractional seconds must agree too.
                if exact["valid"] is not True or exact["elapses"] != mine["elapses"]:
                    problem = f"elapses {mine['elapses']} != systemd (µs) {exact['elapses']}"
            elif problem is None:
                invalid += 1
            if problem:
                problems.append(f"TZ={tz} base=@{base} {expr!r}: {problem}")
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:60])
    # The corpus must exercise both sides, or this test could not fail on validity.
    assert valid > 100 * len(bases) and invalid > 30 * len(bases)

