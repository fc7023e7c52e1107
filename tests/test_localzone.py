"""local_zone() picks the zone glibc would, and a POSIX TZ string behaves as in glibc.

The reference is the C library itself: time.localtime() after time.tzset() is glibc's
localtime() (what our audit and heartbeat timestamps go through). The systemd-analyze
comparison lives in tests/schedule/test_calendar_cli.py.
"""

from __future__ import annotations

import calendar
import os
import platform
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from dotagent.localzone import FIRST_YEAR, LAST_YEAR, local_zone

# Well-formed strings of every kind glibc accepts, and malformed ones it still makes something
# of. Not here: offsets of 24h or more (a Python tzinfo cannot have them), out-of-range months
# (undefined behaviour in glibc) and DST without rules (glibc then reads `posixrules`).
POSIX_STRINGS = [
    "JST-9",
    "<+0330>-3:30",
    "<-03>3",
    "CET-1CEST,M3.5.0,M10.5.0/3",
    "CET-1CEST,M3.5.0/2,M10.5.0/3",
    "EST5EDT,M3.2.0,M11.1.0",
    "AEST-10AEDT,M10.1.0,M4.1.0/3",
    "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
    "NZST-12NZDT,M9.5.0,M4.1.0/3",
    "IST-2IDT,M3.4.4/26,M10.5.0",
    "<-03>3<-02>,M3.5.0/-2,M10.5.0/-1",
    "ABC5DEF,J60,J300",
    "ABC5DEF,J59/0,J1/1",
    "ABC5DEF,60,300",
    "ABC5DEF,59/3:30:15,365",
    "ABC5DEF,0,365",
    "EST5EDT,0/0,J365/25",
    "XXX3YYY,M1.1.0/0,M12.5.6/24",
    "ABC-5:30:15DEF-6:45,M3.2.0/1:30:10,M11.1.0/-3:00:01",
    "ABC5DEF,M3.2.0",  # the end defaults to M11.1.0
    "ABC5DEF,M3.2.0/x,M10.1.0",  # a bad time: 02:00, and the second rule is never read
    "JST-9junk!",  # glibc: DST 'junk' (+10) nearly all year
    "JST-9,M3.2.0",  # glibc: an unnamed DST at UTC+0 from March to November
    "garbage",  # glibc: UTC, named 'garbage'
    "Not/AZone",  # glibc: UTC, named 'Not'
    "12",  # glibc: UTC, no name at all
]


@pytest.fixture
def libc_tz() -> Iterator[None]:
    saved = os.environ.get("TZ")
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


def _instants(seed: str) -> list[int]:
    rnd = random.Random(seed)
    out = [rnd.randrange(0, calendar.timegm((LAST_YEAR + 1, 1, 1, 0, 0, 0)))
           for _ in range(1500)]
    for year in range(FIRST_YEAR, LAST_YEAR + 1, 7):
        start = calendar.timegm((year, 1, 1, 0, 0, 0))
        out += [t for t in range(start - 30 * 3600, start + 30 * 3600, 1800) if t >= 0]
    return out


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the reference here is glibc")
@pytest.mark.parametrize("tz", POSIX_STRINGS)
def test_posix_strings_match_glibc_localtime(tz: str, libc_tz: None) -> None:
    zone = local_zone({"TZ": tz})
    os.environ["TZ"] = tz
    time.tzset()
    wrong = []
    for t in _instants(tz):
        lt = time.localtime(t)
        ours = datetime.fromtimestamp(t, zone)
        offset = ours.utcoffset()
        assert offset is not None
        if (lt.tm_gmtoff, lt.tm_zone) != (offset // timedelta(seconds=1), ours.tzname()):
            wrong.append((datetime.fromtimestamp(t, UTC).isoformat(), lt.tm_gmtoff, lt.tm_zone,
                          offset, ours.tzname()))
    assert wrong == []


def test_posix_strings_are_zones() -> None:
    japan = local_zone({"TZ": "JST-9"})
    moment = datetime(2026, 3, 30, tzinfo=japan)
    assert moment.utcoffset() == timedelta(hours=9) and moment.tzname() == "JST"
    assert str(japan) == "JST-9"
    tehran = local_zone({"TZ": ":<+0330>-3:30"})
    assert datetime(2026, 7, 1, tzinfo=tehran).tzname() == "+0330"
    berlin = local_zone({"TZ": "CET-1CEST,M3.5.0,M10.5.0/3"})
    before = datetime(2026, 3, 29, 1, 59, tzinfo=berlin)
    after = (before.astimezone(UTC) + timedelta(minutes=1)).astimezone(berlin)
    assert (before.tzname(), after.tzname(), after.hour) == ("CET", "CEST", 3)
    assert after.dst() == timedelta(hours=1)
    assert local_zone({"TZ": "CET-1CEST,M3.5.0,M10.5.0/3"}) is berlin  # one object per string


def test_a_zone_file_wins_over_a_posix_reading() -> None:
    # "EST5EDT" and "CET" are valid POSIX strings and also tzdata files; glibc reads the file.
    assert local_zone({"TZ": "EST5EDT"}).key == "EST5EDT"
    assert local_zone({"TZ": ":CET"}).key == "CET"
    assert local_zone({"TZ": "Europe/Berlin"}).key == "Europe/Berlin"
    assert local_zone({"TZ": "/usr/share/zoneinfo/Asia/Kolkata"}).key == "Asia/Kolkata"


def test_what_glibc_cannot_parse_is_utc() -> None:
    for tz, name in [("Not/AZone", "Not"), ("garbage", "garbage"), ("12", ""),
                     ("/no/such/file", "")]:
        moment = datetime(2026, 7, 1, tzinfo=local_zone({"TZ": tz}))
        assert (moment.utcoffset(), moment.dst(), moment.tzname()) == (timedelta(0),
                                                                      timedelta(0), name)
    assert local_zone({"TZ": ""}).key == "UTC"
    assert local_zone({"TZ": ":"}).key == "UTC"


def test_offsets_beyond_a_day_are_cut_to_what_python_can_hold() -> None:
    # glibc allows up to 24:59:59; a tzinfo must stay below 24 hours.
    zone = local_zone({"TZ": "ABC+30"})
    assert datetime(2026, 1, 1, tzinfo=zone).utcoffset() == -timedelta(hours=24, seconds=-1)
