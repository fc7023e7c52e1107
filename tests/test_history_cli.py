"""`dotagent history`: runs recorded by real `run-now` runs, read back by the real CLI."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from dotagent.paths import Home
from dotagent.state.history import History

from helpers import dotagent, sh_agent

PAD = "x" * 25
RUN_KEYS = {"id", "agent", "schedule", "source", "started_at", "finished_at", "exit_code",
            "timed_out", "outcome", "attempt", "duration_seconds"}


agent = sh_agent


def setup(tmp_path: Path, cli_env: dict[str, str]) -> Path:
    root = tmp_path / "agents"
    cli_env["DOTAGENT_ROOT"] = str(root)
    return root


def run_now(cli_env: dict[str, str], name: str, *extra: str) -> None:
    p = dotagent("run-now", name, *extra, env=cli_env)
    assert p.returncode == 0, p.stdout + p.stderr


def history_json(cli_env: dict[str, str], *args: str) -> list[dict[str, object]]:
    p = dotagent("history", *args, "--json", env=cli_env)
    assert p.returncode == 0, p.stderr
    out: list[dict[str, object]] = json.loads(p.stdout)
    return out


def test_runs_newest_first_with_every_key_and_filter(tmp_path: Path,
                                                     cli_env: dict[str, str]) -> None:
    root = setup(tmp_path, cli_env)
    agent(root, "good", "echo fine; sleep 0.1")
    agent(root, "bad", "echo broken >&2; exit 3")
    run_now(cli_env, "good")
    run_now(cli_env, "bad")
    run_now(cli_env, "good")

    runs = history_json(cli_env)
    assert [(r["agent"], r["exit_code"], r["outcome"]) for r in runs] == [
        ("good", 0, "ok"), ("bad", 3, "failed"), ("good", 0, "ok")]
    assert [r["id"] for r in runs] == [3, 2, 1]
    for r in runs:
        assert set(r) == RUN_KEYS
        assert (r["schedule"], r["source"], r["attempt"], r["timed_out"]) == (
            "main", "run-now", 1, False)
        started = datetime.fromisoformat(str(r["started_at"]))
        finished = datetime.fromisoformat(str(r["finished_at"]))
        assert started.tzinfo is not None and finished >= started
        assert isinstance(r["duration_seconds"], float)
        assert abs((finished - started).total_seconds() - r["duration_seconds"]) < 0.002
    starts = [datetime.fromisoformat(str(r["started_at"])) for r in runs]
    assert starts == sorted(starts, reverse=True)

    assert [r["id"] for r in history_json(cli_env, "good")] == [3, 1]
    assert [r["id"] for r in history_json(cli_env, "--failed")] == [2]
    assert [r["id"] for r in history_json(cli_env, "good", "--failed")] == []
    assert [r["id"] for r in history_json(cli_env, "-n", "1")] == [3]
    assert [r["id"] for r in history_json(cli_env, "bad", "--schedule", "main")] == [2]

    # --since: an ISO instant (the second run's start) and a duration back from now.
    assert [r["id"] for r in history_json(cli_env, "--since", str(runs[1]["started_at"]))] \
        == [3, 2]
    assert [r["id"] for r in history_json(cli_env, "--since", "1h")] == [3, 2, 1]
    tomorrow = (datetime.now() + timedelta(days=1)).date().isoformat()
    assert history_json(cli_env, "--since", tomorrow) == []
    p = dotagent("history", "--since", "soon", env=cli_env)
    assert p.returncode == 2 and "'--since'" in p.stderr and "Traceback" not in p.stderr

    plain = dotagent("history", env=cli_env)
    assert plain.returncode == 0
    lines = plain.stdout.splitlines()
    assert lines[0].split() == ["ID", "STARTED", "AGENT/SCHEDULE", "SOURCE", "TRY", "OUTCOME",
                                "EXIT", "DURATION"]
    assert lines[2].split()[0] == "2" and "bad/main" in lines[2] and "failed" in lines[2]
    assert "\x1b[" not in plain.stdout


def test_unknown_agent_or_schedule_is_a_clear_error(tmp_path: Path,
                                                    cli_env: dict[str, str]) -> None:
    root = setup(tmp_path, cli_env)
    agent(root, "quiet", "true")
    assert history_json(cli_env, "quiet") == []  # declared, never ran: an empty list
    p = dotagent("history", "nope", env=cli_env)
    assert p.returncode == 1 and p.stderr.startswith("Error: agent not found: 'nope'")
    p = dotagent("history", "quiet", "--schedule", "weekly", env=cli_env)
    assert p.returncode == 1
    assert "schedule id not found: 'weekly' (agent 'quiet' has: 'main')" in p.stderr
    p = dotagent("history", "show", "x", env=cli_env)
    assert p.returncode == 2 and "a run ID is a number" in p.stderr
    p = dotagent("history", "show", "7", env=cli_env)
    assert p.returncode == 1 and "run 7 is not in the history" in p.stderr
    p = dotagent("history", "show", "7", "--failed", env=cli_env)
    assert p.returncode == 2 and "--failed does not apply" in p.stderr


def test_show_prints_the_whole_multiline_output(tmp_path: Path,
                                                cli_env: dict[str, str]) -> None:
    root = setup(tmp_path, cli_env)
    # 300 stderr lines: far more than the 4 KiB of stderr the history row keeps.
    agent(root, "chatty", f"echo first; i=1; while [ $i -le 300 ]; do echo \"err $i {PAD}\" >&2; "
                          "i=$((i+1)); done; echo last; exit 4")
    run_now(cli_env, "chatty")
    run_now(cli_env, "chatty")
    p = dotagent("history", "show", "1", env=cli_env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert re.fullmatch(r"=== \S+ run started · schedule=main · slug=default ===", lines[0])
    body = lines[1:303]  # the two streams come in arrival order: each in its own order
    assert [x for x in body if x.startswith("[stderr] ")] == [
        f"[stderr] err {i} {PAD}" for i in range(1, 301)]
    assert [x for x in body if not x.startswith("[stderr] ")] == ["first", "last"]
    assert re.fullmatch(r"=== \S+ run finished · exit=4 · \S+s ===", lines[303])
    assert len(lines) == 304  # run 1 only, not run 2 after it
    assert "run 1 ('chatty', schedule 'main'): its output in the agent's log (chatty.log)" \
        in p.stderr

    shown = json.loads(dotagent("history", "show", "2", "--json", env=cli_env).stdout)
    assert set(shown) == {"run", "source", "files", "complete", "output"}
    assert set(shown["run"]) == RUN_KEYS and shown["run"]["id"] == 2
    assert (shown["source"], shown["files"], shown["complete"]) == (
        "log", ["chatty.log"], True)
    second = shown["output"].splitlines()
    assert len(second) == 304 and second[0].startswith("=== ") and "exit=4" in second[-1]
    assert [x for x in second if x.startswith("[stderr] ")] == [
        f"[stderr] err {i} {PAD}" for i in range(1, 301)]

    # Once the log is gone, what the history row keeps: the end of stderr.
    for f in (Home(Path(cli_env["DOTAGENT_HOME"])).root / "logs/agents/chatty").iterdir():
        f.unlink()
    gone = dotagent("history", "show", "1", env=cli_env)
    assert gone.returncode == 0
    assert "no longer in the agent's log; the end of its stderr" in gone.stderr
    assert gone.stdout.splitlines()[-1] == f"err 300 {PAD}"
    assert f"err 1 {PAD}" not in gone.stdout  # only a tail is kept
    data = json.loads(dotagent("history", "show", "1", "--json", env=cli_env).stdout)
    assert (data["source"], data["files"], data["complete"]) == ("stderr_tail", [], False)


def test_show_follows_a_run_across_a_rotation(tmp_path: Path, dotagent_home: Path,
                                              cli_env: dict[str, str]) -> None:
    root = setup(tmp_path, cli_env)
    (dotagent_home / "config.toml").write_text("[logging]\nagent_log_max_mb = 1\n")
    # About 1.6 MiB: the log rotates in the middle of the run.
    agent(root, "flood", "echo start; seq 1 200000; echo end")
    run_now(cli_env, "flood")
    data = json.loads(dotagent("history", "show", "1", "--json", env=cli_env).stdout)
    assert data["complete"] is True
    assert len(data["files"]) == 2
    assert data["files"][0].startswith("flood.log.") and data["files"][1] == "flood.log"
    lines = data["output"].splitlines()
    assert lines[1] == "start" and lines[-2] == "end"
    numbers = [line for line in lines[2:-2] if not line.startswith("[dotagent] log rotated")]
    assert numbers == [str(i) for i in range(1, 200001)]
    assert any(line.startswith("[dotagent] log rotated; this run's earlier output is in "
                               f"{data['files'][0]}") for line in lines)


def test_stats_from_durations_we_control(tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = setup(tmp_path, cli_env)
    control = tmp_path / "sleep-for"
    agent(root, "timed", f'sleep "$(cat {control})"; exit "$(cat {control}.exit)"')
    agent(root, "other", "true")
    plan = [(0.1, 0), (0.5, 0), (0.3, 0), (0.9, 0), (0.2, 0), (0.4, 1)]
    for seconds, code in plan:
        control.write_text(str(seconds))
        control.with_name("sleep-for.exit").write_text(str(code))
        run_now(cli_env, "timed")
    run_now(cli_env, "other")

    p = dotagent("history", "--stats", "--json", env=cli_env)
    assert p.returncode == 0, p.stderr
    stats = json.loads(p.stdout)
    assert [(s["agent"], s["schedule"]) for s in stats] == [("other", "main"), ("timed", "main")]
    timed = stats[1]
    assert set(timed) == {"agent", "schedule", "runs", "ok", "failed", "interrupted", "running",
                          "success_rate", "p50_seconds", "p95_seconds"}
    assert (timed["runs"], timed["ok"], timed["failed"], timed["interrupted"],
            timed["running"]) == (6, 5, 1, 0, 0)
    assert timed["success_rate"] == round(5 / 6, 4)
    # Nearest rank over six durations: p50 is the 3rd (0.3 s), p95 the 6th (0.9 s). Each
    # measured duration is the sleep plus a shell's start (a few ms, well under 0.1 s).
    assert 0.3 <= timed["p50_seconds"] < 0.38
    assert 0.9 <= timed["p95_seconds"] < 0.98
    only = json.loads(dotagent("history", "timed", "--stats", "--json", env=cli_env).stdout)
    assert [s["agent"] for s in only] == ["timed"]

    table = dotagent("history", "--stats", env=cli_env).stdout.splitlines()
    assert table[0].split() == ["AGENT/SCHEDULE", "RUNS", "OK", "FAILED", "SUCCESS", "P50",
                                "P95"]
    assert table[2].split()[:5] == ["timed/main", "6", "5", "1", "83.3%"]
    p = dotagent("history", "--stats", "-n", "3", env=cli_env)
    assert p.returncode == 2 and "-n does not apply to `history --stats`" in p.stderr


def test_the_table_fits_the_terminal(tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = setup(tmp_path, cli_env)
    long = "an-agent-with-a-rather-long-name-for-a-narrow-terminal"
    agent(root, long, "true")
    run_now(cli_env, long)
    cli_env["COLUMNS"] = "80"
    p = dotagent("history", env=cli_env)
    assert p.returncode == 0
    assert all(len(line) <= 80 for line in p.stdout.splitlines()), p.stdout
    assert "…" in p.stdout
    cli_env["COLUMNS"] = "200"
    assert f"{long}/main" in dotagent("history", env=cli_env).stdout


def test_one_agents_query_walks_an_index(tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = setup(tmp_path, cli_env)
    agent(root, "indexed", "true")
    run_now(cli_env, "indexed")
    with History(Home(Path(cli_env["DOTAGENT_HOME"]))) as history:
        for query in ({"agent": "indexed"}, {"agent": "indexed", "since": 0.0},
                      {"agent": "indexed", "failed_only": True},
                      {"agent": "indexed", "schedule": "main"}, {}):
            plan = " / ".join(history.query_plan(**query))
            assert "USING INDEX" in plan, (query, plan)
            assert "TEMP B-TREE" not in plan, (query, plan)  # newest first without a sort
        assert "runs_by_agent" in " ".join(history.query_plan(agent="indexed"))


def test_a_version_1_database_gains_the_index(tmp_path: Path) -> None:
    db = tmp_path / "state" / "history.sqlite3"
    db.parent.mkdir(mode=0o700)
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, agent TEXT NOT NULL,
            schedule TEXT NOT NULL, slug TEXT NOT NULL, window_at REAL, source TEXT NOT NULL,
            attempt INTEGER NOT NULL, started_at REAL NOT NULL, finished_at REAL,
            exit_code INTEGER, timed_out INTEGER NOT NULL DEFAULT 0, outcome TEXT NOT NULL,
            stderr_tail TEXT, manifest_sha256 TEXT, log_path TEXT, log_start INTEGER,
            log_end INTEGER, owner_pid INTEGER);
        CREATE INDEX runs_by_start ON runs (started_at);
        CREATE INDEX runs_by_schedule ON runs (agent, schedule, started_at);
        INSERT INTO runs (agent, schedule, slug, source, attempt, started_at, finished_at,
                          exit_code, outcome) VALUES ('old', 'main', 'default', 'daemon', 1,
                          100.0, 101.5, 0, 'ok');
        PRAGMA user_version = 1;
    """)
    conn.close()
    with History(Home(tmp_path)) as history:
        [row] = history.query(agent="old")
        assert (row.agent, row.duration_seconds) == ("old", 1.5)
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA user_version").fetchone()[0] == 2
    names = {r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "runs_by_agent" in names
    check.close()


def test_the_documented_json_examples_have_the_keys_asserted_here() -> None:
    from conftest import REPO

    text = (REPO / "docs/cli.md").read_text()
    section = text.split("## `dotagent history", 1)[1].split("## `dotagent logs", 1)[0]
    runs, stats, shown = [json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", section,
                                                               re.S)]
    assert set(runs[0]) == RUN_KEYS and set(shown["run"]) == RUN_KEYS
    assert set(stats[0]) == {"agent", "schedule", "runs", "ok", "failed", "interrupted",
                             "running", "success_rate", "p50_seconds", "p95_seconds"}
    assert set(shown) == {"run", "source", "files", "complete", "output"}


def test_show_a_run_still_going_on(tmp_path: Path, cli_env: dict[str, str]) -> None:
    import subprocess
    import time

    from helpers import DOTAGENT

    root = setup(tmp_path, cli_env)
    flag = tmp_path / "go"
    agent(root, "slow", f"echo started; while [ ! -e {flag} ]; do sleep 0.05; done; echo done")
    proc = subprocess.Popen([DOTAGENT, "run", "slow"], env=cli_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            runs = history_json(cli_env, "slow")
            shown = dotagent("history", "show", "1", "--json", env=cli_env)
            if runs and shown.returncode == 0 and "started" in json.loads(shown.stdout)["output"]:
                break
            assert time.monotonic() < deadline, "the run never showed up"
            time.sleep(0.1)
        assert runs[0]["outcome"] == "running" and runs[0]["finished_at"] is None
        assert runs[0]["exit_code"] is None and runs[0]["duration_seconds"] is None
        data = json.loads(shown.stdout)
        assert (data["source"], data["complete"]) == ("log", False)
        assert data["output"].splitlines()[1:] == ["started"]
        note = dotagent("history", "show", "1", env=cli_env).stderr
        assert "still running" in note
    finally:
        flag.touch()
        assert proc.wait(timeout=20) == 0
    data = json.loads(dotagent("history", "show", "1", "--json", env=cli_env).stdout)
    assert data["complete"] is True and data["output"].splitlines()[1:3] == ["started", "done"]
    assert data["run"]["outcome"] == "ok"


def test_a_home_where_nothing_ran_gets_no_database(tmp_path: Path,
                                                   cli_env: dict[str, str]) -> None:
    root = setup(tmp_path, cli_env)
    agent(root, "idle", "true")
    assert history_json(cli_env) == [] and history_json(cli_env, "idle") == []
    assert history_json(cli_env, "--stats") == []
    assert dotagent("history", "ghost", env=cli_env).returncode == 1
    assert dotagent("history", "show", "1", env=cli_env).returncode == 1
    assert not (Path(cli_env["DOTAGENT_HOME"]) / "state" / "history.sqlite3").exists()
