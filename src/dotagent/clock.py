"""The one source of "now" (ARCHITECTURE rule 3: decisions take a clock, they never read one).

`datetime.now(UTC)` and `datetime.fromtimestamp(t, UTC)` go through the C library's gmtime(),
which under a leap-second `$TZ` (`right/...`) subtracts the leap seconds: "now" would be 27 s
behind the instants the scheduler computes. These helpers turn time_t into datetimes without
the C library, so the same instant is the same datetime whatever `$TZ` says.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from dotagent.localzone import at_time_t

__all__ = ["Clock", "SystemClock", "from_epoch", "utc_now"]


def from_epoch(seconds: float) -> datetime:
    """The aware UTC datetime of an epoch timestamp (microsecond precision)."""
    whole = int(seconds // 1)
    micro = round((seconds - whole) * 1_000_000)
    if micro >= 1_000_000:  # 0.9999996 rounds up to the next second
        whole, micro = whole + 1, micro - 1_000_000
    return at_time_t(whole, UTC, micro)


def utc_now() -> datetime:
    """Now, as an aware UTC datetime."""
    ns = time.time_ns()
    return at_time_t(ns // 1_000_000_000, UTC, (ns // 1000) % 1_000_000)


class Clock(Protocol):
    """What the daemon and the run lifecycle are given instead of reading the time."""

    def now(self) -> datetime:
        """The wall clock, aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (it may stop during a suspend)."""
        ...


@dataclass(frozen=True)
class SystemClock:
    def now(self) -> datetime:
        return utc_now()

    def monotonic(self) -> float:
        return time.monotonic()
