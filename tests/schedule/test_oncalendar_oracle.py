"""The OnCalendar engine against the real systemd (252), expression by expression.

For every zone × base time the whole corpus goes through one `systemd-analyze calendar` call
(validity, normalized form, next elapses to the second) and one call of the same systemd
library through ctypes (elapses to the microsecond). Any difference fails, listed in full.
There is no skip: without systemd-analyze this test fails.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oncal_corpus import BASES, EXPRESSIONS, ZONES
from oncal_oracle import SYSTEMD_ANALYZE, Verdict, run_cli, run_lib

from dotagent.schedule.oncalendar import (
    CalendarEvaluationError,
    CalendarSyntaxError,
    parse,
)

ITERATIONS = 6
USEC = 1_000_000


def ours(expr: str, tz: str, base_usec: int, iterations: int) -> dict[str, object]:
    """Our answer in the shape of the library oracle's."""
    zone = ZoneInfo(tz)
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


def compare_cli(expr: str, mine: dict[str, object], ref: Verdict) -> str | None:
    if not ref.valid:
        return None if not mine["valid"] else f"systemd rejects it ({ref.error}), we accept"
    if not mine["valid"]:
        return "systemd accepts it, we reject it"
    if ref.error is not None:  # parsed, but systemd failed computing an elapse
        return None if mine["errno"] == 35 else f"systemd fails ({ref.error}), we do not"
    if ref.normalized != mine["normalized"]:
        return f"normalized {mine['normalized']!r} != systemd {ref.normalized!r}"
    seconds = [u // USEC * USEC for u in mine["elapses"]]  # type: ignore[attr-defined]
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


@pytest.mark.parametrize("tz", ZONES)
def test_agrees_with_systemd(tz: str) -> None:
    assert SYSTEMD_ANALYZE is not None, "systemd-analyze is required for the OnCalendar oracle"
    with ThreadPoolExecutor(max_workers=4) as pool:
        cli = {b: pool.submit(run_cli, EXPRESSIONS, tz, b, ITERATIONS) for b in BASES}
        lib = {b: pool.submit(run_lib, EXPRESSIONS, tz, b * USEC, ITERATIONS) for b in BASES}
        cli_results = {b: f.result() for b, f in cli.items()}
        lib_results = {b: f.result() for b, f in lib.items()}

    problems: list[str] = []
    valid = invalid = 0
    for base in BASES:
        for expr, ref, exact in zip(EXPRESSIONS, cli_results[base], lib_results[base],
                                    strict=True):
            mine = ours(expr, tz, base * USEC, ITERATIONS)
            problem = compare_cli(expr, mine, ref)
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
    assert valid > 100 * len(BASES) and invalid > 30 * len(BASES)
