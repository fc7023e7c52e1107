"""A full or read-only state directory while the daemon runs: writes fail, nothing is left
corrupt, the daemon keeps running and picks up again when the disk is usable. The tests run as
root, so file modes prove nothing: the state directory is a real 200 KiB tmpfs, or a
read-only bind mount."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from daemon_kit import DaemonProcess, events_of, history_rows, wait_for, write_agent

from tmpfs import fill, small_tmpfs

EVERY_SECOND = """
    type = "expression"
    expression = "*:*:0/1"
    """


def _assert_state_intact(state: Path) -> None:
    """Every JSON state file parses, no temp file is left over, the history database passes
    SQLite's integrity check."""
    for path in state.rglob("*.json"):
        json.loads(path.read_text())  # heartbeats, windows, supervisor.json, caches
    leftovers = [p for p in state.rglob("*.tmp")]
    assert not leftovers, f"temp files left behind: {leftovers}"
    db = state / "history.sqlite3"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()


def _finished_after(home: Path, moment: float) -> bool:
    return any(r["started_at"] > moment and r["outcome"] == "ok"
               for r in history_rows(home, "steady"))


def _runs(home: Path, agent_dir: Path) -> int:
    try:
        return len((agent_dir / "runs").read_text().split())
    except FileNotFoundError:
        return 0


def test_full_state_directory(home: Path, daemon: DaemonProcess) -> None:
    write_agent(home / "agents", "steady", schedule=EVERY_SECOND,
                script='echo "$AGENT_START_EPOCH" >> "$AGENT_HOME/runs"\n')
    with small_tmpfs(home / "state", size_kib=200):
        daemon.start()
        wait_for(lambda: _finished_after(home, 0), 20, "a first run")
        filler = fill(home / "state")
        full_at = time.time()
        # Windows keep coming while the disk is full; each attempt fails to write its state.
        daemon.wait_log("No space left on device", 20)
        wait_for(lambda: time.time() > full_at + 3, 5, "three windows")
        assert daemon.alive()
        log = daemon.log()
        tries = log.count("dispatching steady/main")
        assert tries < 20, f"the daemon spins on a full disk ({tries} dispatches):\n{log}"
        # A manifest changes meanwhile: the drift is audited (audit.log is not on the full
        # disk) but known_manifests.json cannot be rewritten; the daemon goes on.
        manifest = home / "agents" / "steady" / "agent.toml"
        edited = manifest.with_name(".agent.toml.new")
        edited.write_text(manifest.read_text().replace("timeout_seconds = 30",
                                                       "timeout_seconds = 31"))
        edited.replace(manifest)
        # 30 s, not 10: once, on a loaded 2-core CI run, the rescan came later than 10 s.
        wait_for(lambda: events_of(home, "manifest_drift_detected", agent="steady"), 30,
                 "the drift to be audited")
        daemon.wait_log("known_manifests.json", 10)
        wait_for(lambda: daemon.log().count("scanned ") >= 2, 10, "the rescan to finish")
        assert daemon.alive(), daemon.log()
        _assert_state_intact(home / "state")

        filler.unlink()  # space returns
        freed_at = time.time()
        wait_for(lambda: _finished_after(home, freed_at), 20, "a run after space returned")
        assert daemon.stop() == 0
        _assert_state_intact(home / "state")
        assert not (home / "state" / "daemon.pid").exists()


@contextlib.contextmanager
def _read_only(directory: Path) -> Iterator[None]:
    """Bind-mount `directory` read-only over itself for the block."""
    subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True,
                   capture_output=True)
    try:
        # The remount fails (EBUSY) while the daemon has a file open for writing through the
        # new mount, which it may have done in between: try again until it is not writing.
        wait_for(lambda: subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)],
                                        capture_output=True).returncode == 0, 20,
                 f"a read-only remount of {directory}", interval=0.005)
        yield
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False, capture_output=True)


def test_read_only_state_directory(home: Path, daemon: DaemonProcess) -> None:
    d = write_agent(home / "agents", "steady", schedule=EVERY_SECOND,
                    script='echo "$AGENT_START_EPOCH" >> "$AGENT_HOME/runs"\n')
    daemon.start()
    wait_for(lambda: _finished_after(home, 0), 20, "a first run")
    state = home / "state"
    # Heartbeats and window files become unwritable (the history database stays open on
    # the writable mount beneath, as an open file would).
    with _read_only(state / "agents"), _read_only(state / "windows"):
        ro_at = time.time()
        daemon.wait_log("Read-only file system", 20)
        wait_for(lambda: time.time() > ro_at + 3, 5, "three windows")
        assert daemon.alive()
        log = daemon.log()
        assert log.count("dispatching steady/main") < 20, f"the daemon spins:\n{log}"
        _assert_state_intact(state)
    rw_at = time.time()
    wait_for(lambda: _finished_after(home, rw_at), 20, "a run after the mount is writable")
    assert daemon.stop() == 0
    _assert_state_intact(state)
    assert _runs(home, d) >= 2


def test_disk_fills_during_a_run(home: Path, daemon: DaemonProcess) -> None:
    """The agent itself fills the state directory while it runs: the finish heartbeat, the
    history row and the window file cannot be written when it ends. The window still counts
    as attempted (it is not run again), and the next window runs once space returns."""
    d = write_agent(home / "agents", "filler", schedule="""
        type = "expression"
        expression = "*:*:0/2"
        """, script="""
        echo "$AGENT_START_EPOCH" >> "$AGENT_HOME/runs"
        if [ ! -e "$AGENT_HOME/filled" ]; then
            touch "$AGENT_HOME/filled"
            state=$(dirname "$(dirname "$(dirname "$AGENT_HEARTBEAT_FILE")")")
            dd if=/dev/zero of="$state/filler" bs=4096 2>/dev/null
        fi
        """)
    with small_tmpfs(home / "state", size_kib=200):
        daemon.start()
        wait_for(lambda: (home / "state" / "filler").exists() and _runs(home, d) >= 1, 20,
                 "the run that fills the disk")
        filled_window = int((d / "runs").read_text().split()[0])
        daemon.wait_log("No space left on device", 20)
        wait_for(lambda: time.time() > filled_window + 5, 10, "two more windows")
        assert daemon.alive()
        _assert_state_intact(home / "state")
        (home / "state" / "filler").unlink()
        freed_at = time.time()
        wait_for(lambda: any(int(x) > freed_at for x in (d / "runs").read_text().split()),
                 20, "a run after space returned")
        assert daemon.stop() == 0
        _assert_state_intact(home / "state")
        starts = [int(x) for x in (d / "runs").read_text().split()]
        assert starts.count(filled_window) == 1, f"the window ran twice: {starts}"
        assert len(set(starts)) == len(starts), starts


def test_unwritable_window_files_do_not_repeat_a_window(home: Path,
                                                        daemon: DaemonProcess) -> None:
    """The run happens but its window file cannot be written: the daemon remembers the
    attempt (a failing agent is retried at its backoff, not run again and again)."""
    (home / "state" / "windows").mkdir(parents=True)
    d = write_agent(home / "agents", "failing", schedule="""
        type = "expression"
        expression = "hourly"
        """, script='echo "$AGENT_START_EPOCH" >> "$AGENT_HOME/runs"\nexit 3\n')
    with _read_only(home / "state" / "windows"):
        daemon.start()
        daemon.wait_log("cannot write window file", 20)
        # Give a spinning daemon the chance to show itself: wait for another state change
        # that follows the run (the per-agent log and the history are written after it).
        wait_for(lambda: history_rows(home, "failing")
                 and history_rows(home, "failing")[0]["outcome"] == "failed", 10,
                 "the run to be recorded")
        daemon.signal(signal.SIGHUP)  # a rescan re-reads every state file
        daemon.wait_log("SIGHUP", 10)
        daemon.wait_log("scanned ", 10, count=2)
        assert daemon.stop() == 0
    runs = (d / "runs").read_text().split()
    assert len(runs) == 1, f"the window ran {len(runs)} times:\n{daemon.log()}"
    assert [r["attempt"] for r in history_rows(home, "failing")] == [1]
