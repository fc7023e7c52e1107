"""The one "now": the same instant whatever $TZ says, leap-second zones included."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest

from dotagent.clock import SystemClock, from_epoch, utc_now


@pytest.fixture
def right_utc(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    assert os.path.exists("/usr/share/zoneinfo/right/UTC"), "tzdata's right/ zones are needed"
    monkeypatch.setenv("TZ", "right/UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_now_is_time_t_even_under_a_leap_second_zone(right_utc: None) -> None:
    # The C library's gmtime() subtracts the 27 leap seconds under TZ=right/...: a "now" taken
    # that way would lag the instants the scheduler computes.
    lagging = datetime.now(UTC)
    before = time.time()
    now = utc_now()
    after = time.time()
    assert before - 0.001 <= now.timestamp() <= after + 0.001
    assert now.tzinfo is UTC
    assert (now - lagging).total_seconds() > 26  # the bug this module exists for


def test_from_epoch_keeps_microseconds_and_rounds_into_the_next_second() -> None:
    assert from_epoch(1_800_000_000.25) == datetime(2027, 1, 15, 8, 0, 0, 250000, tzinfo=UTC)
    assert from_epoch(1_800_000_000.9999996) == datetime(2027, 1, 15, 8, 0, 1, tzinfo=UTC)
    assert from_epoch(0) == datetime(1970, 1, 1, tzinfo=UTC)


def test_system_clock() -> None:
    clock = SystemClock()
    assert abs(clock.now().timestamp() - time.time()) < 1
    a = clock.monotonic()
    assert clock.monotonic() >= a
