"""Window files: upstream's shape, local-time names, garbage tolerance, latest, retention."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dotagent.errors import StateError, UnsafeNameError
from dotagent.filelock import locked_deletable
from dotagent.paths import Home
from dotagent.schedule.windows import WindowState
from dotagent.state.windows import WindowStore
from tmpfs import fill, small_tmpfs

from conftest import REPO

SP = ZoneInfo("America/Sao_Paulo")
NOW = datetime(2026, 5, 19, 17, 30, tzinfo=UTC)  # 14:30 in São Paulo


class Problems(list[tuple[Path, str]]):
    def __call__(self, path: Path, message: str) -> None:
        self.append((path, message))


def store(tmp_path: Path, problems: Problems | None = None) -> WindowStore:
    return WindowStore(Home(tmp_path), zone=SP, on_problem=problems)


def test_file_is_upstreams_shape_byte_for_byte(tmp_path: Path) -> None:
    s = store(tmp_path)
    state = WindowState(expected_at=NOW, attempts=2, last_attempt_at=NOW + timedelta(minutes=5),
                        last_exit_code=3)
    s.save("report", "period_x", "daily", state, stderr="boom\nline 2")
    path = tmp_path / "state/windows/report-period_x-2026-05-19-1430.json"
    epoch = int(NOW.timestamp())
    assert path.read_text() == (
        "{\n"
        '  "agent": "report",\n'
        '  "schedule_id": "daily",\n'
        f'  "expected_at": {epoch},\n'
        '  "attempts": 2,\n'
        f'  "last_attempt_at": {epoch + 300},\n'
        '  "last_attempt_exit_code": 3,\n'
        '  "last_attempt_stderr": "boom\\nline 2",\n'
        '  "given_up": false,\n'
        '  "given_up_at": null\n'
        "}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    lock = path.with_name("report-period_x-2026-05-19-1430.lock")
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600  # kept: never deleted by a writer
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, lock.name])


def test_round_trip_keeps_what_upstream_cannot_hold(tmp_path: Path) -> None:
    s = store(tmp_path)
    fine = NOW + timedelta(seconds=1, microseconds=250_000)
    state = WindowState(expected_at=fine, missed=True)
    s.save("a", "default", "every", state)
    data = json.loads(s.path("a", "default", fine).read_text())
    assert list(data)[-2:] == ["expected_at_us", "missed"]  # ours, after upstream's keys
    assert data["expected_at"] == int(fine.timestamp()) and data["expected_at_us"] == 250_000
    assert s.load("a", "default", fine) == state
    given = WindowState(expected_at=NOW, attempts=4, last_attempt_at=NOW, last_exit_code=1,
                        given_up=True)
    s.save("a", "default", "every", given, given_up_at=NOW + timedelta(seconds=9))
    record = s.read("a", "default", NOW)
    assert record is not None and record.state == given
    assert record.given_up_at == NOW + timedelta(seconds=9) and record.schedule_id == "every"


def test_name_is_local_time_of_expected_at(tmp_path: Path) -> None:
    tokyo = WindowStore(Home(tmp_path), zone=ZoneInfo("Asia/Tokyo"))
    assert tokyo.path("a", "s", NOW).name == "a-s-2026-05-20-0230.json"
    system = WindowStore(Home(tmp_path))  # the C library's local time
    assert system.path("a", "s", NOW).name == f"a-s-{NOW.astimezone():%Y-%m-%d-%H%M}.json"


def test_reads_an_upstream_file(tmp_path: Path) -> None:
    path = tmp_path / "state/windows/relatorio-default-2026-05-19-1430.json"
    path.parent.mkdir(parents=True)
    epoch = int(NOW.timestamp())
    path.write_text(json.dumps({
        "agent": "relatorio", "schedule_id": "manha", "expected_at": epoch, "attempts": 1,
        "last_attempt_at": epoch + 60, "last_attempt_exit_code": 0,
        "last_attempt_stderr": None, "given_up": False, "given_up_at": None,
        "first_attempt_at": epoch,  # keys we do not know are ignored, as upstream does
    }, indent=2))
    problems = Problems()
    state = store(tmp_path, problems).load("relatorio", "default", NOW)
    assert state == WindowState(expected_at=NOW, attempts=1,
                                last_attempt_at=NOW + timedelta(minutes=1), last_exit_code=0)
    assert problems == []
    # A minimal file (upstream's serde defaults) is a fresh window.
    path.write_text(json.dumps({"agent": "relatorio", "schedule_id": "manha",
                                "expected_at": epoch}))
    assert store(tmp_path).load("relatorio", "default", NOW) == WindowState(expected_at=NOW)


@pytest.mark.parametrize("content", [
    b"", b"{", b"[1, 2]", b"null", b'"text"', b"\xff\xfe garbage",
    b'{"agent": "a", "expected_at": "1779211800"}',
    b'{"agent": "a", "expected_at": 1e300}',
    b'{"agent": "a", "expected_at": -5}',
    b'{"agent": "a", "expected_at": true}',
    b'{"agent": "a", "schedule_id": "s", "expected_at": 17792118',  # torn write
])
def test_garbage_is_absent_and_reported(tmp_path: Path, content: bytes) -> None:
    problems = Problems()
    s = store(tmp_path, problems)
    path = s.path("a", "default", NOW)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert s.load("a", "default", NOW) is None
    assert s.latest("a", "default") is None
    assert problems and all(p == path for p, _ in problems)
    # ... and the next save replaces it.
    s.save("a", "default", "s", WindowState(expected_at=NOW, attempts=1))
    assert s.load("a", "default", NOW) == WindowState(expected_at=NOW, attempts=1)


def test_bad_fields_read_as_defaults_and_are_reported(tmp_path: Path) -> None:
    problems = Problems()
    s = store(tmp_path, problems)
    path = s.path("a", "default", NOW)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({
        "agent": "a", "schedule_id": "s", "expected_at": int(NOW.timestamp()),
        "attempts": "three", "last_attempt_at": 1e300, "last_attempt_exit_code": 2**40,
        "given_up": "yes", "missed": 1, "expected_at_us": -1,
    }))
    assert s.load("a", "default", NOW) == WindowState(expected_at=NOW)
    reported = " ".join(m for _, m in problems)
    for key in ("attempts", "last_attempt_at", "last_attempt_exit_code", "given_up",
                "missed", "expected_at_us"):
        assert key in reported


def test_unreadable_path_is_reported_not_raised(tmp_path: Path) -> None:
    problems = Problems()
    s = store(tmp_path, problems)
    s.path("a", "default", NOW).mkdir(parents=True)  # a directory where the file should be
    assert s.load("a", "default", NOW) is None
    assert problems and "cannot read" in problems[0][1]


def test_windows_sharing_a_name_are_told_apart(tmp_path: Path) -> None:
    s = store(tmp_path)
    first, second = NOW, NOW + timedelta(seconds=30)  # same minute: one file name
    s.save("a", "default", "s", WindowState(expected_at=first, attempts=1))
    s.save("a", "default", "s", WindowState(expected_at=second, attempts=1))
    assert s.load("a", "default", first) is None
    assert s.load("a", "default", second) == WindowState(expected_at=second, attempts=1)
    # "a" + "b-c" and "a-b" + "c" join to the same file name; the agent key tells them apart.
    s.save("a", "b-c", "s", WindowState(expected_at=NOW, attempts=7))
    assert s.path("a-b", "c", NOW) == s.path("a", "b-c", NOW)
    assert s.load("a-b", "c", NOW) is None and s.latest("a-b", "c") is None
    assert s.load("a", "b-c", NOW) == WindowState(expected_at=NOW, attempts=7)


def test_names_never_leave_the_state_directory(tmp_path: Path) -> None:
    s = store(tmp_path)
    for agent, slug in [("../x", "default"), ("a", "b/c"), ("a/b", "c"), ("", "x")]:
        with pytest.raises(UnsafeNameError):
            s.save(agent, slug, "s", WindowState(expected_at=NOW))
    assert not (tmp_path / "state").exists()


def test_latest_is_the_newest_expected_at(tmp_path: Path) -> None:
    problems = Problems()
    s = store(tmp_path, problems)
    assert s.latest("a", "default") is None  # no directory yet
    for hours in (0, 1, 5, 3):
        s.save("a", "default", "s", WindowState(expected_at=NOW + timedelta(hours=hours)))
    s.save("a", "other", "s", WindowState(expected_at=NOW + timedelta(hours=9)))
    s.save("ab", "default", "s", WindowState(expected_at=NOW + timedelta(hours=9)))
    latest = s.latest("a", "default")
    assert latest is not None and latest.state.expected_at == NOW + timedelta(hours=5)
    # A newer file that is garbage is reported and passed over.
    s.path("a", "default", NOW + timedelta(hours=8)).write_text("not json")
    latest = s.latest("a", "default")
    assert latest is not None and latest.state.expected_at == NOW + timedelta(hours=5)
    assert len(problems) == 1
    many = s.latest_many([("a", "default"), ("a", "other"), ("zz", "default")])
    assert many[("zz", "default")] is None
    other = many[("a", "other")]
    assert other is not None and other.state.expected_at == NOW + timedelta(hours=9)


def test_latest_across_a_dst_fall_back(tmp_path: Path) -> None:
    """In the repeated hour an older window's name (01:50 EDT) sorts after a newer one's
    (01:10 EST); latest compares what the files hold."""
    ny = WindowStore(Home(tmp_path), zone=ZoneInfo("America/New_York"))
    edt = datetime(2026, 11, 1, 5, 50, tzinfo=UTC)   # 01:50 EDT
    est = datetime(2026, 11, 1, 6, 10, tzinfo=UTC)   # 01:10 EST, 20 minutes later
    ny.save("a", "default", "s", WindowState(expected_at=edt))
    ny.save("a", "default", "s", WindowState(expected_at=est))
    assert ny.path("a", "default", edt).name > ny.path("a", "default", est).name
    latest = ny.latest("a", "default")
    assert latest is not None and latest.state.expected_at == est


def test_a_failed_write_raises_state_error_and_keeps_the_old_file(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "mnt", size_kib=256) as mnt:
        s = store(mnt)
        s.save("a", "default", "s", WindowState(expected_at=NOW, attempts=1))
        before = s.path("a", "default", NOW).read_bytes()
        fill(mnt)
        with pytest.raises(StateError) as err:
            s.save("a", "default", "s", WindowState(expected_at=NOW, attempts=2),
                   stderr="x" * 100_000)
        assert str(s.path("a", "default", NOW)) in str(err.value)
        assert s.path("a", "default", NOW).read_bytes() == before
        assert [p.name for p in s.directory.iterdir() if p.name.endswith(".tmp")] == []
    bad = tmp_path / "home2"
    (bad / "state").mkdir(parents=True)
    (bad / "state" / "windows").write_text("a file, not a directory")
    with pytest.raises(StateError, match="cannot write window file"):
        store(bad).save("a", "default", "s", WindowState(expected_at=NOW))


# -- retention --------------------------------------------------------------------------
def _age(path: Path, days: float) -> None:
    t = NOW.timestamp() - days * 86400
    os.utime(path, (t, t))


def _window(s: WindowStore, agent: str, when: datetime, days_old: float) -> Path:
    s.save(agent, "default", "s", WindowState(expected_at=when))
    path = s.path(agent, "default", when)
    _age(path, days_old)
    _age(s.lock_path(path), days_old)
    return path


def test_sweep_deletes_old_windows_and_their_locks(tmp_path: Path) -> None:
    s = store(tmp_path)
    old = _window(s, "a", NOW - timedelta(days=40), 40)
    older = _window(s, "a", NOW - timedelta(days=50), 50)
    recent = _window(s, "a", NOW - timedelta(days=10), 10)
    newest_but_old = _window(s, "yearly", NOW - timedelta(days=200), 200)
    stray_lock = s.directory / "gone-default-2026-01-01-0000.lock"
    stray_lock.touch()
    _age(stray_lock, 45)
    old_tmp = s.directory / ".a-default-2026-01-01-0000.json.k2j3.tmp"
    old_tmp.touch()
    _age(old_tmp, 45)
    stranger = s.directory / "notes.txt"
    stranger.touch()
    _age(stranger, 400)

    assert s.sweep(NOW, retention_days=0).deleted == []  # 0 disables
    report = s.sweep(NOW, retention_days=30)
    assert sorted(report.deleted) == sorted([old, older])
    assert report.kept_latest == [newest_but_old]
    assert sorted(report.removed_other) == sorted([stray_lock, old_tmp])
    assert report.errors == [] and report.skipped_locked == []
    left = sorted(p.name for p in s.directory.iterdir())
    assert left == sorted([recent.name, s.lock_path(recent).name, newest_but_old.name,
                           s.lock_path(newest_but_old).name, "notes.txt"])


def test_sweep_skips_a_window_whose_lock_is_held(tmp_path: Path) -> None:
    s = store(tmp_path)
    held = _window(s, "a", NOW - timedelta(days=40), 40)
    free = _window(s, "a", NOW - timedelta(days=41), 41)
    _window(s, "a", NOW, 0)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
         str(s.lock_path(held))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        report = s.sweep(NOW, retention_days=30)
        assert report.skipped_locked == [held] and report.deleted == [free]
        assert held.exists() and s.lock_path(held).exists()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    assert s.sweep(NOW, retention_days=30).deleted == [held]  # the next pass collects it
    assert not s.lock_path(held).exists()


def test_a_writer_waiting_on_a_deleted_lock_starts_over(tmp_path: Path) -> None:
    """The sweeper deletes a lock while a writer waits on it: the writer must end up holding
    the lock that the path names, or two writers could both "hold" it."""
    lock = tmp_path / "w.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.readline(); "
         "os.unlink(sys.argv[1]); os.close(fd)",
         str(lock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    acquired = threading.Event()
    release = threading.Event()

    def writer() -> None:
        with locked_deletable(lock) as held:
            assert held
            acquired.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    deadline = time.monotonic() + 5
    while not _waiting_on(lock) and time.monotonic() < deadline:  # the writer is blocked
        time.sleep(0.01)
    assert holder.stdin is not None
    holder.stdin.write("go\n")
    holder.stdin.close()
    holder.wait(timeout=10)
    assert acquired.wait(10)
    try:
        with locked_deletable(lock, wait=False) as other:
            assert other is False  # the path names the inode the writer holds
    finally:
        release.set()
        thread.join(10)


def _waiting_on(lock: Path) -> bool:
    """True once this process (the writer thread) has the lock file open."""
    try:
        ino = lock.stat().st_ino
    except FileNotFoundError:
        return False
    fds = Path("/proc/self/fd")
    return any(_ino(fd) == ino for fd in fds.iterdir())


def _ino(fd: Path) -> int | None:
    try:
        return fd.stat().st_ino
    except OSError:
        return None


def test_the_example_in_docs_is_what_we_write(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "state.md").read_text()
    example = re.findall(r"```json\n(.*?)\n```", doc, re.S)[0]
    s = store(tmp_path)
    s.save("report", "period_x", "daily",
           WindowState(expected_at=NOW, attempts=2, last_attempt_at=NOW + timedelta(minutes=5),
                       last_exit_code=3), stderr="boom")
    assert s.path("report", "period_x", NOW).name in doc
    assert s.path("report", "period_x", NOW).read_text() == example
