"""Power awareness (`[power]`, UPSTREAM-0.6 §6): what the machine runs on, and whether a window
due now should wait for mains power.

`should_defer` and `probe_needed` are pure. `probe` reads `/sys/class/power_supply` on Linux
and runs `/usr/bin/pmset -g batt` on macOS (argv, no shell); every failure to find out is
`UNKNOWN`, which counts as mains, so a machine whose power state cannot be read never holds
its agents back. Nothing here reads the clock, writes a file or raises for a missing or odd
power-supply tree.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "AC",
    "PMSET_ARGV",
    "SYS_POWER_SUPPLY",
    "UNKNOWN",
    "OnBattery",
    "PowerSource",
    "battery",
    "parse_pmset",
    "probe",
    "probe_linux",
    "probe_needed",
    "run_pmset",
    "should_defer",
]

OnBattery = Literal["run", "defer"]
SYS_POWER_SUPPLY = Path("/sys/class/power_supply")
PMSET_ARGV = ("/usr/bin/pmset", "-g", "batt")
PMSET_TIMEOUT_SECONDS = 5.0
_SYSFS_READ_LIMIT = 256  # an attribute is a word or a number; never read more


@dataclass(frozen=True)
class PowerSource:
    """`ac`, `battery` (with the charge in percent when known) or `unknown`.

    `unknown` is what a failed or skipped probe gives; the policy treats it as mains.
    """

    kind: Literal["ac", "battery", "unknown"]
    percent: int | None = None

    def __str__(self) -> str:
        if self.kind == "battery":
            return "battery" if self.percent is None else f"battery {self.percent}%"
        return "mains" if self.kind == "ac" else "unknown"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "percent": self.percent}


AC = PowerSource("ac")
UNKNOWN = PowerSource("unknown")


def battery(percent: int | None = None) -> PowerSource:
    """On battery, with its charge (0..255 as the kernel or pmset reports it) if known."""
    return PowerSource("battery", percent)


# --------------------------------------------------------------------------------------
# The decision (pure)
# --------------------------------------------------------------------------------------
def should_defer(source: PowerSource, policy: OnBattery, min_percent: int) -> bool:
    """True when a window due now must wait for power.

    Mains and unknown never defer. On battery: `policy == "defer"` always defers; otherwise a
    known charge strictly below a non-zero `min_percent` defers (the floor itself runs: 20 %
    with a minimum of 20 runs). An unknown charge never trips the floor.
    """
    if source.kind != "battery":
        return False
    if policy == "defer":
        return True
    return min_percent > 0 and source.percent is not None and source.percent < min_percent


def probe_needed(global_policy: OnBattery, min_percent: int,
                 schedule_overrides: Iterable[OnBattery | None]) -> bool:
    """Whether probing can change any decision: the global policy defers, a charge floor is
    set, or some schedule overrides `on_battery` with "defer". When it is False the daemon
    skips the probe and uses `UNKNOWN` (mains)."""
    if global_policy != "run" or min_percent > 0:
        return True
    return any(o is not None and o != "run" for o in schedule_overrides)


# --------------------------------------------------------------------------------------
# Probing
# --------------------------------------------------------------------------------------
PmsetRunner = Callable[[Sequence[str]], str | None]


def probe(sys_root: Path = SYS_POWER_SUPPLY, *, platform: str | None = None,
          run: PmsetRunner | None = None) -> PowerSource:
    """The current power source. Never raises.

    Linux reads `sys_root`; macOS ("darwin") runs `pmset -g batt` through `run` (default
    `run_pmset`, which the daemon may replace with its supervised spawner); any other
    platform is `UNKNOWN`.
    """
    platform = sys.platform if platform is None else platform
    if platform.startswith("linux"):
        return probe_linux(sys_root)
    if platform == "darwin":
        output = (run or run_pmset)(PMSET_ARGV)
        return UNKNOWN if output is None else parse_pmset(output)
    return UNKNOWN


def _read_attr(path: Path) -> str | None:
    """A sysfs attribute's text, stripped, or None when it cannot be read."""
    try:
        with path.open("rb") as f:
            data = f.read(_SYSFS_READ_LIMIT)
        return data.decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _parse_u8(text: str | None) -> int | None:
    if text is None or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= 255 else None


def probe_linux(sys_root: Path = SYS_POWER_SUPPLY) -> PowerSource:
    """Mains and battery state from a `/sys/class/power_supply`-shaped tree.

    A `Mains` supply whose `online` is "1" makes it `AC` (a true always wins); "0" means
    offline unless another supply said online; an unreadable or other `online` gives no
    information. The first readable `capacity` of a `Battery` whose `scope` is not `Device`
    (a mouse or headset battery) is the charge. No mains information → `UNKNOWN`; offline →
    `battery(charge)`. Entries are read in name order.
    """
    try:
        entries = sorted(sys_root.iterdir())
    except OSError:
        return UNKNOWN
    online: bool | None = None
    percent: int | None = None
    for entry in entries:
        kind = _read_attr(entry / "type")
        if kind == "Mains":
            state = _read_attr(entry / "online")
            if state == "1":
                online = True
            elif state == "0" and online is None:
                online = False
        elif kind == "Battery" and percent is None:
            if _read_attr(entry / "scope") == "Device":
                continue
            percent = _parse_u8(_read_attr(entry / "capacity"))
    if online is None:
        return UNKNOWN
    return AC if online else battery(percent)


_DIGITS_AT_END = re.compile(r"(\d+)$")


def parse_pmset(output: str) -> PowerSource:
    """`pmset -g batt` output → a power source.

    The line starting "Now drawing from" decides: it mentions "Battery" → battery, anything
    else → `AC`; no such line → `UNKNOWN`. The charge is the run of digits right before the
    first `%` of the first line that has one (so an `id=12345` earlier on that line is not
    read); it is None when those digits are missing or above 255.
    """
    lines = output.splitlines()
    source: str | None = None
    for line in lines:
        text = line.strip()
        if text.startswith("Now drawing from"):
            source = text.removeprefix("Now drawing from")
            break
    if source is None:
        return UNKNOWN
    if "Battery" not in source:
        return AC
    percent: int | None = None
    for line in lines:
        at = line.find("%")
        if at < 0:
            continue
        m = _DIGITS_AT_END.search(line[:at])
        percent = _parse_u8(m.group(1)) if m else None
        break
    return battery(percent)


def run_pmset(argv: Sequence[str]) -> str | None:
    """Run `argv` without a shell, stdin from /dev/null, for at most 5 s; its stdout, or None
    when it cannot be started, times out (it is killed) or exits non-zero."""
    try:
        done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, timeout=PMSET_TIMEOUT_SECONDS,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", "replace")
