"""The re-notification ladder: every gap, the clock going backwards, the file's shape, a
corrupt or missing file, and the alert texts (UPSTREAM-0.6 §7)."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dotagent.alerts.ladder import (
    GAPS,
    Ladder,
    episode_key,
    given_up_text,
    human_duration,
    stale_text,
    stderr_excerpt,
)
from dotagent.paths import Home

T0 = 1_800_000_000


def test_gaps_one_six_twenty_four_then_daily(dotagent_home: Path) -> None:
    ladder = Ladder.load(Home(dotagent_home))
    key = episode_key("a", "main", "stale")
    assert ladder.may_speak(key, T0)  # no episode yet
    ladder.record(key, T0)
    now = T0
    for gap in (3600, 21600, 86400, 86400, 86400):
        assert not ladder.may_speak(key, now + gap - 1)
        assert ladder.may_speak(key, now + gap)
        now += gap
        ladder.record(key, now)
    ep = ladder.episodes[key]
    assert ep.count == 6 and ep.first_notified_at == T0 and ep.last_notified_at == now
    assert GAPS == (3600, 21600, 86400)


def test_clock_going_backwards_may_speak(dotagent_home: Path) -> None:
    ladder = Ladder(home=Home(dotagent_home))
    key = episode_key("a", "main", "given_up")
    ladder.record(key, T0)
    assert not ladder.may_speak(key, T0 + 10)
    assert ladder.may_speak(key, T0 - 1)


def test_saved_shape_is_upstreams_and_private(dotagent_home: Path) -> None:
    home = Home(dotagent_home)
    ladder = Ladder.load(home)
    ladder.record(episode_key("a", "main", "stale"), T0)
    ladder.record(episode_key("a", "main", "stale"), T0 + 3600)
    ladder.save()
    path = dotagent_home / "state" / "notify" / "alerts.json"
    assert json.loads(path.read_text()) == {"episodes": {"a/main/stale": {
        "first_notified_at": T0, "last_notified_at": T0 + 3600, "count": 2}}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = Ladder.load(home)
    assert again.episodes == ladder.episodes
    assert not [p for p in os.listdir(path.parent) if p.endswith(".tmp")]


def test_corrupt_or_missing_file_is_an_empty_table(dotagent_home: Path) -> None:
    home = Home(dotagent_home)
    assert Ladder.load(home).episodes == {}
    path = dotagent_home / "state" / "notify" / "alerts.json"
    path.parent.mkdir(parents=True)
    for garbage in ("{not json", "[]", '{"episodes": 3}', "\xff"):
        path.write_text(garbage, errors="surrogateescape")
        assert Ladder.load(home).episodes == {}
    # One bad episode does not poison the others.
    path.write_text(json.dumps({"episodes": {
        "a/main/stale": {"first_notified_at": 1, "last_notified_at": 2, "count": 1},
        "b/main/stale": {"first_notified_at": "x", "last_notified_at": 2, "count": 1}}}))
    assert list(Ladder.load(home).episodes) == ["a/main/stale"]


def test_clear_ends_every_episode_of_the_schedule_only(dotagent_home: Path) -> None:
    ladder = Ladder(home=Home(dotagent_home))
    for key in ("a/main/stale", "a/main/given_up", "a/other/stale", "ab/main/stale"):
        ladder.record(key, T0)
    assert sorted(ladder.clear("a", "main")) == ["a/main/given_up", "a/main/stale"]
    assert sorted(ladder.episodes) == ["a/other/stale", "ab/main/stale"]
    assert ladder.next_reminder() == T0 + 3600


def test_durations_and_excerpt() -> None:
    assert human_duration(59) == "0m"
    assert human_duration(61 * 60) == "1h 1m"
    assert human_duration(26 * 3600 + 5) == "1d 2h"
    assert stderr_excerpt("") == ""
    assert stderr_excerpt("boom") == "\nboom"
    long = "x" * 390 + "0123456789abc"
    assert stderr_excerpt(long) == "\n…" + long[-400:]
    assert len(stderr_excerpt(long)) == 402


def test_alert_texts() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert stale_text("a", "main", last_success=now - timedelta(days=1, hours=3), now=now,
                      count=1) == "⏰ a/main is not being scheduled — no successful run in 1d 3h."
    assert stale_text("a", "main", last_success=None, now=now, count=3, stderr="err") == (
        "⏰ a/main is not being scheduled — it has never run successfully (notice #3).\nerr")
    assert given_up_text("a", "main", attempts=4, exit_code=2, count=1) == \
        "🚨 a/main gave up after 4 attempts (exit 2)"
    assert given_up_text("a", "main", attempts=4, exit_code=2, count=2,
                         since_seconds=3600 * 7, stderr="e") == (
        "🚨 a/main still given up after 4 attempts (exit 2), 7h 0m ago (notice #2).\ne")
