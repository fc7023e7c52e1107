"""Ask the real systemd what a calendar expression means.

Two views of the same systemd code:
* `systemd-analyze calendar` — the reference the spec names. Its output is parsed for validity,
  the normalized form and the elapses, but it prints whole seconds only.
* libsystemd-shared (the library systemd-analyze itself links) through ctypes, in a child
  process with the wanted $TZ — the same calendar_spec_next_usec() with microseconds, used for
  expressions with fractional seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or (
    "/usr/bin/systemd-analyze" if os.path.exists("/usr/bin/systemd-analyze") else None
)


@dataclass
class Verdict:
    """What systemd said about one expression at one base time."""

    valid: bool
    normalized: str | None = None
    # elapses in epoch microseconds (CLI: whole seconds, truncated), then None if "never"
    elapses: list[int] = field(default_factory=list)
    never: bool = False  # the list ended because there is no further elapse
    error: str | None = None  # stderr line when systemd failed


_STAMP = re.compile(r"^\w{3} (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) UTC$")


def _utc_usec(text: str) -> int:
    m = _STAMP.match(text.strip())
    if not m:
        raise ValueError(f"cannot read systemd timestamp {text!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups())
    # A leap second prints as :60 (under a right/ $TZ); it counts as the next minute's :00.
    minute = datetime(y, mo, d, h, mi, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (int(minute.total_seconds()) + s) * 1_000_000


def _env(tz: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LC_ALL", "LANG", "TZ")}
    env.update({"TZ": tz, "LC_ALL": "C", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "cat"})
    return env


def run_cli(exprs: list[str], tz: str, base: int, iterations: int) -> list[Verdict]:
    """One `systemd-analyze calendar` call for many expressions; one Verdict each."""
    if SYSTEMD_ANALYZE is None:
        raise RuntimeError("systemd-analyze is not installed: the OnCalendar oracle cannot run")
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "calendar", f"--base-time=@{base}", f"--iterations={iterations}",
         "--", *exprs],
        env=_env(tz), capture_output=True, text=True, timeout=120, check=False,
    )
    lines = proc.stdout.split("\n")
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Failed to")]
    out: list[Verdict] = []
    pos = 0
    for index in range(len(exprs)):
        table: list[str] = []
        while pos < len(lines) and lines[pos] != "":
            table.append(lines[pos])
            pos += 1
        if index < len(exprs) - 1:
            pos += 1  # the blank line systemd-analyze prints between expressions
        if not table:
            message = errors.pop(0) if errors else "(no output)"
            if "Failed to parse" not in message:
                # parsed, but computing an elapse failed: still "valid" as far as parsing goes
                out.append(Verdict(valid=True, error=message))
            else:
                out.append(Verdict(valid=False, error=message))
            continue
        verdict = Verdict(valid=True)
        local_stamps: list[str] = []
        utc_stamps: list[str] = []
        for row in table:
            name, _, value = row.strip().partition(": ")
            if name == "Normalized form":
                verdict.normalized = value
            elif name == "Next elapse" and value == "never":
                verdict.never = True
            elif name == "Next elapse" or name.startswith("Iter. #"):
                local_stamps.append(value)
            elif name == "(in UTC)":
                utc_stamps.append(value)
        stamps = utc_stamps if utc_stamps else local_stamps
        verdict.elapses = [_utc_usec(s) for s in stamps]
        if len(verdict.elapses) < iterations:
            verdict.never = True
        out.append(verdict)
    return out


# The child imports nothing from the test tree: it reads a JSON request on stdin.
_LIB_CHILD = r"""
import ctypes, json, sys, time
req = json.load(sys.stdin)
lib = ctypes.CDLL(req["lib"])
lib.calendar_spec_from_string.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
lib.calendar_spec_to_string.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p)]
lib.calendar_spec_next_usec.argtypes = [ctypes.c_void_p, ctypes.c_uint64,
                                        ctypes.POINTER(ctypes.c_uint64)]
lib.calendar_spec_free.argtypes = [ctypes.c_void_p]
time.tzset()
out = []
for expr in req["exprs"]:
    spec = ctypes.c_void_p()
    r = lib.calendar_spec_from_string(expr.encode(), ctypes.byref(spec))
    if r < 0:
        out.append({"valid": False, "errno": -r})
        continue
    text = ctypes.c_char_p()
    lib.calendar_spec_to_string(spec, ctypes.byref(text))
    usec = req["base"]
    elapses, err = [], 0
    for _ in range(req["iterations"]):
        nxt = ctypes.c_uint64()
        r = lib.calendar_spec_next_usec(spec, usec, ctypes.byref(nxt))
        if r < 0:
            err = -r
            break
        usec = nxt.value
        elapses.append(usec)
    out.append({"valid": True, "normalized": text.value.decode(), "elapses": elapses,
                "errno": err})
    lib.calendar_spec_free(spec)
json.dump(out, sys.stdout)
"""


# glibc itself, for the local-time functions systemd calls: localtime_r, gmtime_r and mktime.
# One child process per request, so mktime's memory of its last offset starts from nothing
# and then carries from call to call, as in systemd-analyze.
_LIBC_CHILD = r"""
import ctypes, json, sys
libc = ctypes.CDLL("libc.so.6")
class TM(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int) for n in
                ("sec", "min", "hour", "mday", "mon", "year", "wday", "yday", "isdst")]
    _fields_ += [("gmtoff", ctypes.c_long), ("zone", ctypes.c_char_p)]
T = ctypes.c_int64
libc.localtime_r.argtypes = [ctypes.POINTER(T), ctypes.POINTER(TM)]
libc.gmtime_r.argtypes = [ctypes.POINTER(T), ctypes.POINTER(TM)]
libc.mktime.argtypes = [ctypes.POINTER(TM)]
libc.mktime.restype = T
libc.tzset()
req = json.load(sys.stdin)
out = {"localtime": [], "gmtime": [], "mktime": []}
def fields(tm):
    return [tm.year + 1900, tm.mon + 1, tm.mday, tm.hour, tm.min, tm.sec]
for t in req.get("localtime", []):
    tm = TM()
    libc.localtime_r(ctypes.byref(T(t)), ctypes.byref(tm))
    out["localtime"].append(fields(tm) + [tm.isdst, tm.gmtoff, tm.zone.decode()])
    libc.gmtime_r(ctypes.byref(T(t)), ctypes.byref(tm))
    out["gmtime"].append(fields(tm))
for y, mo, d, h, mi, s, isdst in req.get("mktime", []):
    tm = TM(sec=s, min=mi, hour=h, mday=d, mon=mo - 1, year=y - 1900, isdst=isdst)
    r = libc.mktime(ctypes.byref(tm))
    out["mktime"].append([r] + fields(tm) + [tm.isdst])
json.dump(out, sys.stdout)
"""


def run_libc(tz: str, localtime: list[int] | None = None,
             mktime: list[list[int]] | None = None) -> dict[str, list[list[object]]]:
    """glibc's answers under $TZ=tz, in one fresh process.

    `localtime`: time_t values -> "localtime" [y, mo, d, h, mi, s, isdst, gmtoff, zone] and
    "gmtime" [y, mo, d, h, mi, s] each. `mktime`: [y, mo, d, h, mi, s, isdst] requests, made
    in order -> "mktime" [time_t, normalised y, mo, d, h, mi, s, isdst] each.
    """
    request = {"localtime": localtime or [], "mktime": mktime or []}
    proc = subprocess.run(
        [sys.executable, "-c", _LIBC_CHILD], input=json.dumps(request), env=_env(tz),
        capture_output=True, text=True, timeout=120, check=True,
    )
    result: dict[str, list[list[object]]] = json.loads(proc.stdout)
    return result


def shared_library() -> str:
    """Path of the libsystemd-shared that systemd-analyze links against."""
    if SYSTEMD_ANALYZE is None:
        raise RuntimeError("systemd-analyze is not installed: the OnCalendar oracle cannot run")
    ldd = subprocess.run(["ldd", SYSTEMD_ANALYZE], capture_output=True, text=True, check=False)
    for line in ldd.stdout.splitlines():
        if "libsystemd-shared" in line and "=>" in line:
            return line.split("=>")[1].split("(")[0].strip()
    raise RuntimeError("systemd-analyze does not link libsystemd-shared; no microsecond oracle")


def run_lib(exprs: list[str], tz: str, base_usec: int, iterations: int) -> list[dict[str, object]]:
    """calendar_spec_next_usec() itself, with microseconds; one dict per expression.

    Keys: valid, normalized, elapses (epoch µs), errno (2 = ENOENT "never", 35 = EDEADLK).
    """
    request = {"lib": shared_library(), "exprs": exprs, "base": base_usec,
               "iterations": iterations}
    proc = subprocess.run(
        [sys.executable, "-c", _LIB_CHILD], input=json.dumps(request), env=_env(tz),
        capture_output=True, text=True, timeout=120, check=True,
    )
    result: list[dict[str, object]] = json.loads(proc.stdout)
    return result
