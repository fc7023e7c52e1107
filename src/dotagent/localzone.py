"""The local time zone, as the C library would pick it: `$TZ`, else /etc/localtime, else UTC.

Schedules without a zone of their own run in this zone. Only commands call this; the pure
scheduling code receives the zone as an argument.

`$TZ` is read the way glibc's tzset() reads it: a leading ':' is dropped, a file (a zone name
under the zoneinfo directory, or an absolute path) wins, and anything else is a POSIX TZ string
such as `JST-9`, `<+0330>-3:30` or `CET-1CEST,M3.5.0,M10.5.0/3`. A POSIX string becomes an
in-memory TZif file whose transitions (UTC years 1970 to 2299) are computed exactly as glibc's
__tz_compute() does, so our wall clock agrees with libc's localtime(), abbreviations included.
What glibc cannot parse at all is UTC, as there.
"""

from __future__ import annotations

import calendar
import contextlib
import functools
import io
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = ["local_zone", "posix_zone"]

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
            with contextlib.suppress(OSError, ValueError), open(name, "rb") as fh:
                return ZoneInfo.from_file(fh, key=_zone_key(Path(name)) or name)
        else:
            with contextlib.suppress(Exception):  # ZoneInfoNotFoundError, ValueError, ...
                return ZoneInfo(name)
        return posix_zone(name)
    localtime = Path("/etc/localtime")
    key = _zone_key(localtime)
    if key is not None:
        with contextlib.suppress(Exception):
            return ZoneInfo(key)
    try:
        with localtime.open("rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
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
