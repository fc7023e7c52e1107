"""Sleeping until a wall-clock instant, the way a laptop needs it.

asyncio's timers run on the monotonic clock, which Linux stops during a suspend: a window due
while the lid was closed would fire late by the length of the suspend. A `timerfd` on
CLOCK_REALTIME with TFD_TIMER_ABSTIME fires at the wall-clock instant, immediately on resume if
it passed, and TFD_TIMER_CANCEL_ON_SET makes it fire when someone sets the clock, so the daemon
re-plans after a jump instead of sleeping toward a stale instant. Python 3.11 has no
`os.timerfd_create`, so libc is called through ctypes. Where that is unavailable (macOS), a
monotonic timer capped at one minute stands in.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
from datetime import UTC, datetime

__all__ = ["WallTimer"]

_CLOCK_REALTIME = 0
_TFD_CLOEXEC = 0o2000000
_TFD_NONBLOCK = 0o4000
_TFD_TIMER_ABSTIME = 1
_TFD_TIMER_CANCEL_ON_SET = 2
_FALLBACK_CAP = 60.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create  # noqa: B018  (probe: absent outside Linux)
        return libc
    except (OSError, AttributeError):
        return None


class WallTimer:
    """One re-armable timer; `wait(until)` returns when `until` (aware) is reached on the wall
    clock, when the clock is set, or when `poke()` is called — whichever comes first."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._event = asyncio.Event()
        self._fd: int | None = None
        self.planned_wakes = 0  # how many sleeps were armed (the idle benchmark counts them)
        libc = _libc()
        if libc is not None:
            fd = libc.timerfd_create(_CLOCK_REALTIME, _TFD_CLOEXEC | _TFD_NONBLOCK)
            if fd >= 0:
                self._libc, self._fd = libc, fd
                loop.add_reader(fd, self._fired)

    @property
    def wall_clock_timer(self) -> bool:
        return self._fd is not None

    def _fired(self) -> None:
        assert self._fd is not None
        with contextlib.suppress(OSError):  # ECANCELED after a clock change: a wake all the same
            os.read(self._fd, 8)
        self._event.set()

    def poke(self) -> None:
        """Wake the sleeper now (thread-safe when called through call_soon_threadsafe)."""
        self._event.set()

    def _arm(self, until: datetime | None) -> asyncio.TimerHandle | None:
        self.planned_wakes += 1 if until is not None else 0
        if self._fd is not None:
            spec = _Itimerspec()
            if until is not None:
                delta = until - _EPOCH
                sec = delta.days * 86400 + delta.seconds
                nsec = delta.microseconds * 1000
                if sec <= 0 and nsec <= 0:
                    sec, nsec = 0, 1  # all zeros would disarm
                spec.it_value.tv_sec, spec.it_value.tv_nsec = sec, min(nsec, 999_999_999)
            flags = _TFD_TIMER_ABSTIME | _TFD_TIMER_CANCEL_ON_SET
            if self._libc.timerfd_settime(self._fd, flags, ctypes.byref(spec), None) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            return None
        if until is None:
            return None
        import time

        delay = min(max(0.0, until.timestamp() - time.time()), _FALLBACK_CAP)
        return self.loop.call_later(delay, self._event.set)

    async def wait(self, until: datetime | None) -> None:
        """Sleep until `until` (None: until poked)."""
        if self._event.is_set():
            self._event.clear()
            return
        handle = self._arm(until)
        try:
            await self._event.wait()
        finally:
            self._event.clear()
            if handle is not None:
                handle.cancel()

    def close(self) -> None:
        if self._fd is not None:
            self.loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None

