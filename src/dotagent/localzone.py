"""The local time zone, as the C library would pick it: `$TZ`, else /etc/localtime, else UTC.

Schedules without a zone of their own run in this zone. Only commands call this; the pure
scheduling code receives the zone as an argument.

`$TZ` is read the way glibc's tzset() reads it: a leading ':' is dropped, a file (a zone name
under the zoneinfo directory, or an absolute path) wins, and anything else is a POSIX TZ string
such as `JST-9`, `<+0330>-3:30` or `CET-1CEST,M3.5.0,M10.5.0/3`. A POSIX string becomes an
in-memory TZif file whose transitions (UTC years 1970 to 2299) are computed exactly as glibc's
__tz_compute() does, so our wall clock agrees with libc's localtime(), abbreviations included.
What glibc cannot parse at all is UTC, as there.

A zone file with leap-second records (the `right/` zones) is read as glibc reads it: time_t then
counts the leap seconds, so local time is the zone's offset minus the leap correction, and the
inserted second shows as :60. Python's zoneinfo ignores those records; `LeapZone` applies them.
"""

from __future__ import annotations

import bisect
import calendar
import contextlib
import functools
import io
import os
import struct
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = ["LeapZone", "at_time_t", "local_zone", "named_zone", "posix_zone", "without_leaps"]

# The UTC years whose transitions are written out; after them the last state persists.
FIRST_YEAR, LAST_YEAR = 1970, 2299
_SECSPERDAY = 86400
_USHORT = 0xFFFF
_ULONG = 2**64 - 1
_DIGITS = "0123456789"  # C isdigit(), not str.isdigit()


def local_zone(environ: Mapping[str, str] | None = None) -> ZoneInfo:
    """`$TZ` (a zoneinfo name or file, optionally with glibc's leading ':', or a POSIX TZ
    string), else /etc/localtime, else UTC. A `$TZ` glibc cannot use at all is UTC there too."""
    env = os.environ if environ is None else environ
    tz = env.get("TZ")
    if tz is not None:
        name = tz[1:] if tz.startswith(":") else tz
        if name == "":
            return ZoneInfo("UTC")  # glibc: an empty TZ means "Universal"
        if name.startswith("/"):
            with contextlib.suppress(OSError, ValueError):
                return _zone_from_file(Path(name), _zone_key(Path(name)) or name)
        else:
            with contextlib.suppress(Exception):  # ZoneInfoNotFoundError, ValueError, ...
                return named_zone(name)
        return posix_zone(name)
    localtime = Path("/etc/localtime")
    key = _zone_key(localtime)
    if key is not None:
        with contextlib.suppress(Exception):
            return named_zone(key)
    try:
        return _zone_from_file(localtime, "localtime")
    except (OSError, ValueError):
        return ZoneInfo("UTC")


def _zone_key(path: Path) -> str | None:
    """'Europe/Berlin' for a path that resolves into a zoneinfo tree, else None."""
    try:
        target = str(path.resolve())
    except OSError:
        return None
    marker = "/zoneinfo/"
    if marker in target:
        return target.split(marker, 1)[1]
    return None


# ======================================================================== leap-second zone files


@functools.lru_cache(maxsize=256)
def named_zone(name: str) -> ZoneInfo:
    """The zone `name` (as for `ZoneInfo(name)`), read as glibc reads its file: a `LeapZone`
    when the file has leap-second records (`right/UTC`), else the plain `ZoneInfo`.

    Raises what `ZoneInfo(name)` raises for a name that is not a zone.
    """
    zone = ZoneInfo(name)
    for root in zoneinfo.TZPATH:
        path = Path(root, name)
        if path.is_file():
            try:
                data = path.read_bytes()
            except OSError:
                break
            leaps = _tzif_leaps(data)
            if leaps:
                return LeapZone.build(data, name, leaps)
            break
    return zone


def _zone_from_file(path: Path, key: str) -> ZoneInfo:
    data = path.read_bytes()
    leaps = _tzif_leaps(data)
    if leaps:
        return LeapZone.build(data, key, leaps)
    return ZoneInfo.from_file(io.BytesIO(data), key=key)


def without_leaps(zone: ZoneInfo) -> ZoneInfo:
    """The zone with its leap seconds ignored (offsets and abbreviations as the file has them)."""
    return zone.raw if isinstance(zone, LeapZone) else zone


def _tzif_leaps(data: bytes) -> tuple[tuple[int, int], ...]:
    """The leap-second records (time_t of the change, total correction from then on) of a
    TZif file; () for a file without them or one that cannot be read."""
    head = struct.Struct(">4s1s15x6l")
    try:
        magic, version, isut, isstd, leapcnt, timecnt, typecnt, charcnt = \
            head.unpack_from(data, 0)
        if magic != b"TZif":
            return ()
        time_size = 4
        offset = head.size
        if version >= b"2":  # skip the 32-bit block, read the 64-bit one
            offset += timecnt * 5 + typecnt * 6 + charcnt + leapcnt * 8 + isstd + isut
            magic, _v, isut, isstd, leapcnt, timecnt, typecnt, charcnt = \
                head.unpack_from(data, offset)
            if magic != b"TZif":
                return ()
            offset += head.size
            time_size = 8
        if leapcnt <= 0:
            return ()
        offset += timecnt * (time_size + 1) + typecnt * 6 + charcnt
        record = struct.Struct(">ql" if time_size == 8 else ">ll")
        return tuple(record.unpack_from(data, offset + i * record.size) for i in range(leapcnt))
    except struct.error:
        return ()


def _tzif_names(data: bytes) -> tuple[str, str] | None:
    """glibc's tzname[0], tzname[1] for a TZif file: of each kind (standard, DST), the
    abbreviation of the type the latest transition of that kind goes to."""
    head = struct.Struct(">4s1s15x6l")
    try:
        _m, version, isut, isstd, leapcnt, timecnt, typecnt, charcnt = head.unpack_from(data, 0)
        offset, time_size = head.size, 4
        if version >= b"2":
            offset += timecnt * 5 + typecnt * 6 + charcnt + leapcnt * 8 + isstd + isut
            _m, _v, isut, isstd, leapcnt, timecnt, typecnt, charcnt = \
                head.unpack_from(data, offset)
            offset += head.size
            time_size = 8
        indexes = data[offset + timecnt * time_size: offset + timecnt * (time_size + 1)]
        offset += timecnt * (time_size + 1)
        types = [struct.unpack_from(">lBB", data, offset + 6 * i) for i in range(typecnt)]
        chars = data[offset + 6 * typecnt: offset + 6 * typecnt + charcnt]
    except struct.error:
        return None

    def abbr(index: int) -> str:
        raw = chars[index:].split(b"\0", 1)[0]
        return raw.decode("ascii", "replace")

    names: list[str | None] = [None, None]
    for i in reversed(range(len(indexes))):
        if indexes[i] >= len(types):
            return None
        _off, isdst, idx = types[indexes[i]]
        kind = 1 if isdst else 0
        if names[kind] is None:
            names[kind] = abbr(idx)
            if names[1 - kind] is not None:
                break
    std = names[0]
    if std is None:
        if not types:
            return None
        std = abbr(types[0][2])
    return (std, names[1] if names[1] is not None else std)


_EPOCH_NAIVE = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)


def at_time_t(seconds: int, zone: tzinfo, microseconds: int = 0) -> datetime:
    """The aware datetime of time_t `seconds` in `zone`, computed without the C library.

    `datetime.fromtimestamp(t, zone)` goes through gmtime(), which under a leap-second $TZ
    (`right/…`) subtracts the leap seconds (27 since 2017): the same t would give different
    datetimes depending on the process's $TZ. This never does, and costs about the same.
    """
    epoch = _EPOCHS.get(zone)
    if epoch is None:
        if len(_EPOCHS) > 1024:
            _EPOCHS.clear()
        epoch = _EPOCHS[zone] = datetime(1970, 1, 1, tzinfo=zone)
    return zone.fromutc(epoch + timedelta(0, seconds, microseconds))


_EPOCHS: dict[tzinfo, datetime] = {}


class LeapZone(ZoneInfo):
    """A zone whose file has leap-second records, read as glibc's localtime() and mktime() read
    it: a time_t counts the leap seconds, so the wall clock is the zone's offset plus time_t
    minus the leap correction in force. An inserted second is the wall time of the second
    before it, again: as a Python datetime it has `fold=1`, and glibc prints it as :60
    (`localtime()` below tells them apart).

    Aware datetimes in such a zone convert to and from time_t as glibc does, so
    `datetime(2026, 1, 1, tzinfo=named_zone("right/UTC")).timestamp()` is 1767225627.
    """

    raw: ZoneInfo  # the same file without its leap records (Python's own reading of it)
    tznames: tuple[str, str]  # glibc's tzname[0], tzname[1]
    _leap_at: tuple[int, ...]
    _leap_corr: tuple[int, ...]
    _leap_hit: tuple[int, ...]  # seconds glibc shows as :60 (and beyond) at exactly _leap_at

    @classmethod
    def build(cls, data: bytes, key: str, leaps: tuple[tuple[int, int], ...]) -> LeapZone:
        zone = cls.from_file(io.BytesIO(data), key=key)
        zone.raw = ZoneInfo.from_file(io.BytesIO(data), key=key)
        raw_names = _tzif_names(data)
        zone.tznames = raw_names if raw_names is not None else ("UTC", "UTC")
        zone._leap_at = tuple(at for at, _ in leaps)
        zone._leap_corr = tuple(corr for _, corr in leaps)
        hits: list[int] = []
        for i, (at, corr) in enumerate(leaps):
            previous = leaps[i - 1][1] if i else 0
            if corr > previous:  # an inserted second; glibc also counts a run of them
                run = 1
                if i and at == leaps[i - 1][0] + 1 and corr == previous + 1 and hits[-1]:
                    run = hits[-1] + 1
                hits.append(run)
            else:
                hits.append(0)
        zone._leap_hit = tuple(hits)
        return zone

    def utc_zone(self) -> LeapZone:
        """UTC with this zone's leap seconds: what glibc's gmtime() and timegm() compute while
        this zone is $TZ."""
        cached: LeapZone | None = getattr(self, "_utc", None)
        if cached is None:
            leaps = tuple(zip(self._leap_at, self._leap_corr, strict=True))
            cached = LeapZone.build(_tzif([(0, False, "UTC")], []), "UTC", leaps)
            self._utc = cached
        return cached

    def correction(self, t: int) -> tuple[int, int]:
        """(leap correction at time_t `t`, how far into an inserted second `t` is: 0, or 1
        for the :60 second)."""
        i = bisect.bisect_right(self._leap_at, t) - 1
        if i < 0:
            return 0, 0
        return self._leap_corr[i], self._leap_hit[i] if t == self._leap_at[i] else 0

    def localtime(self, t: int) -> tuple[int, int, datetime]:
        """glibc's localtime(t): (local seconds since the epoch as if UTC, the :60 count to add
        to their seconds field, the raw-zone datetime carrying offset, DST flag and name)."""
        raw = at_time_t(t, self.raw)
        corr, hit = self.correction(t)
        off = raw.utcoffset()
        assert off is not None
        return t + int(off.total_seconds()) - corr, hit, raw

    def utc(self, t: int) -> tuple[int, int]:
        """glibc's gmtime(t) under this zone (leap-corrected too): (seconds as if UTC, :60)."""
        corr, hit = self.correction(t)
        return t - corr, hit

    def _time_t(self, dt: datetime) -> int:
        """The time_t (whole seconds) of a wall-clock time; `fold` picks the second of two."""
        wall = dt.replace(tzinfo=None)
        ws = (wall - _EPOCH_NAIVE) // _SECOND
        candidates = sorted({self.correction(ws - 2 * 86400)[0],
                             self.correction(ws + 2 * 86400)[0]})
        solutions: list[int] = []
        for corr in candidates:
            shifted = (wall + timedelta(seconds=corr)).replace(tzinfo=self.raw, fold=dt.fold)
            off = self.raw.utcoffset(shifted)
            assert off is not None
            t = ws + corr - int(off.total_seconds())
            if self.correction(t)[0] == corr:
                solutions.append(t)
        if not solutions:  # inside a removed second (none exist so far): the later reading
            corr = candidates[-1]
            off = self.raw.utcoffset(
                (wall + timedelta(seconds=corr)).replace(tzinfo=self.raw, fold=dt.fold))
            assert off is not None
            return ws + corr - int(off.total_seconds())
        return solutions[-1] if dt.fold and len(solutions) > 1 else solutions[0]

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        if dt is None:
            return self.raw.utcoffset(None)
        ws = (dt.replace(tzinfo=None, fold=0) - _EPOCH_NAIVE) // _SECOND
        return timedelta(seconds=ws - self._time_t(dt))

    def dst(self, dt: datetime | None) -> timedelta | None:
        if dt is None:
            return self.raw.dst(None)
        return at_time_t(self._time_t(dt), self.raw).dst()

    def tzname(self, dt: datetime | None) -> str | None:
        if dt is None:
            return self.raw.tzname(None)
        return at_time_t(self._time_t(dt), self.raw).tzname()

    def fromutc(self, dt: datetime) -> datetime:
        if not isinstance(dt, datetime) or dt.tzinfo is not self:
            raise ValueError("fromutc: dt.tzinfo is not self")
        naive = dt.replace(tzinfo=None)
        t = (naive - _EPOCH_NAIVE) // _SECOND
        local, hit, raw = self.localtime(t)
        wall = _EPOCH_NAIVE + timedelta(seconds=local) + (naive - _EPOCH_NAIVE - t * _SECOND)
        return wall.replace(tzinfo=self, fold=1 if hit or raw.fold else 0)


# ==================================================================== POSIX TZ strings, as glibc


@dataclass
class _Rule:
    """glibc's tz_rule: one half of a POSIX TZ string (standard time, or DST)."""

    name: str = ""
    offset: int = 0  # seconds east of UTC
    type: str = "J0"  # "J0" (zero-based day), "J1" (Julian day), "M" (month.week.weekday)
    d: int = 0
    m: int = 0
    n: int = 0
    secs: int = 0  # local time of the change, seconds after midnight

    def change(self, year: int) -> int:
        """glibc's compute_change(): the UTC instant this rule switches in `year`."""
        if year > 1970:
            t = ((year - 1970) * 365 + ((year - 1) // 4 - 1970 // 4)
                 - ((year - 1) // 100 - 1970 // 100)
                 + ((year - 1) // 400 - 1970 // 400)) * _SECSPERDAY
        else:
            t = 0  # glibc's own shortcut: every year up to 1970 is computed as 1970
        leap = calendar.isleap(year)
        if self.type == "J1":
            t += (self.d - 1) * _SECSPERDAY
            if self.d >= 60 and leap:
                t += _SECSPERDAY
        elif self.type == "J0":
            t += self.d * _SECSPERDAY
        else:
            # An out-of-range month is undefined behaviour in glibc; keep it in range here.
            month = min(max(self.m, 1), 12)
            before = _days_before_month(year, month)
            t += before * _SECSPERDAY
            m1 = (month + 9) % 12 + 1
            yy0 = year - 1 if month <= 2 else year
            yy1, yy2 = _c_div(yy0, 100), _c_mod(yy0, 100)
            dow = _c_mod((26 * m1 - 2) // 10 + 1 + yy2 + _c_div(yy2, 4) + _c_div(yy1, 4)
                         - 2 * yy1, 7)
            if dow < 0:
                dow += 7
            d = self.d - dow
            if d < 0:
                d += 7
            length = calendar.monthrange(year, month)[1]
            for _ in range(1, self.n):
                if d + 7 >= length:
                    break
                d += 7
            t += d * _SECSPERDAY
        return t - self.offset + self.secs


def _c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _c_mod(a: int, b: int) -> int:
    return a - b * _c_div(a, b)


def _days_before_month(year: int, month: int) -> int:
    return sum(calendar.monthrange(year, m)[1] for m in range(1, month))


def _scan_ushort(s: str, i: int) -> tuple[int, int] | None:
    """sscanf's %hu at s[i:]: whitespace, a sign, digits. (value, end) or None."""
    j = i
    while j < len(s) and s[j] in " \t\n\v\f\r":
        j += 1
    negative = s[j:j + 1] == "-"
    if s[j:j + 1] in ("+", "-"):
        j += 1
    k = j
    while k < len(s) and "0" <= s[k] <= "9":
        k += 1
    if k == j:
        return None
    value = min(int(s[j:k]), _ULONG)
    if negative:
        value = (-value) & _ULONG
    return value & _USHORT, k


def _scan_hms(s: str, i: int) -> tuple[list[int | None], int]:
    """sscanf(s + i, "%hu%n:%hu%n:%hu%n", ...): the fields converted and the %n position."""
    fields: list[int | None] = [None, None, None]
    consumed = i
    pos = i
    for index in range(3):
        if index and not (pos < len(s) and s[pos] == ":"):
            break
        got = _scan_ushort(s, pos + (1 if index else 0))
        if got is None:
            break
        fields[index], pos = got
        consumed = pos
    return fields, consumed


class _Parser:
    """glibc 2.36's __tzset_parse_tz(), step for step, including how it fails."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.rules = [_Rule(), _Rule()]

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else "\0"

    def tzname(self, which: int) -> bool:
        s, start = self.s, self.i
        p = start
        while p < len(s) and s[p].isascii() and s[p].isalpha():
            p += 1
        if p - start < 3:
            p = start
            if self.peek() != "<":
                return False
            p += 1
            start = p
            while p < len(s) and ((s[p].isascii() and s[p].isalnum()) or s[p] in "+-"):
                p += 1
            if p >= len(s) or s[p] != ">" or p - start < 3:
                return False
            name = s[start:p]
            p += 1
        else:
            name = s[start:p]
        self.rules[which].name = name
        self.i = p
        return True

    def offset(self, which: int) -> bool:
        c = self.peek()
        if which == 0 and (c == "\0" or (c not in "+-" and c not in _DIGITS)):
            return False
        sign = -1
        if c in "+-":
            sign = 1 if c == "-" else -1
            self.i += 1
        (hh, mm, ss), consumed = _scan_hms(self.s, self.i)
        if hh is not None:
            self.rules[which].offset = sign * (min(ss or 0, 59) + min(mm or 0, 59) * 60
                                               + min(hh, 24) * 3600)
        elif which == 0:
            self.rules[0].offset = 0
            return False
        else:
            self.rules[1].offset = self.rules[0].offset + 3600
        self.i = consumed
        return True

    def rule(self, which: int) -> bool:
        r = self.rules[which]
        if self.peek() == ",":
            self.i += 1
        c = self.peek()
        if c == "J" or c in _DIGITS:
            r.type = "J1" if c == "J" else "J0"
            if c == "J":
                self.i += 1
                if self.peek() not in _DIGITS:
                    return False
            j = self.i
            while j < len(self.s) and self.s[j] in _DIGITS:
                j += 1
            d = min(int(self.s[self.i:j]), _ULONG)
            if d > 365 or (r.type == "J1" and d == 0):
                return False
            r.d = d
            self.i = j
        elif c == "M":
            r.type = "M"
            got, pos = [], self.i + 1
            for index in range(3):
                if index:
                    if self.peek(pos - self.i) != ".":
                        break
                    pos += 1
                scanned = _scan_ushort(self.s, pos)
                if scanned is None:
                    break
                value, pos = scanned
                got.append(value)
                setattr(r, "mnd"[index], value)
            if len(got) != 3 or not 1 <= r.m <= 12 or not 1 <= r.n <= 5 or r.d > 6:
                return False
            self.i = pos
        elif c == "\0":
            r.type = "M"
            r.m, r.n, r.d = (3, 2, 0) if which == 0 else (11, 1, 0)
        else:
            return False
        c = self.peek()
        if c not in "\0/,":
            return False
        if c == "/":
            self.i += 1
            if self.peek() == "\0":
                return False
            negative = self.peek() == "-"
            self.i += negative
            (hh, mm, ss), consumed = _scan_hms(self.s, self.i)
            secs = (2 if hh is None else hh) * 3600 + (mm or 0) * 60 + (ss or 0)
            r.secs = -secs if negative else secs
            self.i = consumed
        else:
            r.secs = 2 * 3600
        return True

    def run(self) -> tuple[_Rule, _Rule, bool]:
        """(standard, DST, whether there is DST at all)."""
        std, dst = self.rules
        if self.tzname(0) and self.offset(0):
            if self.peek() == "\0":
                dst.name, dst.offset = std.name, std.offset
                return std, dst, False
            if self.tzname(1):
                self.offset(1)
                # With nothing after the DST name glibc now tries the `posixrules` file;
                # without one it takes the US rules below (M3.2.0,M11.1.0), which is what
                # we do. (posixrules is New York: the same from 2007 to 2037.)
            if self.rule(0):
                self.rule(1)
            return std, dst, True
        return std, dst, False


def _isdst(t: int, std: _Rule, dst: _Rule, year: int) -> bool:
    """glibc's __tz_compute(): the rules are evaluated for the UTC year of `t`."""
    start, end = std.change(year), dst.change(year)
    if start > end:
        return t < end or t >= start
    return start <= t < end


def _tzif(types: list[tuple[int, bool, str]], transitions: list[tuple[int, int]]) -> bytes:
    """A version-2 TZif file with no footer: `types` are (utoff, isdst, abbreviation)."""
    chars = b""
    infos = b""
    for utoff, isdst, abbr in types:
        infos += struct.pack(">lBB", utoff, isdst, len(chars))
        chars += abbr.encode("ascii") + b"\0"

    def header(timecnt: int, typecnt: int, charcnt: int) -> bytes:
        return b"TZif2" + b"\0" * 15 + struct.pack(">6l", 0, 0, 0, timecnt, typecnt, charcnt)

    v1 = header(0, 1, 1) + struct.pack(">lBB", 0, 0, 0) + b"\0"
    v2 = (header(len(transitions), len(types), len(chars))
          + b"".join(struct.pack(">q", at) for at, _ in transitions)
          + bytes(index for _, index in transitions) + infos + chars)
    return v1 + v2 + b"\n\n"


def _representable(offset: int) -> int:
    # glibc allows offsets up to 24:59:59; a Python tzinfo must stay within +-23:59:59.
    return max(-86399, min(86399, offset))


@functools.lru_cache(maxsize=32)
def posix_zone(text: str) -> ZoneInfo:
    """The zone glibc makes of the POSIX TZ string `text` (no leading ':').

    Unparsable strings come out as glibc has them: UTC, named after whatever leading letters
    glibc took for the zone's name (often nothing). Cached, so one string is one zone object.
    """
    std, dst, has_dst = _Parser(text).run()
    types = [(_representable(std.offset), False, std.name)]
    transitions: list[tuple[int, int]] = []
    if has_dst:
        types.append((_representable(dst.offset), True, dst.name))
        state = False
        for year in range(FIRST_YEAR, LAST_YEAR + 1):
            begin = calendar.timegm((year, 1, 1, 0, 0, 0))
            stop = calendar.timegm((year + 1, 1, 1, 0, 0, 0))
            edges = sorted({begin} | {c for c in (std.change(year), dst.change(year))
                                      if begin < c < stop})
            for at in edges:
                now = _isdst(at, std, dst, year)
                if now != state:
                    transitions.append((at, int(now)))
                    state = now
        if not transitions:
            types.pop()
    return ZoneInfo.from_file(io.BytesIO(_tzif(types, transitions)), key=text)
