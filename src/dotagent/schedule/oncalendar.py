"""systemd OnCalendar= expressions: parser, systemd's normalized form, and the next elapse.

The reference is systemd 252 (`systemd-analyze calendar`); tests/schedule/test_oncalendar_oracle.py
compares this module with it. The algorithm follows the *behaviour* of systemd's calendarspec.c,
including the parts that are accidents of its implementation, because a schedule must fire at the
same instant here as under a real systemd timer:

* The search walks the broken-down local time field by field (year, month, day, weekday, hour,
  minute, second) and, after each field, asks "did mktime(3) have to normalise this?". A local
  time that does not exist (DST gap) is normalised forward by mktime, so systemd skips it.
* mktime(3) of glibc resolves a *repeated* local time (DST overlap) with the UTC offset of its
  previous call; systemd's search therefore stays in the offset it is walking in, and the second
  pass of a repeated hour is skipped. We reproduce glibc's mktime, its state included, on the
  days where the zone changes offset; on every other day the offset is simply the day's offset.

Everything here is pure: the clock, the environment and the disk are never read (time zones come
in as `zoneinfo.ZoneInfo` objects; validating a zone name in an expression asks `zoneinfo`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from dotagent.errors import DotagentError
from dotagent.localzone import LeapZone, at_time_t, named_zone

__all__ = [
    "CalendarEvaluationError",
    "CalendarSpec",
    "CalendarSyntaxError",
    "is_valid_timezone",
    "local_mktime",
    "parse",
    "parse_cached",
]

USEC_PER_SEC = 1_000_000
MIN_YEAR = 1970
MAX_YEAR = 2199
# systemd gives up after this many rounds of its search loop (EDEADLK "Infinite loop").
MAX_CALENDAR_ITERATIONS = 1000
# systemd caps a comma list at 241 elements (CALENDARSPEC_COMPONENTS_MAX + 1).
COMPONENTS_MAX = 240
INT_MAX = 2**31 - 1
ULONG_MAX = 2**64 - 1

_WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Long names first: systemd tries them in this order with a case-insensitive prefix match.
_WEEKDAY_TABLE = (
    ("monday", 0), ("mon", 0), ("tuesday", 1), ("tue", 1), ("wednesday", 2), ("wed", 2),
    ("thursday", 3), ("thu", 3), ("friday", 4), ("fri", 4), ("saturday", 5), ("sat", 5),
    ("sunday", 6), ("sun", 6),
)
_ALL_WEEKDAYS = 127
_DIGITS = "0123456789"
_TZ_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_+/")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_USEC = timedelta(microseconds=1)
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class CalendarSyntaxError(DotagentError):
    """The text is not a calendar expression systemd would accept."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"invalid calendar expression {text!r}: {reason}")


class CalendarEvaluationError(DotagentError):
    """systemd's own search gives up on this expression (its 'Infinite loop' safety valve)."""


@dataclass(frozen=True, slots=True)
class Component:
    """One element of a comma list: `start`, `start..stop`, `start/repeat`, `start..stop/repeat`.

    Seconds are stored in microseconds. `stop` is -1 when there is none, `repeat` 0 when none.
    """

    start: int
    stop: int = -1
    repeat: int = 0


Chain = tuple[Component, ...] | None  # None is `*` (any value)


@dataclass(frozen=True, slots=True)
class CalendarSpec:
    """A parsed calendar expression. Immutable and hashable; parse once, evaluate often."""

    text: str
    weekdays: int  # bit 0 = Monday; -1 = any day
    year: Chain
    month: Chain
    day: Chain
    hour: Chain
    minute: Chain
    second: tuple[Component, ...]  # microseconds; never `*` (that is 0/1s)
    end_of_month: bool
    utc: bool
    timezone: str | None  # IANA name given in the expression, None for UTC or local time
    dst: int  # -1, or 0/1 when the expression ended with the local zone's std/DST abbreviation
    dst_name: str | None
    normalized: str = field(compare=False)

    # ----------------------------------------------------------------------------------- API

    def zone(self, local_zone: ZoneInfo) -> ZoneInfo | None:
        """The zone the expression is evaluated in; None means UTC arithmetic.

        systemd evaluates an expression with a zone of its own with $TZ set to that zone. UTC
        arithmetic (`… UTC`, `@SECONDS`) is glibc's timegm()/gmtime(), which count leap seconds
        when $TZ is a leap-second zone (`right/…`): then it is that zone's `utc_zone()`.
        """
        tz = named_zone(self.timezone) if self.timezone is not None else local_zone
        if self.utc:
            return tz.utc_zone() if isinstance(tz, LeapZone) else None
        return tz

    def next_elapse(self, after: datetime, local_zone: ZoneInfo) -> datetime | None:
        """The first elapse strictly after `after` (aware), or None if there is none any more.

        The result is in the expression's zone (UTC for `… UTC`), else in `local_zone`.
        """
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError("next_elapse needs an aware datetime")
        usec = (after - _EPOCH) // _ONE_USEC
        nxt = self.next_elapse_usec(usec, local_zone)
        if nxt is None:
            return None
        zone = self.zone(local_zone)
        tz = zone if zone is not None else _utc_zone()
        return at_time_t(nxt // USEC_PER_SEC, tz, nxt % USEC_PER_SEC)

    def next_elapse_usec(self, after_usec: int, local_zone: ZoneInfo) -> int | None:
        """Like `next_elapse` on microseconds since the epoch (what systemd computes in)."""
        zone = self.zone(local_zone)
        return _next_usec(self, after_usec, _zone_clock(zone))

    def matches(self, dt: datetime, local_zone: ZoneInfo) -> bool:
        """True if the aware `dt` is an elapse of this expression."""
        nxt = self.next_elapse(dt - _ONE_USEC, local_zone)
        return nxt is not None and nxt == dt


def _utc_zone() -> ZoneInfo:
    return ZoneInfo("UTC")


# ================================================================================== parsing


def parse(text: str, local_zone: ZoneInfo | None = None) -> CalendarSpec:
    """Parse `text` exactly as systemd 252's calendar_spec_from_string() does.

    `local_zone` only matters for one systemd feature: an expression may end with the local
    zone's standard or daylight-saving abbreviation (`daily CET` under Europe/Berlin), which
    pins the DST flag. Without it the local abbreviations are taken to be UTC's.
    """
    return _Parser(text, local_zone).run()


@functools.lru_cache(maxsize=8192)
def parse_cached(text: str, local_zone: ZoneInfo | None = None) -> CalendarSpec:
    """`parse` with a bounded memo: specs are immutable, so sharing them is safe."""
    return parse(text, local_zone)


def is_valid_timezone(name: str) -> bool:
    """Whether systemd would accept `name` as a time zone (the same rule for an expression's
    zone suffix and a schedule's `timezone` key)."""
    return _timezone_is_valid(name)


@functools.lru_cache(maxsize=1024)
def _timezone_is_valid(name: str) -> bool:
    # systemd's verify_timezone(): a restricted alphabet, no leading, trailing or double '/',
    # then the file must be a TZif file. zoneinfo performs that last check for us.
    if not name:
        return False
    if name == "UTC":
        return True
    if name[0] == "/" or name[-1] == "/" or "//" in name:
        return False
    if any(ch not in _TZ_CHARS for ch in name):
        return False
    try:
        ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError, IsADirectoryError, …
        return False
    return True


@functools.lru_cache(maxsize=256)
def local_abbreviations(zone: ZoneInfo | None) -> tuple[str, str]:
    """glibc's (tzname[0], tzname[1]) for a zone: its standard and DST abbreviations.

    glibc takes them from the zone's current rules; we read them off January and July of a
    year far enough ahead that only those rules apply.
    """
    if zone is None:
        return ("UTC", "UTC")
    if isinstance(zone, LeapZone):
        return zone.tznames
    std: str | None = None
    dst: str | None = None
    for month in (1, 7):
        probe = datetime(2100, month, 1, 12, tzinfo=zone)
        name = probe.tzname() or ""
        if probe.dst():
            dst = dst or name
        else:
            std = std or name
    std = std or dst or ""
    return (std, dst or std)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(s: str) -> str:
    # C's strcasecmp folds ASCII only; str.lower() would also fold non-ASCII letters (and
    # any string, lone surrogates included, is accepted).
    return s.translate(_ASCII_LOWER)


_SHORTHANDS: dict[str, dict[str, object]] = {
    "minutely": {"second": 0},
    "hourly": {"minute": 0, "second": 0},
    "daily": {"hour": 0, "minute": 0, "second": 0},
    "monthly": {"day": (1,), "hour": 0, "minute": 0, "second": 0},
    "annually": {"month": (1,), "day": (1,), "hour": 0, "minute": 0, "second": 0},
    "yearly": {"month": (1,), "day": (1,), "hour": 0, "minute": 0, "second": 0},
    "anually": {"month": (1,), "day": (1,), "hour": 0, "minute": 0, "second": 0},
    "weekly": {"weekdays": 1, "hour": 0, "minute": 0, "second": 0},
    "quarterly": {"month": (1, 4, 7, 10), "day": (1,), "hour": 0, "minute": 0, "second": 0},
    "biannually": {"month": (1, 7), "day": (1,), "hour": 0, "minute": 0, "second": 0},
    "bi-annually": {"month": (1, 7), "day": (1,), "hour": 0, "minute": 0, "second": 0},
    "semiannually": {"month": (1, 7), "day": (1,), "hour": 0, "minute": 0, "second": 0},
    "semi-annually": {"month": (1, 7), "day": (1,), "hour": 0, "minute": 0, "second": 0},
}

# (name in messages, low, high) per field; seconds are checked in microseconds.
_FIELD_BOUNDS = {
    "year": (MIN_YEAR, MAX_YEAR),
    "month": (1, 12),
    "day": (1, 31),
    "hour": (0, 23),
    "minute": (0, 59),
    "second": (0, 60 * USEC_PER_SEC - 1),
}


class _Parser:
    """A cursor over the expression; each method mirrors one step of systemd's parser."""

    def __init__(self, text: str, local_zone: ZoneInfo | None) -> None:
        self.text = text
        self.local_zone = local_zone
        self.s = ""  # the expression without its zone suffix
        self.i = 0
        self.weekdays = 0
        self.chains: dict[str, list[Component] | None] = {
            "year": None, "month": None, "day": None, "hour": None, "minute": None,
        }
        self.second: list[Component] = []
        self.end_of_month = False

    def fail(self, reason: str) -> CalendarSyntaxError:
        return CalendarSyntaxError(self.text, reason)

    def at(self, offset: int = 0) -> str:
        j = self.i + offset
        return self.s[j] if j < len(self.s) else ""

    def where(self) -> str:
        rest = self.s[self.i:]
        if not rest:
            return "at the end"
        return f"at {rest[:12]!r} (column {self.i + 1})"

    # ------------------------------------------------------------------------- top level

    def run(self) -> CalendarSpec:
        text = self.text
        if "\0" in text:
            raise self.fail("NUL character")
        p = text
        utc = False
        tz: str | None = None
        dst = -1
        dst_name: str | None = None
        if _ascii_lower(p).endswith(" utc"):
            utc = True
            p = p[:-4]
        else:
            names = local_abbreviations(self.local_zone)
            low = _ascii_lower(p)
            for j, name in enumerate(names):
                if not name:
                    continue
                if low.endswith(_ascii_lower(name)) and len(p) > len(name) \
                        and p[-len(name) - 1] == " ":
                    dst, dst_name = j, name
                    p = p[: -len(name) - 1]
                    break
            else:
                space = p.rfind(" ")
                if space >= 0 and _timezone_is_valid(p[space + 1:]):
                    tz = p[space + 1:]
                    p = p[:space]
        if not p:
            raise self.fail("empty expression" if not text else "no date or time before the zone")
        self.s = p

        weekdays: int
        short = _SHORTHANDS.get(_ascii_lower(p))
        if short is not None:
            weekdays = int(short.get("weekdays", 0))  # type: ignore[call-overload]
            for name in ("month", "day"):
                values = short.get(name)
                if values is not None:
                    self.chains[name] = [Component(v) for v in values]  # type: ignore[attr-defined]
            if "hour" in short:
                self.chains["hour"] = [Component(0)]
            if "minute" in short:
                self.chains["minute"] = [Component(0)]
            self.second = [Component(0)]
        else:
            try:
                self.parse_weekdays()
                if self.parse_date() == 0:
                    self.parse_time()
                else:
                    utc = True  # `@SECONDS` is a UTC instant whatever zone follows it
                if self.i != len(self.s):
                    raise self.fail(f"unexpected text {self.where()}")
            except CalendarSyntaxError as exc:
                last = p.rsplit(" ", 1)[-1] if " " in p else ""
                if tz is None and last and all(ch in _TZ_CHARS for ch in last) \
                        and any(ch.isalpha() for ch in last):
                    raise self.fail(f"{exc.reason}; {last!r} is not a known time zone") from None
                raise
            weekdays = self.weekdays

        if tz == "UTC":  # unreachable through the suffix rule, kept to mirror systemd
            utc, tz = True, None
        if weekdays <= 0 or weekdays >= _ALL_WEEKDAYS:
            weekdays = -1
        day = self.chains["day"]
        end_of_month = self.end_of_month and day is not None
        year = self.chains["year"]
        if year is not None:
            year = [_fix_year(c) for c in year]
        chains = {
            "year": _normalize_chain(year),
            "month": _normalize_chain(self.chains["month"]),
            "day": _normalize_chain(day),
            "hour": _normalize_chain(self.chains["hour"]),
            "minute": _normalize_chain(self.chains["minute"]),
        }
        second = _normalize_chain(self.second)
        assert second is not None
        for name, chain in (*chains.items(), ("second", second)):
            self.check_chain(name, chain, end_of_month and name == "day")

        spec_fields = dict(
            text=text, weekdays=weekdays, **chains, second=second, end_of_month=end_of_month,
            utc=utc, timezone=tz, dst=dst, dst_name=dst_name,
        )
        normalized = _format_spec(
            weekdays, chains, second, end_of_month, utc, tz, dst_name
        )
        return CalendarSpec(**spec_fields, normalized=normalized)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------- weekdays

    def parse_weekdays(self) -> None:
        s = self.s
        first = True
        low_prev = -1
        while True:
            rest = _ascii_lower(s[self.i:self.i + 9])
            found = next(((n, v) for n, v in _WEEKDAY_TABLE if rest.startswith(n)), None)
            if found is None:
                if first:
                    return  # no weekday part: the expression starts with the date
                raise self.fail(f"expected a weekday name {self.where()}")
            name, nr = found
            after = self.at(len(name))
            if after not in ("", "-", ".", ",", " "):
                self.i += len(name)
                raise self.fail(f"unexpected character after weekday name {self.where()}")
            self.weekdays |= 1 << nr
            if low_prev >= 0:
                if low_prev > nr:
                    raise self.fail(
                        f"weekday range {_WEEKDAY_NAMES[low_prev]}..{_WEEKDAY_NAMES[nr]} "
                        "runs backwards"
                    )
                for j in range(low_prev + 1, nr):
                    self.weekdays |= 1 << j
            self.i += len(name)
            ch = self.at()
            if ch == "":
                return
            if ch == " ":
                self.skip_spaces()
                return
            if ch == ".":
                if low_prev >= 0:
                    raise self.fail(f"a weekday range cannot continue {self.where()}")
                if self.at(1) != ".":
                    raise self.fail(f"expected '..' {self.where()}")
                low_prev = nr
                self.i += 2
            elif ch == "-":
                if low_prev >= 0:
                    raise self.fail(f"a weekday range cannot continue {self.where()}")
                low_prev = nr
                self.i += 1
            elif ch == ",":
                low_prev = -1
                self.i += 1
            if self.at() in ("", " "):
                self.skip_spaces()
                if low_prev >= 0:
                    raise self.fail("weekday range has no end")
                return
            first = False

    def skip_spaces(self) -> None:
        while self.at() == " ":
            self.i += 1

    # ------------------------------------------------------------------------- date

    def parse_date(self) -> int:
        if self.i == len(self.s):
            return 0
        if self.at() == "@":
            self.parse_timestamp()
            return 1
        start = self.i
        first = self.parse_chain("date", usec=False)
        if self.at() in ("", ":"):
            self.i = start  # it was the hour: let the time parser read it again
            return 0
        if self.at() == "~":
            self.end_of_month = True
        elif self.at() != "-":
            raise self.fail(f"expected '-' or '~' in the date {self.where()}")
        self.i += 1
        second = self.parse_chain("date", usec=False)
        if self.at() in ("", " "):
            self.skip_spaces()
            self.chains["month"] = first
            self.chains["day"] = second
            return 0
        if self.end_of_month:
            raise self.fail(f"'~' must separate month and day {self.where()}")
        if self.at() == "~":
            self.end_of_month = True
        elif self.at() != "-":
            raise self.fail(f"expected '-' or '~' in the date {self.where()}")
        self.i += 1
        third = self.parse_chain("date", usec=False)
        if self.at() not in ("", " "):
            raise self.fail(f"unexpected character in the date {self.where()}")
        self.skip_spaces()
        self.chains["year"] = first
        self.chains["month"] = second
        self.chains["day"] = third
        return 0

    def parse_timestamp(self) -> None:
        # `@SECONDS`: strtoul() semantics (leading blanks, a sign, wrap-around on '-').
        self.i += 1
        s = self.s
        j = self.i
        while j < len(s) and s[j] in " \t\n\v\f\r":
            j += 1
        negative = False
        if j < len(s) and s[j] in "+-":
            negative = s[j] == "-"
            j += 1
        k = j
        while k < len(s) and s[k] in _DIGITS:
            k += 1
        if k == j:
            raise self.fail(f"expected seconds since the epoch {self.where()}")
        value = int(s[j:k])
        if value > ULONG_MAX:
            raise self.fail("timestamp is too large")
        if negative:
            value = (-value) % (ULONG_MAX + 1)
        seconds = value - (ULONG_MAX + 1) if value > 2**63 - 1 else value
        self.i = k
        hit = 0
        if isinstance(self.local_zone, LeapZone):  # gmtime() under a leap-second $TZ
            seconds, hit = self.local_zone.utc(seconds)
        try:
            moment = _EPOCH + timedelta(seconds=seconds)
        except OverflowError:
            raise self.fail("timestamp is out of range") from None
        self.chains["year"] = [Component(moment.year)]
        self.chains["month"] = [Component(moment.month)]
        self.chains["day"] = [Component(moment.day)]
        self.chains["hour"] = [Component(moment.hour)]
        self.chains["minute"] = [Component(moment.minute)]
        self.second = [Component((moment.second + hit) * USEC_PER_SEC)]

    # ------------------------------------------------------------------------- time

    def parse_time(self) -> None:
        if self.i == len(self.s):
            self.chains["hour"] = [Component(0)]
            self.chains["minute"] = [Component(0)]
            self.second = [Component(0)]
            return
        hour = self.parse_chain("hour", usec=False)
        if self.at() != ":":
            raise self.fail(f"expected ':' after the hour {self.where()}")
        self.i += 1
        minute = self.parse_chain("minute", usec=False)
        if self.i == len(self.s):
            second: list[Component] | None = [Component(0)]
        else:
            if self.at() != ":":
                raise self.fail(f"expected ':' after the minute {self.where()}")
            self.i += 1
            second = self.parse_chain("second", usec=True)
            if self.i != len(self.s):
                raise self.fail(f"unexpected text after the seconds {self.where()}")
        self.chains["hour"] = hour
        self.chains["minute"] = minute
        assert second is not None
        self.second = second

    # ------------------------------------------------------------------------- chains

    def parse_chain(self, what: str, usec: bool) -> list[Component] | None:
        if self.at() == "*":
            self.i += 1
            return [Component(0, -1, USEC_PER_SEC)] if usec else None
        chain: list[Component] = []
        while True:
            if len(chain) > COMPONENTS_MAX:
                raise self.fail(f"too many comma-separated values in the {what}")
            start = self.parse_decimal(what, usec)
            stop, repeat = -1, 0
            if self.at() == "." and self.at(1) == ".":
                self.i += 2
                stop = self.parse_decimal(what, usec)
                repeat = USEC_PER_SEC if usec else 1
            if self.at() == "/":
                self.i += 1
                repeat = self.parse_decimal(what, usec)
                if repeat == 0:
                    raise self.fail(f"repetition '/0' in the {what}")
            else:
                if start > INT_MAX - repeat:
                    raise self.fail(f"value too large in the {what}")
                if usec and stop >= 0 and start + repeat > stop:
                    raise self.fail(
                        f"second range {_fmt_usec(start)}..{_fmt_usec(stop)} is shorter than "
                        "its default one-second step"
                    )
            if self.at() not in ("", " ", ",", "-", "~", ":"):
                raise self.fail(f"unexpected character in the {what} {self.where()}")
            chain.append(Component(start, stop, repeat))
            if self.at() != ",":
                return chain
            self.i += 1

    def parse_decimal(self, what: str, usec: bool) -> int:
        s = self.s
        j = self.i
        if j >= len(s) or s[j] not in _DIGITS:
            raise self.fail(f"expected a number in the {what} {self.where()}")
        k = j
        while k < len(s) and s[k] in _DIGITS:
            k += 1
        value = int(s[j:k])
        if value > ULONG_MAX:
            raise self.fail(f"number too large in the {what}")
        if usec:
            value *= USEC_PER_SEC
            if value > ULONG_MAX:
                raise self.fail(f"number too large in the {what}")
            if k < len(s) and s[k] == "." and (k + 1 >= len(s) or s[k + 1] != "."):
                k += 1
                value += self.parse_fraction(k)
                k = self.i
        if value > INT_MAX:
            raise self.fail(f"number too large in the {what}")
        self.i = k
        return value

    def parse_fraction(self, k: int) -> int:
        # systemd's parse_fractional_part_u(): six digits, rounded on the seventh, rest ignored.
        s = self.s
        digits = ""
        j = k
        while j < len(s) and s[j] in _DIGITS:
            j += 1
        digits = s[k:j]
        if not digits:
            self.i = k
            raise self.fail(f"expected digits after the decimal point {self.where()}")
        val = int((digits[:6]).ljust(6, "0"))
        if len(digits) > 6 and digits[6] >= "5":
            val += 1
        self.i = j
        return val

    # ------------------------------------------------------------------------- validity

    def check_chain(self, name: str, chain: Chain, end_of_month: bool) -> None:
        if chain is None:
            return
        low, high = _FIELD_BOUNDS[name]
        if end_of_month:
            high -= 3  # at most 28 days before the end of the month
        show = _fmt_usec if name == "second" else str
        label = "day (counted from the end of the month)" if end_of_month else name
        for c in chain:
            if c.start < low or c.start > high:
                raise self.fail(
                    f"{label} {show(c.start)} is out of range ({show(low)}..{show(high)})"
                )
            if c.repeat > high - low:
                raise self.fail(f"{label} repetition /{show(c.repeat)} is too large")
            if c.stop >= 0:
                if c.stop < low or c.stop > high:
                    raise self.fail(
                        f"{label} {show(c.stop)} is out of range ({show(low)}..{show(high)})"
                    )
                if c.start + c.repeat > c.stop:
                    raise self.fail(
                        f"{label} range {show(c.start)}..{show(c.stop)} is empty or its step "
                        "never fires"
                    )
            elif end_of_month and c.start - c.repeat < low:
                raise self.fail(
                    f"{label} {show(c.start)}/{show(c.repeat)} repeats past the end of the month"
                )
            elif not end_of_month and c.start + c.repeat > high:
                raise self.fail(
                    f"{label} {show(c.start)}/{show(c.repeat)} never repeats within "
                    f"{show(low)}..{show(high)}"
                )


def _fmt_usec(v: int) -> str:
    whole, frac = divmod(v, USEC_PER_SEC)
    return f"{whole}.{frac:06d}".rstrip("0") if frac else str(whole)


def _fix_year(c: Component) -> Component:
    # Two-digit years: 0..69 are 2000..2069, 70..99 are 1970..1999 (start and stop alike).
    def fix(v: int) -> int:
        if 0 <= v < 70:
            return v + 2000
        if 70 <= v < 100:
            return v + 1900
        return v

    return Component(fix(c.start), fix(c.stop), c.repeat)


def _normalize_chain(chain: list[Component] | None) -> tuple[Component, ...] | None:
    if chain is None:
        return None
    out = []
    for c in chain:
        start, stop, repeat = c.start, c.stop, c.repeat
        if stop > start and repeat > 0:
            stop -= (stop - start) % repeat
        # A repetition that cannot fire even once, or a one-value range, is a plain value.
        if (stop > start and repeat > 0 and start + repeat > stop) or start == stop:
            repeat, stop = 0, -1
        out.append(Component(start, stop, repeat))
    if len(out) <= 1:
        return tuple(out)
    return tuple(sorted(set(out), key=lambda c: (c.start, c.stop, c.repeat)))


# ================================================================================= formatting


def _format_weekdays(bits: int) -> str:
    parts: list[str] = []
    x = 0
    while x < 7:
        if bits & (1 << x):
            end = x
            while end + 1 < 7 and bits & (1 << (end + 1)):
                end += 1
            if end == x:
                parts.append(_WEEKDAY_NAMES[x])
            elif end == x + 1:
                parts.append(f"{_WEEKDAY_NAMES[x]},{_WEEKDAY_NAMES[end]}")
            else:
                parts.append(f"{_WEEKDAY_NAMES[x]}..{_WEEKDAY_NAMES[end]}")
            x = end + 1
        else:
            x += 1
    return ",".join(parts)


def _format_chain(chain: Chain, width: int, usec: bool) -> str:
    if chain is None:
        return "*"
    d = USEC_PER_SEC if usec else 1
    if usec and len(chain) == 1 and chain[0].start == 0 and chain[0].repeat == USEC_PER_SEC \
            and chain[0].stop == -1:
        return "*"
    out = []
    for c in chain:
        s = f"{c.start // d:0{width}d}"
        if c.start % d:
            s += f".{c.start % d:06d}"
        if c.stop > 0:
            s += f"..{c.stop // d:0{width}d}"
            if c.stop % d:
                s += f".{c.stop % d:06d}"
        if c.repeat > 0 and not (c.stop > 0 and c.repeat == d):
            s += f"/{c.repeat // d}"
        if c.repeat % d:
            s += f".{c.repeat % d:06d}"
        out.append(s)
    return ",".join(out)


def _format_spec(
    weekdays: int,
    chains: dict[str, Chain],
    second: tuple[Component, ...],
    end_of_month: bool,
    utc: bool,
    tz: str | None,
    dst_name: str | None,
) -> str:
    s = ""
    if weekdays > 0:
        s = _format_weekdays(weekdays) + " "
    s += (
        f"{_format_chain(chains['year'], 4, False)}-{_format_chain(chains['month'], 2, False)}"
        f"{'~' if end_of_month else '-'}{_format_chain(chains['day'], 2, False)} "
        f"{_format_chain(chains['hour'], 2, False)}:{_format_chain(chains['minute'], 2, False)}"
        f":{_format_chain(second, 2, True)}"
    )
    if utc:
        s += " UTC"
    elif tz is not None:
        s += " " + tz
    elif dst_name:
        s += " " + dst_name
    return s


# ============================================================================ local time model


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 for any month/day (out-of-range values roll over like mktime)."""
    y += (m - 1) // 12
    m = (m - 1) % 12 + 1
    return date(y, m, 1).toordinal() - _EPOCH_ORDINAL + d - 1


@functools.lru_cache(maxsize=4096)
def _month_start(y: int, m: int) -> int:
    """Days since 1970-01-01 of the first of a (valid) month."""
    return date(y, m, 1).toordinal() - _EPOCH_ORDINAL


_MISSING: tuple[int, bool] = (0, False)  # a sentinel distinct (by identity) from cached values


def _is_leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _days_in_month(y: int, m: int) -> int:
    if m == 2 and _is_leap(y):
        return 29
    return _DAYS_IN_MONTH[m]


# Broken-down time as systemd's `struct tm` holds it (month 1..12 here, fields may overflow).
_Tm = tuple[int, int, int, int, int, int]


class _ZoneClock:
    """glibc's localtime()/mktime() for one zone, including mktime's memory of its last offset.

    A zone's offsets are cached per local day: on a day with no transition, mktime's answer is
    simply `local - offset`. Days with a transition run glibc's probing algorithm.
    """

    __slots__ = ("_days", "_epoch", "zone")

    def __init__(self, zone: ZoneInfo | None) -> None:
        self.zone = zone
        # time_t -> datetime is `zone.fromutc(_epoch + t)`: datetime.fromtimestamp() would go
        # through the C library's gmtime(), which a leap-second $TZ shifts (see at_time_t).
        self._epoch = datetime(1970, 1, 1, tzinfo=zone)
        # local day number -> (utc offset seconds, isdst) if the day has one offset, else None
        self._days: dict[int, tuple[int, bool] | None] = {}

    def day_info(self, day: int) -> tuple[int, bool] | None:
        try:
            return self._days[day]
        except KeyError:
            pass
        zone = self.zone
        if zone is None:
            info: tuple[int, bool] | None = (0, False)
        else:
            try:
                start = datetime(1970, 1, 1) + timedelta(days=day)
                a = start.replace(tzinfo=zone)
                b = start.replace(tzinfo=zone, fold=1)
                c = (start + timedelta(days=1)).replace(tzinfo=zone)
                oa, ob, oc = a.utcoffset(), b.utcoffset(), c.utcoffset()
                if oa == ob == oc and bool(a.dst()) == bool(c.dst()) and oa is not None:
                    info = (int(oa.total_seconds()), bool(a.dst()))
                else:
                    info = None
            except (OverflowError, ValueError):
                info = (0, False)
        if len(self._days) > 200_000:
            self._days.clear()
        self._days[day] = info
        return info

    def localtime(self, t: int) -> tuple[_Tm, bool, int]:
        """UTC seconds -> (local fields, isdst, utc offset)."""
        if self.zone is None:
            d = _EPOCH + timedelta(seconds=t)
            return (d.year, d.month, d.day, d.hour, d.minute, d.second), False, 0
        d = self.zone.fromutc(self._epoch + timedelta(0, t))
        off = d.utcoffset()
        assert off is not None
        return (
            (d.year, d.month, d.day, d.hour, d.minute, d.second),
            bool(d.dst()),
            int(off.total_seconds()),
        )

    def _convert(self, t: int) -> tuple[int, bool]:
        """UTC seconds -> (local seconds as if UTC, isdst)."""
        if self.zone is None:
            return t, False
        d = self.zone.fromutc(self._epoch + timedelta(0, t))
        off = d.utcoffset()
        assert off is not None
        return t + int(off.total_seconds()), bool(d.dst())

    def mktime(self, tm: _Tm, isdst: int, guess: int) -> tuple[int, _Tm, int, int]:
        """glibc mktime(): -> (utc seconds, normalised fields, isdst, offset remembered).

        `guess` is the offset mktime remembers from its previous call (local - utc).
        """
        y, mo, d, h, mi, s = tm
        if 1 <= mo <= 12 and 1 <= d <= 28 and 0 <= h < 24 and 0 <= mi < 60 and 0 <= s < 60:
            day = _month_start(y, mo) + d - 1
            local = day * 86400 + h * 3600 + mi * 60 + s
            normal = True
        else:
            day = _days_from_civil(y, mo, d) + (h * 3600 + mi * 60 + s) // 86400
            local = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
            normal = 1 <= mo <= 12 and 1 <= d <= _days_in_month(y, mo) and 0 <= h < 24 \
                and 0 <= mi < 60 and 0 <= s < 60
        info = self._days.get(day, _MISSING)
        if info is _MISSING:
            info = self.day_info(day)
        if info is not None and (isdst < 0 or bool(isdst) == info[1]):
            off = info[0]
            t = local - off
            if normal:
                return t, tm, int(info[1]), off
            return t, _fields(local), int(info[1]), off
        return self._mktime_slow(tm, local, isdst, guess)

    def _mktime_slow(self, tm: _Tm, local: int, isdst: int,
                     guess: int) -> tuple[int, _Tm, int, int]:
        # A transcription of the behaviour of glibc's __mktime_internal (mktime.c): probe with
        # the remembered offset, follow the error, detect the oscillation that marks a DST gap,
        # and honour an explicit tm_isdst by borrowing the offset of a nearby instant.
        t0 = local - guess
        t = t1 = t2 = t0
        dst2 = False
        probes = 6
        lt, tdst = self._convert(t)
        found = False
        while True:
            dt = local - lt
            if dt == 0:
                break
            if t == t1 and t != t2 and (dst2 <= tdst if isdst < 0 else bool(isdst) != tdst):
                found = True
                break
            probes -= 1
            if probes == 0:
                # glibc fails (EOVERFLOW); systemd ignores the failure and keeps its fields.
                return t, _fields(local), isdst, guess
            t1, t2, t, dst2 = t2, t, t + dt, tdst
            lt, tdst = self._convert(t)
        if not found and isdst >= 0 and bool(isdst) != tdst:
            stride = 601200
            delta_bound = 457243200 // 2 + stride
            hit = False
            for delta in range(stride, delta_bound, stride):
                for direction in (-1, 1):
                    ot = t + delta * direction
                    lo, odst = self._convert(ot)
                    if bool(isdst) == odst:
                        t = ot + (local - lo)
                        lt, tdst = self._convert(t)
                        hit = True
                        break
                if hit:
                    break
            if not hit:
                t += 3600 * (int(isdst == 0) - int(not tdst))
                lt, tdst = self._convert(t)
        return t, _fields(lt), int(tdst), local - t


def _fields(local: int) -> _Tm:
    day, rem = divmod(local, 86400)
    dd = date.fromordinal(day + _EPOCH_ORDINAL)
    h, rem = divmod(rem, 3600)
    mi, s = divmod(rem, 60)
    return (dd.year, dd.month, dd.day, h, mi, s)


class _LeapClock(_ZoneClock):
    """The same for a zone with leap seconds (`right/…`), where glibc's time_t counts them.

    localtime() shows an inserted second as :60, and mktime() clamps the seconds it is given to
    0..59, solves for those, then adds the difference back (after a match on a :60 second it
    steps past it). Days with a leap second have no single offset, so they take this slow path;
    every other day keeps the per-day shortcut, its offset including the leap correction.
    """

    __slots__ = ()
    zone: LeapZone

    def localtime(self, t: int) -> tuple[_Tm, bool, int]:
        local, hit, raw = self.zone.localtime(t)
        y, mo, d, h, mi, s = _fields(local)
        return (y, mo, d, h, mi, s + hit), bool(raw.dst()), local - t

    def _convert_tm(self, t: int) -> tuple[int, bool, _Tm]:
        """UTC seconds -> (local seconds counting a :60 second as one more, isdst, fields)."""
        local, hit, raw = self.zone.localtime(t)
        y, mo, d, h, mi, s = _fields(local)
        return local + hit, bool(raw.dst()), (y, mo, d, h, mi, s + hit)

    def mktime(self, tm: _Tm, isdst: int, guess: int) -> tuple[int, _Tm, int, int]:
        if 0 <= tm[5] <= 59:
            return super().mktime(tm, isdst, guess)
        return self._mktime_slow(tm, 0, isdst, guess)

    def _mktime_slow(self, tm: _Tm, local: int, isdst: int,
                     guess: int) -> tuple[int, _Tm, int, int]:
        # glibc's __mktime_internal with leap seconds possible: as in the base class, plus the
        # clamping of tm_sec and the adjustment for it at the end.
        y, mo, d, h, mi, s = tm
        sec = min(max(s, 0), 59)
        local = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec
        t0 = local - guess
        t = t1 = t2 = t0
        dst2 = False
        probes = 6
        lt, tdst, out = self._convert_tm(t)
        found = False
        while True:
            dt = local - lt
            if dt == 0:
                break
            if t == t1 and t != t2 and (dst2 <= tdst if isdst < 0 else bool(isdst) != tdst):
                found = True
                break
            probes -= 1
            if probes == 0:
                return t, _fields(local), isdst, guess
            t1, t2, t, dst2 = t2, t, t + dt, tdst
            lt, tdst, out = self._convert_tm(t)
        if not found and isdst >= 0 and bool(isdst) != tdst:
            stride = 601200
            delta_bound = 457243200 // 2 + stride
            hit = False
            for delta in range(stride, delta_bound, stride):
                for direction in (-1, 1):
                    ot = t + delta * direction
                    lo, odst, _o = self._convert_tm(ot)
                    if bool(isdst) == odst:
                        t = ot + (local - lo)
                        lt, tdst, out = self._convert_tm(t)
                        hit = True
                        break
                if hit:
                    break
            if not hit:
                t += 3600 * (int(isdst == 0) - int(not tdst))
                lt, tdst, out = self._convert_tm(t)
        remembered = local - t
        if s != out[5]:
            t += int(sec == 0 and out[5] == 60) - sec + s
            lt, tdst, out = self._convert_tm(t)
        return t, out, int(tdst), remembered


def local_mktime(zone: ZoneInfo | None, fields: tuple[int, int, int, int, int, int]) -> int:
    """glibc's mktime() of local (year, month, day, hour, minute, second) with tm_isdst = -1,
    as the first call in a process makes it (no offset remembered yet): how systemd's
    parse_timestamp() reads a local time. A time in a repeated hour is read as that probing
    lands (Berlin: the second pass; New York: the first); one in a skipped hour moves forward
    by the gap. `zone` None is UTC. Seconds outside 0..59 (a leap second's :60) are clamped
    and added back afterwards, as glibc does."""
    clock = _zone_clock(zone)
    y, mo, d, h, mi, s = fields
    if 0 <= s <= 59 or isinstance(clock, _LeapClock):
        return clock.mktime(fields, -1, 0)[0]
    clamped = min(max(s, 0), 59)
    return clock.mktime((y, mo, d, h, mi, clamped), -1, 0)[0] + s - clamped


@functools.lru_cache(maxsize=512)
def _zone_clock(zone: ZoneInfo | None) -> _ZoneClock:
    if isinstance(zone, LeapZone):
        return _LeapClock(zone)
    return _ZoneClock(zone)


# ================================================================================ the search


def _match(chain: Chain, val: int) -> int:
    """systemd's find_matching_component() for a plain field: the earliest value >= val.

    Returns the new value, or -1 when the chain has nothing at or after `val`.
    """
    if chain is None:
        return val
    best = -1
    for c in chain:
        start = c.start
        if start >= val:
            if best < 0 or start < best:
                best = start
        elif c.repeat > 0:
            k = start + c.repeat * (-(-(val - start) // c.repeat))
            if (best < 0 or k < best) and (c.stop < 0 or k <= c.stop):
                best = k
    return best


def _end_of_month(
    clock: _ZoneClock, tm: _Tm, isdst: int, guess: int, day: int
) -> tuple[int, int]:
    """systemd's find_end_of_month(): mktime of day `1 - day` of the next month.

    Returns (day of month or -1, remembered offset): it is a real mktime call, so it moves
    glibc's remembered offset like any other.
    """
    y, mo, _d, h, mi, s = tm
    _t, out, _dst, guess = clock.mktime((y, mo + 1, 1 - day, h, mi, s), isdst, guess)
    # mktime normalised the month too; compare it with ours (both normalised to 1..12).
    if (out[0], out[1]) != (y + (mo - 1) // 12, (mo - 1) % 12 + 1):
        return -1, guess
    return out[2], guess


def _next_usec(spec: CalendarSpec, after_usec: int, clock: _ZoneClock) -> int | None:
    usec = after_usec + 1
    t, us = divmod(usec, USEC_PER_SEC)
    if t < 0:
        t, us = 0, 0  # systemd's usec_t cannot go before the epoch
    tm, tdst, guess = clock.localtime(t)
    y, mo, d, h, mi, s = tm
    isdst = int(tdst)
    spec_dst = spec.dst
    year_c, month_c, day_c = spec.year, spec.month, spec.day
    hour_c, minute_c, second_c = spec.hour, spec.minute, spec.second
    weekdays = spec.weekdays
    eom = spec.end_of_month
    mktime = clock.mktime
    days = clock._days

    def settled(y: int, mo: int, d: int, h: int, mi: int, s: int) -> tuple[int, bool] | None:
        # Inlined fast path of mktime (the hot spot): in-range fields on a day without a
        # transition are left alone; the answer is that day's (offset, isdst).
        if 1 <= mo <= 12 and d >= 1 and 0 <= h < 24 and 0 <= mi < 60 and 0 <= s < 60 \
                and (d <= 28 or d <= _days_in_month(y, mo)):
            day = _month_start(y, mo) + d - 1
            info = days.get(day, _MISSING)
            if info is _MISSING:
                info = clock.day_info(day)
            if info is not None and (isdst < 0 or bool(isdst) == info[1]):
                return info
        return None

    # tm_within_bounds(): mktime a copy; report whether it moved, and adopt it if it moved on.

    def within(fields: _Tm) -> tuple[int, _Tm]:
        nonlocal isdst, guess
        if fields[0] > MAX_YEAR:
            return -1, fields
        info = settled(*fields)
        if info is not None:
            guess = info[0]
            return 1, fields
        _t2, out, odst, guess = mktime(fields, isdst, guess)
        if out == fields:
            return 1, fields
        # The first field that changed decides; the fields below it restart from zero.
        oy, omo, od, oh, omi, os_ = out
        fy, fmo, fd, fh, fmi, fs = fields
        if oy != fy:
            cmp, out = (1 if oy > fy else -1), (oy, 1, od, oh, omi, os_)
        elif omo != fmo:
            cmp, out = (1 if omo > fmo else -1), (oy, omo, 1, oh, omi, os_)
        elif od != fd:
            cmp, out = (1 if od > fd else -1), (oy, omo, od, 0, omi, os_)
        elif oh != fh:
            cmp, out = (1 if oh > fh else -1), (oy, omo, od, oh, 0, os_)
        elif omi != fmi:
            cmp, out = (1 if omi > fmi else -1), (oy, omo, od, oh, omi, 0)
        else:
            cmp = 1 if os_ > fs else -1
        if cmp < 0:
            return -1, fields  # systemd refuses to go backwards
        isdst = odst
        return 0, out

    origin = (y, mo, d, h, mi, s, us)
    # Set once mktime has carried the search back before its start (a DST gap seen with an
    # explicit tm_isdst); from then on the DST flag is whatever mktime last reported.
    went_back = False

    for _ in range(MAX_CALENDAR_ITERATIONS):
        # Normalise the current date (mktime writes the normalised fields back).
        info = settled(y, mo, d, h, mi, s)
        if info is not None:
            guess, isdst = info[0], int(info[1])
        else:
            _t, (y, mo, d, h, mi, s), isdst, guess = mktime((y, mo, d, h, mi, s), isdst, guess)
        if not went_back:
            isdst = spec_dst
        # The fields are normalised now. Re-running mktime on unchanged fields cannot change
        # them or glibc's remembered offset, so tm_within_bounds is skipped until a field
        # moves -- unless an explicit DST flag (`… CET`) makes mktime answer differently.
        clean = spec_dst < 0 or went_back

        # year
        v = _match(year_c, y)
        if v < 0:
            return None
        if v != y:
            y, mo, d, h, mi, s, us = v, 1, 1, 0, 0, 0, 0
            clean = False
        if clean:  # tm_within_bounds still bounds the year
            r = 1 if y <= MAX_YEAR else -1
        else:
            r, (y, mo, d, h, mi, s) = within((y, mo, d, h, mi, s))
            clean = r == 1
        if r <= 0:
            return None

        # month
        v = _match(month_c, mo)
        if v >= 0:
            if v != mo:
                mo, d, h, mi, s, us = v, 1, 0, 0, 0, 0
                clean = False
            if clean:  # tm_within_bounds still bounds the year
                r = 1 if y <= MAX_YEAR else -1
            else:
                r, (y, mo, d, h, mi, s) = within((y, mo, d, h, mi, s))
                clean = r == 1
        else:
            r = -1
        if r < 0:
            y, mo, d, h, mi, s, us = y + 1, 1, 1, 0, 0, 0, 0
            continue
        if r == 0:
            continue

        # day of month (counted from the end of the month with `~`)
        if day_c is None:
            v = d
        elif eom:
            v = -1
            clean = False  # find_end_of_month's mktime calls move glibc's remembered offset
            for c in day_c:
                start, guess = _end_of_month(clock, (y, mo, d, h, mi, s), isdst, guess, c.start)
                stop, guess = _end_of_month(clock, (y, mo, d, h, mi, s), isdst, guess, c.stop)
                if stop > 0:
                    start, stop = stop, start
                if start >= d:
                    if v < 0 or start < v:
                        v = start
                elif c.repeat > 0:
                    k = start + c.repeat * (-(-(d - start) // c.repeat))
                    if (v < 0 or k < v) and (stop < 0 or k <= stop):
                        v = k
        else:
            v = _match(day_c, d)
        if v >= 0:
            if v != d:
                d, h, mi, s, us = v, 0, 0, 0, 0
                clean = False
            if clean:  # tm_within_bounds still bounds the year
                r = 1 if y <= MAX_YEAR else -1
            else:
                r, (y, mo, d, h, mi, s) = within((y, mo, d, h, mi, s))
                clean = r == 1
        else:
            r = -1
        if r < 0:
            mo, d, h, mi, s, us = mo + 1, 1, 0, 0, 0, 0
            continue
        if r == 0:
            continue

        if weekdays >= 0 and not weekdays & (1 << date(y, mo, d).weekday()):
            d, h, mi, s, us = d + 1, 0, 0, 0, 0
            continue

        # hour
        v = _match(hour_c, h)
        if v >= 0:
            if v != h:
                h, mi, s, us = v, 0, 0, 0
                clean = False
            if clean:  # tm_within_bounds still bounds the year
                r = 1 if y <= MAX_YEAR else -1
            else:
                r, (y, mo, d, h, mi, s) = within((y, mo, d, h, mi, s))
                clean = r == 1
        else:
            r = -1
        if r < 0:
            d, h, mi, s, us = d + 1, 0, 0, 0, 0
            continue
        if r == 0:
            # The hour we chose may not exist (DST gap): start again from the normalised time.
            continue

        # minute
        v = _match(minute_c, mi)
        if v >= 0:
            if v != mi:
                mi, s, us = v, 0, 0
                clean = False
            if clean:  # tm_within_bounds still bounds the year
                r = 1 if y <= MAX_YEAR else -1
            else:
                r, (y, mo, d, h, mi, s) = within((y, mo, d, h, mi, s))
                clean = r == 1
        else:
            r = -1
        if r < 0:
            h, mi, s, us = h + 1, 0, 0, 0
            continue
        if r == 0:
            continue

        # second, in microseconds
        v = _match(second_c, s * USEC_PER_SEC + us)
        if v >= 0:
            new_s, us = divmod(v, USEC_PER_SEC)
            if new_s != s:
                s = new_s
                clean = False
            if clean:  # tm_within_bounds still bounds the year
                r = 1 if y <= MAX_YEAR else -1
            else:
                r, (y, mo, d, h, mi, s) = within((y, mo, d, h, mi, s))
                clean = r == 1
        else:
            r = -1
        if r < 0:
            mi, s, us = mi + 1, 0, 0
            continue
        if r == 0:
            continue

        # systemd 252 as shipped by Debian (the fix for timers stuck near DST changes, e.g.
        # Australia/Lord_Howe): a match before the start means mktime moved us backwards;
        # retry an hour later, keeping minutes and seconds.
        if (y, mo, d, h, mi, s, us) < origin:
            h += 1
            went_back = True
            continue

        # systemd's final mktime() of the match.
        t_final = mktime((y, mo, d, h, mi, s), isdst, guess)[0]
        return t_final * USEC_PER_SEC + us

    raise CalendarEvaluationError(
        f"calendar expression {spec.normalized!r}: systemd's search gives up here "
        "(infinite loop in calendar calculation)"
    )
