"""Leap-second zones (right/…) convert as glibc converts them, checked against glibc itself.

In such a zone time_t counts the leap seconds: localtime() subtracts the correction in force
(27 s since 2017) and shows an inserted second as :60; gmtime() does the same while $TZ is such
a zone; mktime() solves for the seconds clamped to 0..59 and adds the difference back. systemd
computes with exactly these calls, so the calendar engine must too. The reference is glibc
through ctypes in a child process (tests/schedule/oncal_oracle.py). No skips: without the
right/ files (Debian package tzdata) these tests fail.
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oncal_corpus import RIGHT_ZONES
from oncal_oracle import run_libc

from dotagent.localzone import LeapZone, at_time_t, local_zone, named_zone
from dotagent.schedule.oncalendar import _zone_clock, local_mktime

EPOCH = datetime(1970, 1, 1)


def fields(seconds: int, hit: int = 0) -> list[int]:
    d = EPOCH + timedelta(seconds=seconds)
    return [d.year, d.month, d.day, d.hour, d.minute, d.second + hit]


def offset_changes(zone: LeapZone, start: int, stop: int) -> list[int]:
    """time_t of the zone's offset changes between start and stop (found by bisection)."""
    out = []
    step = 6 * 3600
    prev = at_time_t(start, zone.raw).utcoffset()
    for t in range(start + step, stop, step):
        now = at_time_t(t, zone.raw).utcoffset()
        if now != prev:
            lo, hi = t - step, t
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if at_time_t(mid, zone.raw).utcoffset() == prev:
                    lo = mid
                else:
                    hi = mid
            out.append(hi)
        prev = now
    return out


def probe_times(zone: LeapZone) -> list[int]:
    times: set[int] = set()
    for at in zone._leap_at:
        times.update(range(at - 3, at + 4))
    for change in offset_changes(zone, 1420070400, 1830000000):  # 2015 .. 2028
        times.update(range(change - 40, change + 40))
        times.update(range(change - 4000, change + 4000, 599))
    rng = random.Random(7)
    times.update(rng.randrange(0, 2_000_000_000) for _ in range(300))
    return sorted(times)


@pytest.mark.parametrize("tz", RIGHT_ZONES)
def test_localtime_and_gmtime_as_glibc(tz: str) -> None:
    zone = named_zone(tz)
    assert isinstance(zone, LeapZone), f"{tz}: no leap-second records (install Debian tzdata)"
    times = probe_times(zone)
    ref = run_libc(tz, localtime=times)
    problems = []
    for t, local_ref, gm_ref in zip(times, ref["localtime"], ref["gmtime"], strict=True):
        local, hit, raw = zone.localtime(t)
        off = raw.utcoffset()
        assert off is not None
        mine = [*fields(local, hit), int(bool(raw.dst())), int(off.total_seconds()), raw.tzname()]
        utc, uhit = zone.utc(t)
        if mine != local_ref or fields(utc, uhit) != gm_ref:
            problems.append(f"{t}: localtime {mine} != {local_ref} or gmtime "
                            f"{fields(utc, uhit)} != {gm_ref}")
        # As a Python datetime: the same wall clock (:60 is :59 with fold=1), and back.
        aware = at_time_t(t, zone)
        wall = fields(local, 0)
        if [aware.year, aware.month, aware.day, aware.hour, aware.minute, aware.second] != wall \
                or int((aware - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) != t:
            problems.append(f"{t}: datetime {aware!r} (fold {aware.fold}) does not round-trip")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:30])


def mktime_requests(zone: LeapZone) -> list[list[int]]:
    """Wall-clock requests around leap seconds and offset changes, with every tm_isdst."""
    requests: list[list[int]] = []
    for at in zone._leap_at[-6:]:
        local, _hit, _raw = zone.localtime(at - 1)  # the second before the inserted one
        y, mo, d, h, mi, _sec = fields(local)
        for sec in (58, 59, 60, 61, 0, -1):
            for isdst in (-1, 0, 1):
                requests.append([y, mo, d, h, mi, sec, isdst])
        for isdst in (-1, 0):
            requests.append([y, mo, d, h, mi + 1, 0, isdst])  # the :00 after, unnormalised
            requests.append([y, mo, d + 1, 0, 0, 0, isdst])
    for change in offset_changes(zone, 1672531200, 1790000000):  # 2023 .. mid 2026
        local, _hit, _raw = zone.localtime(change - 1)
        for delta in (-5400, -3600, -1800, -61, -1, 0, 1, 59, 1799, 1800, 3599, 3600, 5400):
            for isdst in (-1, 0, 1):
                requests.append([*fields(local + delta), isdst])
    return requests


@pytest.mark.parametrize("tz", RIGHT_ZONES)
def test_mktime_as_glibc(tz: str) -> None:
    # One process, calls in order: glibc remembers the offset of its previous mktime() call,
    # and so does our clock (the `guess` threaded from call to call).
    zone = named_zone(tz)
    assert isinstance(zone, LeapZone)
    requests = mktime_requests(zone)
    ref = run_libc(tz, mktime=requests)["mktime"]
    clock = _zone_clock(zone)
    guess = 0
    problems = []
    for request, expected in zip(requests, ref, strict=True):
        *tm, isdst = request
        t, out, out_dst, guess = clock.mktime(tuple(tm), isdst, guess)  # type: ignore[arg-type]
        if [t, *out, out_dst] != expected:
            problems.append(f"mktime{tuple(request)} = {[t, *out, out_dst]}, glibc {expected}")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:30])


def test_first_mktime_reads_local_time_as_glibc() -> None:
    # systemd's parse_timestamp() (for --base-time) is the first mktime() of its process.
    cases = [("right/UTC", (2016, 12, 31, 23, 59, 59)), ("right/UTC", (2017, 1, 1, 0, 0, 0)),
             ("right/Europe/Berlin", (2026, 10, 25, 2, 30, 0)),
             ("right/Europe/Berlin", (2026, 3, 29, 2, 30, 0)),
             ("right/America/New_York", (2025, 11, 2, 1, 30, 0)),
             ("Europe/Berlin", (2026, 10, 25, 2, 30, 0)),
             ("America/New_York", (2026, 11, 1, 1, 30, 0)),
             ("Australia/Lord_Howe", (2026, 4, 5, 1, 45, 0)),
             ("Australia/Lord_Howe", (2026, 10, 4, 2, 15, 0))]
    for tz, tm in cases:
        expected = run_libc(tz, mktime=[[*tm, -1]])["mktime"][0][0]
        assert local_mktime(named_zone(tz), tm) == expected, (tz, tm)


@pytest.mark.parametrize("spelling", ["right/UTC", ":right/UTC", "/usr/share/zoneinfo/right/UTC"])
def test_local_zone_reads_leap_seconds(spelling: str) -> None:
    # $TZ naming a right/ file, as glibc accepts it, gives the leap-second zone.
    zone = local_zone({"TZ": spelling})
    assert isinstance(zone, LeapZone)
    assert datetime(2026, 1, 1, tzinfo=zone).timestamp() == 1767225627  # as glibc's mktime
    assert at_time_t(1767225627, zone).replace(tzinfo=None) == datetime(2026, 1, 1)
    assert not isinstance(local_zone({"TZ": "UTC"}), LeapZone)
