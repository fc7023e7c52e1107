"""[quiet_hours]: zone-aware activity (across midnight, across DST), the held queue on disk,
one digest when quiet hours end, critical notices passing through — with a fake clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dotagent.alerts.quiet import HeldQueue, QuietHours
from dotagent.alerts.seam import Message
from dotagent.alerts.service import Alerts
from dotagent.config import parse_config
from dotagent.paths import Home

BERLIN = ZoneInfo("Europe/Berlin")


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[Message, list[Any]]] = []

    def send(self, message: Message, entries: Any) -> None:
        self.sent.append((message, list(entries)))


def _config(text: str) -> Any:
    result = parse_config(text.encode(), Path("config.toml"))
    assert result.config is not None, [str(p) for p in result.errors]
    return result.config


def test_active_across_midnight_in_its_zone() -> None:
    q = QuietHours(time(22, 0), time(7, 0), BERLIN)
    at = lambda h, m=0: datetime(2026, 12, 2, h, m, tzinfo=BERLIN)  # noqa: E731
    assert q.active(at(22)) and q.active(at(23, 59)) and q.active(at(3)) and q.active(at(6, 59))
    assert not q.active(at(7)) and not q.active(at(12)) and not q.active(at(21, 59))
    # The same instant seen in UTC: 21:30 UTC is 22:30 in Berlin (winter).
    assert q.active(datetime(2026, 12, 2, 21, 30, tzinfo=UTC))
    assert q.ends_at(datetime(2026, 12, 2, 21, 30, tzinfo=UTC)) == \
        datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
    day = QuietHours(time(12, 0), time(13, 0), BERLIN)
    assert day.active(at(12, 30)) and not day.active(at(13))


def test_end_across_dst_changes() -> None:
    q = QuietHours(time(22, 0), time(7, 0), BERLIN)
    # Night of 28→29 March 2026: clocks go 02:00 → 03:00; 07:00 CEST is 05:00 UTC.
    assert q.ends_at(datetime(2026, 3, 28, 23, 0, tzinfo=UTC)) == \
        datetime(2026, 3, 29, 5, 0, tzinfo=UTC)
    # Night of 24→25 October 2026: clocks go 03:00 → 02:00; 07:00 CET is 06:00 UTC.
    assert q.ends_at(datetime(2026, 10, 24, 22, 0, tzinfo=UTC)) == \
        datetime(2026, 10, 25, 6, 0, tzinfo=UTC)
    # An end inside the spring gap (02:30 does not exist) is the instant after the jump.
    gap = QuietHours(time(1, 0), time(2, 30), BERLIN)
    end = gap.ends_at(datetime(2026, 3, 29, 0, 15, tzinfo=UTC))
    assert end.astimezone(BERLIN).hour == 3 and end > datetime(2026, 3, 29, 0, 15, tzinfo=UTC)


def test_end_at_a_dst_change_agrees_with_active() -> None:
    # Before: in the gap the end was put at 03:30 CEST although `active` was false from 03:00;
    # on the autumn night the second 02:00–02:30 was quiet but its end was put a day later,
    # so held notices waited 24 hours for their digest.
    q = QuietHours(time(22, 0), time(2, 30), BERLIN)
    spring = datetime(2026, 3, 29, 0, 50, tzinfo=UTC)  # 01:50 CET
    assert q.active(spring)
    assert q.ends_at(spring) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    first = datetime(2026, 10, 25, 0, 10, tzinfo=UTC)  # 02:10 CEST
    second = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 02:10 CET, an hour later
    assert q.active(first) and q.active(second)
    assert q.ends_at(first) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert q.ends_at(second) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET
    for now in (spring, first, second):
        end = q.ends_at(now)
        assert not q.active(end) and q.active(end - timedelta(minutes=1))


def test_config_is_located_and_zone_aware() -> None:
    bad = parse_config(b'[quiet_hours]\nstart = "22:00"\nend = "25:00"\n', Path("c.toml"))
    assert [str(p) for p in bad.errors] == [
        'c.toml:3: quiet_hours.end: "25:00" is not a time of day (expected "HH:MM" or '
        '"HH:MM:SS" in local time, e.g. "22:45")']
    zone = parse_config(b'[quiet_hours]\nstart = "22:00"\nend = "07:00"\ntimezone = "Nope/X"\n',
                        Path("c.toml"))
    assert zone.errors[0].line == 4 and "not a time zone" in str(zone.errors[0])
    half = parse_config(b'[quiet_hours]\nstart = "22:00"\n', Path("c.toml"))
    assert "`end` is missing" in str(half.errors[0])
    assert not _config("").quiet_hours.enabled


def test_held_then_one_digest_at_the_end_and_critical_passes(dotagent_home: Path) -> None:
    home = Home(dotagent_home)
    config = _config('[quiet_hours]\nstart = "22:00"\nend = "07:00"\n'
                     'timezone = "Europe/Berlin"\n[daily_summary]\nenabled = false\n')
    sender = Recorder()
    alerts = Alerts(home, config, sender, zone=UTC)
    slack = {"driver": "slack", "webhook_url": "https://hooks.example/x",
             "events": ["stale", "duration_anomaly", "given_up"]}
    night = datetime(2026, 12, 2, 22, 30, tzinfo=BERLIN)
    assert alerts.deliver(Message("stale", "a", "main", "stale one"), [slack], night) == "held"
    assert alerts.deliver(Message("duration_anomaly", "b", "main", "slow one"), [slack],
                          night + timedelta(hours=1)) == "held"
    assert alerts.deliver(Message("given_up", "c", "main", "urgent", critical=True), [slack],
                          night) == "sent"
    assert [m.body for m, _ in sender.sent] == ["urgent"]
    # Held on disk: a restarted daemon (a new Alerts) still has them.
    held, _ = HeldQueue(home).load()
    assert [h.message.body for h in held] == ["stale one", "slow one"]
    again = Alerts(home, config, sender, zone=UTC)
    assert again.next_wake(night) == datetime(2026, 12, 3, 7, 0, tzinfo=BERLIN)
    assert again.flush_held(datetime(2026, 12, 3, 6, 59, tzinfo=BERLIN)) == 0
    assert again.flush_held(datetime(2026, 12, 3, 7, 0, tzinfo=BERLIN)) == 2
    digest, entries = sender.sent[-1]
    assert digest.body == ("🌙 2 notices held during quiet hours\n\nstale one\n\nslow one")
    assert entries == [{k: v for k, v in slack.items() if k != "events"}]
    assert len(sender.sent) == 2
    assert again.flush_held(datetime(2026, 12, 3, 7, 1, tzinfo=BERLIN)) == 0
    assert json.loads((dotagent_home / "state/notify/held.json").read_text())["held"] == []


def test_corrupt_held_file_is_empty(dotagent_home: Path) -> None:
    path = dotagent_home / "state" / "notify" / "held.json"
    path.parent.mkdir(parents=True)
    path.write_text("{{{")
    assert HeldQueue(Home(dotagent_home)).load() == ([], 0)


def test_held_bodies_are_redacted(dotagent_home: Path) -> None:
    from dotagent.redaction import clear_secrets, register_secret

    register_secret("hunter2-very-secret")
    try:
        HeldQueue(Home(dotagent_home)).add(
            Message("stale", "a", "main", "stderr: token hunter2-very-secret"),
            [{"driver": "desktop"}], 1.0)
    finally:
        clear_secrets()
    raw = (dotagent_home / "state/notify/held.json").read_text()
    assert "hunter2-very-secret" not in raw


def test_a_full_disk_at_the_end_of_quiet_hours_still_delivers_the_digest(
        dotagent_home: Path) -> None:
    # Before: emptying held.json failed on a full disk and the notices it had just read were
    # dropped from this run, their digest a day late.
    import sys as _sys
    _sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tmpfs import fill, small_tmpfs

    home = Home(dotagent_home)
    config = _config('[quiet_hours]\nstart = "22:00"\nend = "07:00"\n'
                     'timezone = "Europe/Berlin"\n[daily_summary]\nenabled = false\n')
    sender = Recorder()
    ntfy = {"driver": "ntfy", "topic": "t"}
    night = datetime(2026, 12, 2, 22, 30, tzinfo=BERLIN)
    with small_tmpfs(dotagent_home / "state" / "notify", 64):
        alerts = Alerts(home, config, sender, zone=UTC)
        assert alerts.deliver(Message("stale", "a", "main", "held one"), [ntfy], night) == \
            "held"
        fill(dotagent_home / "state" / "notify")
        assert alerts.flush_held(datetime(2026, 12, 3, 7, 0, tzinfo=BERLIN)) == 1
        (digest, _), = sender.sent
        assert "held one" in digest.body
