"""The daily sweep of logs/ (SPEC S7 "Retention"; docs/logs.md): real files, injected `now`."""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from dotagent.config import LoggingSection
from dotagent.paths import Home
from dotagent.state.agentlog import AgentLogWriter, segment_name, segments
from dotagent.state.logretention import sweep_logs
from tmpfs import small_tmpfs

NOW = datetime(2026, 5, 19, 3, 0, 5, tzinfo=UTC)
DAY = 86400


def put(path: Path, days_old: float, data: bytes = b"some output\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    t = NOW.timestamp() - days_old * DAY
    os.utime(path, (t, t))
    return path


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def stamp(days_old: float) -> int:
    return int((NOW.timestamp() - days_old * DAY) * 1_000_000)


def test_the_spec_rules_with_the_default_settings(tmp_path: Path) -> None:
    home = Home(tmp_path)
    daemon, agent = tmp_path / "logs/daemon", tmp_path / "logs/agents/report"
    put(daemon / "dotagent.log.2026-04-01", 48)                     # > 30: deleted
    put(daemon / "dotagent.log.2026-05-16", 2.5, b"day\n" * 1000)   # > 1: compressed
    put(daemon / "dotagent.log.2026-05-18", 1.1)                    # age 1: not yet
    put(daemon / "dotagent.log.2026-05-19", 3)                      # today's: never compressed
    put(daemon / "run.dotagent.log", 20)                            # active (ends .log)
    put(daemon / "run.dotagent-error.log", 31)                      # active, but > 30: deleted
    old_seg = segment_name("report.log", stamp(15))
    put(agent / "report.log", 5)                                    # active: untouched
    put(agent / old_seg, 15)                                        # > 14: deleted
    put(agent / (segment_name("report.log", stamp(9)) + ".gz"), 9)  # .gz: kept as it is
    seg = put(agent / segment_name("report.log", stamp(3)), 3, b"x" * 300_000)
    put(agent / segment_name("report.log", stamp(0.5)), 0.5)        # too young
    put(tmp_path / "logs/agents/idle/idle.log", 14.5)               # active, age 14: kept
    put(tmp_path / "logs/agents/gone/gone.log", 15)                 # idle > 14 days: deleted
    seg_mtime = seg.stat().st_mtime_ns

    report = sweep_logs(home, NOW, LoggingSection())

    assert report.counts() == {"compressed": 2, "deleted": 4, "scanned": 13}
    assert report.errors == []
    assert names(daemon) == ["dotagent.log.2026-05-16.gz", "dotagent.log.2026-05-18",
                             "dotagent.log.2026-05-19", "run.dotagent.log"]
    assert gzip.decompress((daemon / "dotagent.log.2026-05-16.gz").read_bytes()) == \
        b"day\n" * 1000
    assert names(agent) == sorted([
        "report.log", segment_name("report.log", stamp(9)) + ".gz", seg.name + ".gz",
        segment_name("report.log", stamp(0.5))])
    gz = agent / (seg.name + ".gz")
    with gzip.open(gz) as fh:  # a stream, readable with the gzip module
        assert fh.read() == b"x" * 300_000
    assert gz.stat().st_mtime_ns == seg_mtime  # ages on from the original's time
    assert gz.stat().st_mode & 0o777 == 0o600
    assert names(tmp_path / "logs/agents/gone") == []
    assert [s.compressed for s in segments(agent / "report.log")] == [True, True, False]


def test_a_second_sweep_finds_nothing_to_do(tmp_path: Path) -> None:
    put(tmp_path / "logs/agents/a" / segment_name("a.log", stamp(3)), 3)
    assert sweep_logs(Home(tmp_path), NOW, LoggingSection()).compressed == 1
    again = sweep_logs(Home(tmp_path), NOW, LoggingSection())
    assert again.counts() == {"compressed": 0, "deleted": 0, "scanned": 1}


def test_retention_zero_keeps_everything_and_limits_apply(tmp_path: Path) -> None:
    put(tmp_path / "logs/daemon/dotagent.log.2020-01-01", 2000)
    put(tmp_path / "logs/agents/a/a.log", 2000)
    config = LoggingSection(retention_days=0, per_agent_retention_days=0,
                            compress_after_days=5000)
    assert sweep_logs(Home(tmp_path), NOW, config).counts() == {
        "compressed": 0, "deleted": 0, "scanned": 2}
    config = LoggingSection(retention_days=3, per_agent_retention_days=2001)
    report = sweep_logs(Home(tmp_path), NOW, config)
    assert (report.deleted, report.compressed) == (1, 0)
    assert (tmp_path / "logs/agents/a/a.log").exists()


def test_age_is_whole_days_above_the_limit(tmp_path: Path) -> None:
    d = tmp_path / "logs/daemon"
    put(d / "dotagent.log.a", 31 - 1e-6)   # age 30: kept
    put(d / "dotagent.log.b", 31)          # age 31: deleted
    put(d / "dotagent.log.c", -3)          # from the future: left alone
    report = sweep_logs(Home(tmp_path), NOW, LoggingSection(compress_after_days=100))
    assert report.deleted == 1 and names(d) == ["dotagent.log.a", "dotagent.log.c"]


def test_only_regular_files_are_touched(tmp_path: Path) -> None:
    agent = tmp_path / "logs/agents/a"
    target = put(tmp_path / "elsewhere/precious.1", 40)
    agent.mkdir(parents=True)
    (agent / "link.1").symlink_to(target)
    (agent / "sub.d").mkdir()
    put(agent / "sub.d/inner.1", 40)
    (tmp_path / "logs/agents/linked").symlink_to(tmp_path / "elsewhere")
    report = sweep_logs(Home(tmp_path), NOW, LoggingSection())
    assert report.counts() == {"compressed": 0, "deleted": 0, "scanned": 0}
    assert target.exists() and (agent / "sub.d/inner.1").exists()


def test_temporary_files_of_a_crashed_sweep_are_removed(tmp_path: Path) -> None:
    agent = tmp_path / "logs/agents/a"
    seg = put(agent / segment_name("a.log", stamp(2)), 2)
    put(agent / (seg.name + ".gz.tmp"), 2 / 24)  # two hours old: a crashed sweep's
    fresh = put(agent / "other.1.gz.tmp", 0.001)  # another sweep may be writing it
    report = sweep_logs(Home(tmp_path), NOW, LoggingSection())
    assert report.compressed == 1
    assert names(agent) == sorted([seg.name + ".gz", fresh.name])


def test_a_full_disk_leaves_the_original_and_no_temporary(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "home", size_kib=256) as root:
        seg = put(root / "logs/agents/a" / segment_name("a.log", stamp(3)), 3,
                  os.urandom(200 * 1024))  # does not compress: no room for a copy
        data = seg.read_bytes()
        report = sweep_logs(Home(root), NOW, LoggingSection())
        assert report.compressed == 0
        assert [(p, why) for p, why in report.errors] == [
            (seg, "cannot compress: No space left on device")]
        assert names(seg.parent) == [seg.name] and seg.read_bytes() == data


def test_the_sweep_and_rotation_share_the_segments(tmp_path: Path) -> None:
    """Segments a rotation made are compressed by the sweep and still count towards keep."""
    log = tmp_path / "logs/agents/a/a.log"
    with AgentLogWriter(log, max_bytes=100, keep=2) as w:
        for _ in range(3):
            w.write(b"x" * 90 + b"\n")
            w.flush()
    for seg in segments(log):
        t = NOW.timestamp() - 3 * DAY
        os.utime(seg.path, (t, t))
    assert sweep_logs(Home(tmp_path), NOW, LoggingSection()).compressed == 2
    with AgentLogWriter(log, max_bytes=100, keep=2) as w:
        w.write(b"y" * 90 + b"\n")
    segs = segments(log)
    assert [s.compressed for s in segs] == [True, False]
    assert len(list(log.parent.iterdir())) == 3


def test_now_must_be_aware(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sweep_logs(Home(tmp_path), datetime(2026, 5, 19), LoggingSection())


def test_todays_daemon_file_is_the_utc_date_of_now(tmp_path: Path) -> None:
    local_now = NOW.astimezone(timezone(timedelta(hours=-5)))
    put(tmp_path / "logs/daemon/dotagent.log.2026-05-19", 2)
    put(tmp_path / "logs/daemon/dotagent.log.2026-05-18", 2)
    report = sweep_logs(Home(tmp_path), local_now, LoggingSection())
    assert report.compressed == 1
    assert names(tmp_path / "logs/daemon") == ["dotagent.log.2026-05-18.gz",
                                               "dotagent.log.2026-05-19"]
