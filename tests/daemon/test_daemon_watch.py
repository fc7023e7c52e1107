"""Manifests changed while the daemon runs are seen within a second (inotify + debounce), and
a half-written editor save is not mistaken for an invalid manifest."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from daemon_kit import DaemonProcess, events_of, wait_for, write_agent

# Seen "within a second": inotify, the 0.25 s debounce and one rescan; the half second beyond
# it is slack for a loaded test machine, not for the daemon.
SEEN_WITHIN = 1.5
NEVER = """
    type = "expression"
    expression = "2099-01-01 00:00:00"
    """  # a schedule with no window yet: nothing runs, only the manifests matter


def _start_with_one_agent(home: Path, daemon: DaemonProcess) -> Path:
    d = write_agent(home / "agents", "first", schedule=NEVER, script="exit 0\n")
    daemon.start()
    assert events_of(home, "manifest_loaded", agent="first")  # the baseline, not a phantom
    return d


def test_new_manifest_is_seen_within_a_second(home: Path, daemon: DaemonProcess) -> None:
    _start_with_one_agent(home, daemon)
    write_agent(home / "agents", "newcomer", schedule=NEVER, script="exit 0\n")
    wait_for(lambda: events_of(home, "phantom_agent_detected", agent="newcomer"),
             SEEN_WITHIN, "phantom_agent_detected for the new manifest")
    assert daemon.alive()
    assert not events_of(home, "manifest_invalid")


def test_changed_manifest_is_seen_within_a_second(home: Path, daemon: DaemonProcess) -> None:
    d = _start_with_one_agent(home, daemon)
    manifest = d / "agent.toml"
    tmp = d / ".agent.toml.edit"
    tmp.write_text(manifest.read_text().replace("timeout_seconds = 30", "timeout_seconds = 31"))
    os.replace(tmp, manifest)
    wait_for(lambda: events_of(home, "manifest_drift_detected", agent="first"),
             SEEN_WITHIN, "manifest_drift_detected for the edited manifest")
    assert daemon.alive()


def test_editor_saves_are_not_reported_invalid(home: Path, daemon: DaemonProcess) -> None:
    d = _start_with_one_agent(home, daemon)
    manifest = d / "agent.toml"
    text = manifest.read_text()

    # 1. Write a temp file beside it, then rename it over the manifest (vim, most IDEs).
    swap = d / ".agent.toml.swp"
    swap.write_text(text.replace("timeout_seconds = 30", "timeout_seconds = 40"))
    os.replace(swap, manifest)
    wait_for(lambda: len(events_of(home, "manifest_drift_detected", agent="first")) == 1,
             SEEN_WITHIN, "the first drift")

    # 2. Truncate, then write, as two separate opens and closes (nano, `cat >`, some sync
    # tools): for a moment the manifest is an empty file, which is not a valid manifest.
    with manifest.open("w"):
        pass
    with manifest.open("a") as fh:
        fh.write(text.replace("timeout_seconds = 30", "timeout_seconds = 50"))
    drifts = wait_for(lambda: events_of(home, "manifest_drift_detected", agent="first")[1:],
                      SEEN_WITHIN, "the second drift")
    assert drifts[0]["actual_sha256"] != drifts[0]["expected_sha256"]

    # 3. Write in place in several chunks (one open, several writes, one close).
    with manifest.open("w") as fh:
        for line in text.replace("timeout_seconds = 30", "timeout_seconds = 60").splitlines(True):
            fh.write(line)
            fh.flush()
    wait_for(lambda: len(events_of(home, "manifest_drift_detected", agent="first")) == 3,
             SEEN_WITHIN, "the third drift")

    assert not events_of(home, "manifest_invalid"), "a half-written save was reported invalid"
    assert daemon.alive()
    assert daemon.stop() == 0
    assert not events_of(home, "manifest_invalid")


def test_files_written_beside_a_manifest_do_not_delay_its_change(
        home: Path, daemon: DaemonProcess) -> None:
    """Agents write files in their own directory all the time; those events are ignored and
    must not keep postponing the rescan that a manifest change asks for."""
    d = _start_with_one_agent(home, daemon)
    stop = threading.Event()

    def chatter() -> None:  # an agent appending to its own file, every 50 ms
        while not stop.is_set():
            with (d / "output.txt").open("a") as fh:
                fh.write("x\n")
            stop.wait(0.05)

    noise = threading.Thread(target=chatter)
    noise.start()
    try:
        manifest = d / "agent.toml"
        tmp = d / ".agent.toml.edit"
        tmp.write_text(manifest.read_text().replace("timeout_seconds = 30",
                                                    "timeout_seconds = 33"))
        os.replace(tmp, manifest)
        wait_for(lambda: events_of(home, "manifest_drift_detected", agent="first"),
                 SEEN_WITHIN, "manifest_drift_detected while the directory is busy")
    finally:
        stop.set()
        noise.join()
    assert daemon.stop() == 0
