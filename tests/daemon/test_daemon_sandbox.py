"""The daemon runs a `[security]` agent inside bubblewrap, and refuses one it cannot confine
(issue 11 items 1 and 3). Real daemon, real bwrap."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_kit import DaemonProcess, events_of, history_rows, wait_for, write_agent

SOON = 'type = "interval"\ninterval_minutes = 60'


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener on the host's 127.0.0.1 that accepts (and drops) connections."""
    sock = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


def test_the_daemon_confines_one_agent_and_refuses_another(
        home: Path, daemon: DaemonProcess, daemon_env: dict[str, str], tmp_path: Path,
        listener: int) -> None:
    assert shutil.which("bwrap"), "bubblewrap must be installed (.ci/run installs it)"
    out = tmp_path / "out"
    out.mkdir()
    probe = (f'python3 -c "import socket; socket.create_connection((\'127.0.0.1\', {listener}),'
             f' 2)" 2>/dev/null && echo reached > {out}/net || echo no-route > {out}/net\n'
             f'echo x > {out}.escaped 2>/dev/null; echo done > {out}/done\n')
    write_agent(home / "agents", "boxed", script=probe, schedule=SOON, retry="max_retries = 0",
                extra=f'[security]\nnetwork = "deny"\nfilesystem_writable = ["{out}"]\n')
    open_out = tmp_path / "open"
    open_out.mkdir()
    write_agent(home / "agents", "open", script=probe.replace(str(out), str(open_out)),
                schedule=SOON, retry="max_retries = 0")
    write_agent(home / "agents", "refused", script=f"echo ran > {tmp_path}/refused-ran\n",
                schedule=SOON, retry="max_retries = 0",
                extra='[security]\nnetwork = ["example.org"]\n')
    daemon.start()
    wait_for(lambda: events_of(home, "agent_run", agent="boxed"), 30, "the boxed run")
    wait_for(lambda: events_of(home, "sandbox_unavailable", agent="refused"), 30,
             "the refusal")
    wait_for(lambda: events_of(home, "agent_run", agent="open"), 30, "the plain run")
    assert (open_out / "net").read_text() == "reached\n"  # the control: the host is there
    assert (out / "done").read_text() == "done\n"
    assert (out / "net").read_text() == "no-route\n"
    assert not (tmp_path / "out.escaped").exists()
    assert (tmp_path / "open.escaped").exists()  # the plain agent could write there
    assert not (tmp_path / "refused-ran").exists()
    (run,) = events_of(home, "agent_run", agent="boxed")
    assert run["exit_code"] == 0 and run["severity"] == "notice"
    (refusal,) = events_of(home, "sandbox_unavailable", agent="refused")
    assert refusal["severity"] == "critical" and refusal["refused"] is True
    wait_for(lambda: any(r["agent"] == "refused" and r["finished_at"] is not None
                         for r in history_rows(home)), 10, "the refused run's history row")
    (row,) = [r for r in history_rows(home) if r["agent"] == "refused"]
    assert row["exit_code"] == 69 and row["outcome"] == "could_not_start"
    assert daemon.stop() == 0
