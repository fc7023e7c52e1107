"""Regression tests of the breaking round after issue 10 (docs/decisions.md, "Breaking round
after issue 10"): each one failed before its fix. Real homes, real runs, the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

from helpers import DOTAGENT, dotagent, write_agent


def _agent(home: Path, name: str, *, schedule: str | None = None, exit_code: int = 0) -> Path:
    sched = schedule or 'type = "interval"\ninterval_minutes = 60'
    return write_agent(home / "agents", name, f"""
        [agent]
        name = "{name}"
        timeout_seconds = 30
        [run]
        command = "./run.sh"
        [[schedules]]
        id = "main"
        {sched}
        """, files={"run.sh": f"#!/bin/sh\necho {name}\nexit {exit_code}\n"})


def _one_line_error(p: object, code: int, *needles: str) -> None:
    out = p.stdout + p.stderr  # type: ignore[attr-defined]
    assert p.returncode == code, out  # type: ignore[attr-defined]
    assert "internal error" not in out and "Traceback" not in out, out
    for needle in needles:
        assert needle in p.stderr, p.stderr  # type: ignore[attr-defined]


# -- numbers too large for SQLite, for datetime, or not numbers at all ---------------------

def test_history_takes_any_n_and_any_id(dotagent_home: Path, cli_env: dict[str, str]) -> None:
    _agent(dotagent_home, "job")
    assert dotagent("run-now", "job", env=cli_env).returncode == 0
    huge = str(10 ** 23)
    p = dotagent("history", "-n", huge, "--json", env=cli_env)
    assert p.returncode == 0, p.stderr
    runs = json.loads(p.stdout)
    assert [(r["agent"], r["outcome"]) for r in runs] == [("job", "ok")]
    p = dotagent("history", "job", "-n", str(2 ** 63), env=cli_env)
    assert p.returncode == 0 and "job/main" in p.stdout, p.stderr
    p = dotagent("history", "show", huge, env=cli_env)
    _one_line_error(p, 1, f"run {huge} is not in the history")


def test_next_hours_beyond_the_calendar_or_not_a_number(dotagent_home: Path,
                                                        cli_env: dict[str, str]) -> None:
    _agent(dotagent_home, "daily", schedule='type = "expression"\nexpression = "*-*-* 09:00"')
    for hours in ("1e9", "inf", "1e308"):
        p = dotagent("next", "--hours", hours, "--json", env=cli_env, timeout=60)
        assert p.returncode == 0, (hours, p.stderr)
        fires = json.loads(p.stdout)
        assert len(fires) == 10000, hours  # every fire up to the cap, then the note
        assert fires[0]["agent"] == "daily" and "T09:00:00" in fires[0]["at"]
        assert "only the first 10000 fires are listed" in p.stderr
    p = dotagent("next", "--hours", "nan", env=cli_env)
    _one_line_error(p, 2, "--hours")


def test_next_n_is_capped_like_hours(dotagent_home: Path, cli_env: dict[str, str]) -> None:
    # An every-second schedule never runs out of fires: -n 10**12 used to loop for ever.
    _agent(dotagent_home, "often", schedule='type = "expression"\nexpression = "*:*:*"')
    p = dotagent("next", "-n", str(10 ** 12), "--json", env=cli_env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert len(json.loads(p.stdout)) == 10000
    assert "only the first 10000 fires are listed" in p.stderr
    p = dotagent("next", "-n", "3", "--json", env=cli_env)
    assert len(json.loads(p.stdout)) == 3 and p.stderr == ""


def test_next_lists_a_long_interval_up_to_the_calendars_end(dotagent_home: Path,
                                                            cli_env: dict[str, str]) -> None:
    # Every 10 years (the longest interval a manifest may have): 10000 of them would pass
    # year 9999, where datetime ends; the listing stops there instead of failing.
    _agent(dotagent_home, "decade", schedule=f'type = "interval"\ninterval_minutes = '
                                             f'{10 * 366 * 24 * 60}')
    for args in (["-n", "5000"], ["--hours", "inf"]):
        p = dotagent("next", *args, "--json", env=cli_env)
        assert p.returncode == 0, (args, p.stderr)
        fires = json.loads(p.stdout)
        assert fires[0]["kind"] == "due" and fires[0]["in_seconds"] == 0
        assert 700 < len(fires) < 1000, len(fires)  # one per 10 years from now to 9999
        assert fires[-1]["at"].startswith("99"), fires[-1]


def test_a_corrupt_paused_json_is_said_not_silently_ignored(dotagent_home: Path,
                                                             cli_env: dict[str, str]) -> None:
    _agent(dotagent_home, "job")
    assert dotagent("pause", "job", env=cli_env).returncode == 0
    assert _status_json(cli_env)["counts"]["paused"] == 1
    paused = dotagent_home / "state" / "paused.json"
    for content, reason in (("{garbage", "not JSON"), ('["job"]', 'not {"paused": {…}}')):
        paused.write_text(content)
        status = _status_json(cli_env)
        assert status["counts"]["paused"] == 0  # the daemon would dispatch it: say why
        assert status["notes"] == [f"{paused} cannot be used: {reason}; nothing is paused "
                                   "while it is so (`dotagent pause` writes it anew)"]
        text = dotagent("status", env=cli_env)
        assert f"note: {paused} cannot be used: {reason}" in text.stdout + text.stderr
        doctor = dotagent("doctor", "--json", env=cli_env)
        general = json.loads(doctor.stdout)["general"]
        assert [(g["path"], g["severity"]) for g in general
                if "paused" in g["message"]] == [(str(paused), "warning")], general
    paused.unlink()  # absent: nothing paused, nothing to say
    assert _status_json(cli_env)["notes"] == []


def _status_json(env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    p = dotagent("status", "--json", env=env)
    assert p.returncode == 0, p.stderr
    out: dict = json.loads(p.stdout)  # type: ignore[type-arg]
    return out


def test_a_damaged_status_cache_is_a_miss(dotagent_home: Path, cli_env: dict[str, str]) -> None:
    # The cache's signature (roots, stat of every manifest) still matches; its body does
    # not hold what discovery found. It used to be believed and break status and next.
    _agent(dotagent_home, "job", schedule='type = "expression"\nexpression = "*-*-* 09:00"')
    assert dotagent("run-now", "job", env=cli_env).returncode == 0  # the state dir exists
    before = _status_json(cli_env)
    cache = dotagent_home / "state" / "api-agents.json"
    raw = cache.read_text()
    assert '"hours": []' in raw and '"interval_minutes": null' in raw, raw[:300]
    damaged = (raw.replace('"hours": []', '"hours": "x"')  # crashed formatting
               .replace('"timezone": null', '"timezone": "Not/AZone"')  # crashed zoneinfo
               .replace('"problems": []', '"problems": [5]'))  # crashed the renderer
    assert damaged != raw
    for body in (damaged, raw.replace('"interval_minutes": null', '"interval_minutes": 0')
                 .replace('"type": "expression"', '"type": "interval"')):  # divided by 0
        cache.write_text(body)
        for args in (["status"], ["status", "--json"], ["next"], ["next", "--json"]):
            p = dotagent(*args, env=cli_env)
            assert p.returncode == 0 and p.stderr == "", (args, p.stderr)
        assert _status_json(cli_env)["schedules"] == before["schedules"]
        nxt = json.loads(dotagent("next", "-n", "1", "--json", env=cli_env).stdout)
        assert "T09:00:00" in nxt[0]["at"] and nxt[0]["kind"] == "window", nxt


def test_logs_follow_with_stdout_closed_ends_at_once(dotagent_home: Path,
                                                      cli_env: dict[str, str]) -> None:
    # `dotagent logs -f >&-`: nobody can ever read it, so following would only burn a poll
    # every 0.2 s for ever (as `tail -f >&-` does not: it fails at its first write).
    _agent(dotagent_home, "job")
    assert dotagent("run-now", "job", env=cli_env).returncode == 0
    for args in (["logs", "-f", "job"], ["logs", "-f"]):
        p = subprocess.run([DOTAGENT, *args], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, env=cli_env, timeout=10,
                           check=False, preexec_fn=lambda: os.close(1))
        assert (p.returncode, p.stderr) == (0, ""), args


def test_status_after_kill_9_names_the_runs_left_running(dotagent_home: Path,
                                                         cli_env: dict[str, str]) -> None:
    # A real daemon starts a long run and is killed with SIGKILL: its agent keeps running
    # in its own process group. status said "not running" and listed nothing, as if nothing
    # ran; it now names the run left behind (and the next daemon reaps it, as before).
    import signal
    import time

    write_agent(dotagent_home / "agents", "slow", """
        [agent]
        name = "slow"
        timeout_seconds = 120
        [run]
        command = "/bin/sh"
        args = ["-c", "echo started; sleep 60"]
        [[schedules]]
        id = "main"
        type = "interval"
        interval_minutes = 60
        """)
    daemon = subprocess.Popen([DOTAGENT, "daemon"], env=cli_env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid = None
    try:
        deadline = time.monotonic() + 30
        while pid is None and time.monotonic() < deadline:
            running = _status_json(cli_env)["running"]
            pid = running[0]["pid"] if running else None
            time.sleep(0.1)
        assert pid is not None, "the daemon never started the agent"
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
        status = _status_json(cli_env)
        assert status["daemon"]["running"] is False and status["running"] == []
        [note] = status["notes"]
        assert note.startswith("still running, left by a daemon that did not stop cleanly: "
                               f"slow.main (pid {pid}, since "), note
        text = dotagent("status", env=cli_env).stdout
        assert f"slow.main (pid {pid}" in text
        os.killpg(pid, signal.SIGKILL)  # the orphan is gone: nothing to say any more
        deadline = time.monotonic() + 10
        while _status_json(cli_env)["notes"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _status_json(cli_env)["notes"] == []
    finally:
        if daemon.poll() is None:
            daemon.kill()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
