"""Calendar expressions and base times the OnCalendar engine is compared on against systemd.

Valid and invalid expressions are mixed on purpose: the oracle decides which is which.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

EXPRESSIONS: list[str] = [
    # shorthands, in the spellings and cases systemd accepts
    "minutely", "hourly", "daily", "monthly", "weekly", "yearly", "annually", "anually",
    "quarterly", "semiannually", "semi-annually", "biannually", "bi-annually", "DAILY",
    "Weekly", "hourly UTC", "daily Europe/Berlin", "weekly America/New_York",
    "monthly Asia/Kolkata", "daily utc", "fortnightly", "daily ", " daily", "annually UTC",
    # weekdays
    "Mon", "mon", "MONDAY", "Monday", "Mon..Fri", "Mon-Fri", "Sat,Sun", "Sun,Sat",
    "Mon,Wed,Fri 08:00", "Mon..Wed,Fri..Sun 12:00", "Tue..Thu 23:59:59", "Fri..Mon",
    "Mon.Fri", "Mon..", "Mon,", "Mon, 10:00", "Mond", "Mo", "Mon,Tue,Wed,Thu,Fri,Sat,Sun",
    "Mon..Sun", "Sat..Sun 00:00", "Wed,Thu", "Mon,Tue,Thu", "Mon 2024-*-* 00:00",
    "Sunday *-*-* 03:00", "Mon..Fri *-*-* 08:30:00", "monday..friday 9:00",
    "Fri *-*-13 13:13", "Mon,Fri *-*-* 08,18:30:00",
    # dates
    "*-*-*", "*-*-* ", "*-*-*  12:00", "2024-02-29", "2024-02-29 12:00", "2023-02-29",
    "*-02-29", "*-02-30", "*-02-31 00:00", "*-04-31", "*-*-31", "*-*-31 23:59:59",
    "*-*-30,31", "*-12-31 23:59:59", "*-01-01 00:00:00", "01-01", "12-31 12:00",
    "2025-*-* 00:00", "2024..2026-01-01", "2030-01-01", "1970-01-01", "1969-01-01",
    "2199-12-31 23:59:59", "2200-01-01", "24-06-15", "99-06-15", "69-06-15", "70-06-15",
    "00-01-01", "0..5-01-01", "2024/2-01-01", "*/2-01-01", "2024..2030/3-06-01",
    "*-1/2-1", "*-*/3-01", "*-02/3-01", "*-01..06-01", "*-*-1..7 12:00", "*-*-1..7/2",
    "*-*-1/10", "*-*-1,15", "*-*-15..20,25", "*-*-0", "*-13-01", "*-00-01", "*-*-32",
    "2024-13-01",
    # end of month
    "*-02~03", "*-02~01", "*-*~01", "*-*~1", "*-*~02..01", "*-*~07/1", "Mon *-05~07/1",
    "*-*~1,15", "*-02~28", "*-02~29", "*-*~*", "*~01", "*-*~01..03/2", "*-*-~1",
    "*~01-01", "*-*~05/2", "*-*~1/1", "2024-02~01 12:00",
    # times
    "12:00", "12:00:00", "00:00", "23:59", "23:59:59", "24:00", "12:60", "12:00:60",
    "25:00", "Mon *-*-* 25:00", "*:*", "*:*:*", "*:00", "*:30", "*:0/15", "*:0/5",
    "*:5/10", "*:0/59", "*:0/60", "*:*:0/15", "*:*:0/0.5", "*:*:0/0.25", "*:*:*/5",
    "0/2:00", "0..23/6:00", "8..18:00", "8..18/2:30", "9..17:0/20", "*-*-* 8..18/3:00",
    "12:00:30.25", "12:00:00.5", "12:00:0.000001", "12:00:59.999999", "12:00:59.9999995",
    "*:*:1.5..3", "*:*:1..3/0.5", "*:*:0.5..1", "*:*:10..20", "*:*:10..20/5",
    "*:*:00/0.100000", "12:00:5.", "12:00:.5", "12.5:00", "12:5", "1:2:3", "01:02:03",
    "12", "12:", "12:00:", "12::00", ":00", "*:*:*:*", "00:00:00.000000",
    "*:0,15,30,45", "*:45,15,30,0", "*:15,15", "*:1..1", "*:5..3", "*:5..5/1",
    "*:10..50/20", "*:10..12/5", "*:0..59/7",
    # zones
    "*-*-* 12:00 UTC", "*-*-* 12:00 Europe/Berlin", "*-*-* 12:00 America/New_York",
    "*-*-* 02:30 Europe/Berlin", "*-*-* 02:30 America/New_York", "*:30 Europe/Berlin",
    "*:0/30 Australia/Lord_Howe", "*-*-* 02:15 Australia/Lord_Howe", "*:*:00 Asia/Kolkata",
    "12:00 Etc/UTC", "12:00 Etc/GMT+5", "12:00 GMT", "12:00 Foo/Bar", "12:00 europe/berlin",
    "12:00 Europe", "Mon 12:00 Europe/Paris", "12:00 UTC UTC", "UTC", "12:00 Europe/Berlin UTC",
    "*-03-31 02:30 Europe/Berlin", "*-*-* 01:30 America/New_York", "*-11-* 01:30:00",
    "12:00 Asia/Kathmandu", "*-*-* 00:00 America/Santiago", "12:00 posixrules",
    # leap-second zones: time_t counts leap seconds there (systemd: 00:00:27 for the first)
    "daily right/UTC", "*:*:0/20 right/UTC", "daily right/Europe/Berlin",
    "*-*-* 02:30 right/Europe/Berlin", "*:0/30 right/America/New_York", "hourly right/UTC",
    "@1483228826", "@1483228825", "@1483228827 right/UTC",
    # local time edge cases around transitions (evaluated in every zone)
    "*-*-* 02:30", "*-*-* 02:00", "*-*-* 03:00", "*-*-* 01:59:59", "*-*-* 02:59:59",
    "*-*-* 01:30", "*-*-* 01:00..02:00", "*:15", "*:*:30", "*-*-* 00:00",
    "*-03,10-* 02:*:00", "*-*-* 02,03:00,30",
    # seconds next to a leap second (23:59:60 UTC; 00:59:60 in Berlin)
    "*:*:0/2", "*:*:59", "*:*:0/7", "*-*-* 23:59:59", "*-*-* 00:00:00 UTC",
    "*-*-* 00:59:59", "*:*:59.5", "*:*:*/0.25", "*-12-31 23:59:30..59",
    # timestamps
    "@0", "@1700000000", "@1711846800 UTC", "@-1", "@ 5", "@", "@1e3", "@99999999999",
    "@1700000000 Europe/Berlin",
    # junk
    "", " ", "*", "**-*-*", "*-*-*-*", "now", "today", "epoch", "yesterday", "tomorrow",
    "1..", "Mon *-*-* 12:00 junk", "12:00 +0100", "*-*-* 12:00,", ",*-*-*", "*:*:0/0",
    "*:0/0", "2024-01-01T12:00", "2024-01-01 12:00:00 Z",
]

ZONES: list[str] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Australia/Sydney",
]

# Zones whose files have leap-second records (Debian's tzdata ships /usr/share/zoneinfo/right).
RIGHT_ZONES: list[str] = [
    "right/UTC",
    "right/Europe/Berlin",
    "right/America/New_York",
    "right/Australia/Lord_Howe",
]


def _at(zone: str, *fields: int) -> int:
    """Epoch seconds of a wall-clock time (first occurrence) in `zone`."""
    return int(datetime(*fields, tzinfo=ZoneInfo(zone)).timestamp())  # type: ignore[misc]


# Base times (epoch seconds): around DST changes in the zones above, month ends, Feb 29 in a
# leap year and year ends.
BASES: list[int] = [
    _at("Europe/Berlin", 2024, 3, 31, 1, 0),  # spring forward 02:00 -> 03:00
    _at("Europe/Berlin", 2024, 10, 27, 1, 59),  # fall back 03:00 -> 02:00
    _at("America/New_York", 2024, 3, 10, 0, 30),
    _at("America/New_York", 2024, 11, 3, 0, 45),
    _at("Australia/Lord_Howe", 2024, 4, 7, 0, 0),  # 30-minute fall back
    _at("Australia/Lord_Howe", 2024, 10, 6, 1, 0),  # 30-minute spring forward
    _at("Australia/Sydney", 2024, 10, 6, 1, 0),
    _at("UTC", 2024, 2, 28, 23, 59, 30),  # Feb 29 of a leap year
    _at("UTC", 2023, 12, 31, 23, 59, 59),  # year end
    _at("UTC", 2025, 4, 30, 22, 0),  # month end
    _at("UTC", 2026, 3, 9, 6, 30) + 1,  # an ordinary Monday morning, off the whole second
]

# time_t values around leap seconds: in a right/ zone 1483228826 is 2016-12-31 23:59:60 UTC,
# 1435708825 is 2015-06-30 23:59:60 UTC; and around the end of the leap-second table's validity
# (1782604827, 2026-06-28), after which the right/ files stop (no DST any more).
LEAP_BASES: list[int] = [
    1483228820, 1483228825, 1483228826, 1483228827, 1435708824, 1435708825,
    1483225000, 1782604800, 1782604827, 1800000000,
]
