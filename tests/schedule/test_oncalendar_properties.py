"""Properties of next_elapse on random expressions, checked by an independent brute force.

The brute-force matcher below knows nothing of the engine: it expands each field into the set
of values it allows and scans a bounded window minute by minute (second by second when the
seconds field has several values) in UTC, so DST plays no part. It checks that the elapse is
strictly after the base, matches the expression, and that nothing matches in between.
"""

from __future__ import annotations

from calendar import monthrange
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from dotagent.schedule.oncalendar import parse

UTC_ZONE = ZoneInfo("UTC")
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


# --------------------------------------------------------------------- grammar strategy
# Each field strategy yields (text, set of allowed values).

def _values(low: int, high: int, max_repeat: int) -> st.SearchStrategy[tuple[str, set[int]]]:
    single = st.integers(low, high).map(lambda v: (f"{v:02d}", {v}))
    ranges = st.tuples(st.integers(low, high), st.integers(low, high)).filter(
        lambda ab: ab[0] < ab[1]
    ).map(lambda ab: (f"{ab[0]:02d}..{ab[1]:02d}", set(range(ab[0], ab[1] + 1))))
    repeats = st.tuples(st.integers(low, high), st.integers(1, max_repeat)).filter(
        lambda sr: sr[0] + sr[1] <= high
    ).map(lambda sr: (f"{sr[0]:02d}/{sr[1]}", set(range(sr[0], high + 1, sr[1]))))
    element = st.one_of(single, ranges, repeats)
    listed = st.lists(element, min_size=1, max_size=3).map(
        lambda parts: (",".join(p[0] for p in parts), set().union(*(p[1] for p in parts)))
    )
    return st.one_of(st.just(("*", set(range(low, high + 1)))), listed)


@st.composite
def expressions(draw: st.DrawFn) -> tuple[str, dict[str, set[int]]]:
    wd_text, wd_set = "", set(range(7))
    if draw(st.booleans()):
        picked = sorted(draw(st.sets(st.integers(0, 6), min_size=1, max_size=7)))
        wd_text = ",".join(WEEKDAYS[i] for i in picked) + " "
        wd_set = set(picked)
    month = draw(_values(1, 12, 5))
    day = draw(_values(1, 31, 10))
    hour = draw(_values(0, 23, 8))
    minute = draw(_values(0, 59, 20))
    second = draw(st.one_of(st.just(("00", {0})), _values(0, 59, 30)))
    text = f"{wd_text}*-{month[0]}-{day[0]} {hour[0]}:{minute[0]}:{second[0]} UTC"
    allowed = {"weekday": wd_set, "month": month[1], "day": day[1], "hour": hour[1],
               "minute": minute[1], "second": second[1]}
    return text, allowed


# --------------------------------------------------------------------- brute force


def brute_matches(moment: datetime, allowed: dict[str, set[int]]) -> bool:
    return (
        moment.microsecond == 0
        and moment.weekday() in allowed["weekday"]
        and moment.month in allowed["month"]
        and moment.day in allowed["day"]
        and moment.hour in allowed["hour"]
        and moment.minute in allowed["minute"]
        and moment.second in allowed["second"]
    )


def brute_first_after(base: datetime, allowed: dict[str, set[int]],
                      limit: datetime) -> datetime | None:
    """First matching instant in (base, limit], scanning day → minute → second."""
    day = base.replace(hour=0, minute=0, second=0, microsecond=0)
    while day <= limit:
        if (day.month in allowed["month"] and day.day in allowed["day"]
                and day.weekday() in allowed["weekday"]):
            for h in sorted(allowed["hour"]):
                for m in sorted(allowed["minute"]):
                    for s in sorted(allowed["second"]):
                        t = day.replace(hour=h, minute=m, second=s)
                        if base < t <= limit:
                            return t
        day += timedelta(days=1)
    return None


bases = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)


@settings(deadline=None, max_examples=150)
@given(expr=expressions(), base=bases)
def test_next_elapse_is_the_first_match_after_base(
    expr: tuple[str, dict[str, set[int]]], base: datetime
) -> None:
    text, allowed = expr
    spec = parse(text)
    nxt = spec.next_elapse(base, UTC_ZONE)
    window = base + timedelta(days=3 * 366)
    expected = brute_first_after(base, allowed, window)
    if nxt is None or nxt > window:
        # Nothing within three years: the brute force must agree there is nothing there.
        assert expected is None, f"{text}: engine found none/late, brute force {expected}"
        return
    nxt = nxt.astimezone(UTC)
    assert nxt > base
    assert brute_matches(nxt, allowed), f"{text}: {nxt} does not match"
    assert expected == nxt, f"{text}: engine {nxt}, brute force {expected}"


@settings(deadline=None, max_examples=60)
@given(expr=expressions(), base=bases, steps=st.integers(2, 6))
def test_iterating_never_skips_or_repeats(
    expr: tuple[str, dict[str, set[int]]], base: datetime, steps: int
) -> None:
    text, allowed = expr
    spec = parse(text)
    moment = base
    for _ in range(steps):
        nxt = spec.next_elapse(moment, UTC_ZONE)
        if nxt is None:
            return
        nxt = nxt.astimezone(UTC)
        expected = brute_first_after(moment, allowed, nxt)
        assert expected == nxt, f"{text}: after {moment} engine {nxt}, brute force {expected}"
        moment = nxt


@settings(deadline=None, max_examples=60)
@given(
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Kolkata",
                          "Australia/Lord_Howe"]),
    base=bases,
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
)
def test_local_time_elapses_are_real_instants_after_base(
    zone: str, base: datetime, hour: int, minute: int
) -> None:
    tz = ZoneInfo(zone)
    nxt = parse(f"*-*-* {hour:02d}:{minute:02d}:00", tz).next_elapse(base, tz)
    assert nxt is not None and nxt > base
    # It is a wall-clock time that exists, within a day and a bit of the base.
    wall = nxt.astimezone(tz)
    assert (wall.hour, wall.minute, wall.second) == (hour, minute, 0)
    naive = wall.replace(tzinfo=None)
    assert nxt.astimezone(UTC) in {naive.replace(tzinfo=tz, fold=f).astimezone(UTC)
                                   for f in (0, 1)}
    assert nxt - base <= timedelta(days=2)


def test_brute_force_is_not_trivial() -> None:
    # The checker itself must reject wrong answers.
    allowed = {"weekday": {0}, "month": set(range(1, 13)), "day": set(range(1, 32)),
               "hour": {8}, "minute": {30}, "second": {0}}
    base = datetime(2026, 3, 9, 8, 30, tzinfo=UTC)  # a Monday, on a match
    assert brute_first_after(base, allowed, base + timedelta(days=8)) == datetime(
        2026, 3, 16, 8, 30, tzinfo=UTC)
    assert not brute_matches(datetime(2026, 3, 10, 8, 30, tzinfo=UTC), allowed)
    assert monthrange(2024, 2)[1] == 29
