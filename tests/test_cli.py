from __future__ import annotations

import json
from pathlib import Path

from dotagent import __version__

from helpers import dotagent, simple_agent


def test_version(cli_env: dict[str, str]) -> None:
    for flag in ("--version", "-V"):
        p = dotagent(flag, env=cli_env)
        assert (p.returncode, p.stdout) == (0, f"dotagent {__version__}\n")


def test_version_does_not_import_heavy_modules() -> None:
    import subprocess
    import sys

    code = ("import sys; from dotagent.cli import main; main(['--version']); "
            "print(sorted(m for m in ('click','pydantic','rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().endswith("[]")


def test_help_lists_commands(cli_env: dict[str, str]) -> None:
    p = dotagent("--help", env=cli_env)
    assert p.returncode == 0
    for cmd in ("run", "doctor"):
        assert f"  {cmd}" in p.stdout


def test_usage_error_exits_2(cli_env: dict[str, str]) -> None:
    p = dotagent("run", env=cli_env)
    assert p.returncode == 2 and "Missing argument 'NAME'" in p.stderr
    p = dotagent("no-such-command", env=cli_env)
    assert p.returncode == 2


def test_errors_have_no_traceback_unless_debug(cli_env: dict[str, str]) -> None:
    p = dotagent("run", "nobody", env=cli_env)
    assert p.returncode == 66  # EX_NOINPUT: run passes agent statuses through (S15.10)
    assert p.stderr.startswith("Error: agent not found: 'nobody'")
    assert "Traceback" not in p.stderr
    p = dotagent("--debug", "run", "nobody", env=cli_env)
    assert p.returncode == 66
    assert "Traceback (most recent call last)" in p.stderr
    assert "Error: agent not found: 'nobody'" in p.stderr


def test_home_option_overrides_env(tmp_path: Path, cli_env: dict[str, str]) -> None:
    other = tmp_path / "other-home"
    simple_agent(other / "agents", "homed", "true", [])
    p = dotagent("--home", str(other), "run", "homed", env=cli_env)
    assert p.returncode == 0, p.stderr
    assert (other / "state/agents/homed/default.heartbeat.json").exists()


def test_schedule_may_be_omitted_only_when_unambiguous(tmp_path: Path,
                                                       cli_env: dict[str, str]) -> None:
    root = tmp_path / "r"
    d = simple_agent(root, "two", "true", [])
    (d / "agent.toml").write_text((d / "agent.toml").read_text() +
                                  '\n[[schedules]]\nid = "other"\ntype = "interval"\n'
                                  'interval_minutes = 5\nargs = ["x"]\n')
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = dotagent("run", "two", env=cli_env)
    assert p.returncode == 2  # a usage mistake
    assert "choose one with --schedule ('main', 'other')" in p.stderr


def test_doctor_json_and_exit_codes(tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = tmp_path / "r"
    simple_agent(root, "fine", "true", [], extra="")
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = dotagent("doctor", "--json", env=cli_env)
    assert p.returncode == 0, p.stdout
    report = json.loads(p.stdout)
    assert report["ok"] is True and report["summary"]["agents"] == 1
    [m] = report["manifests"]
    assert m["name"] == "fine" and m["status"] == "warnings"
    assert [w["message"][:23] for w in m["warnings"]] == ["no [security] section: "]
    (root / "bad").mkdir()
    (root / "bad" / "agent.toml").write_text('[agent]\nname = "bad"\n')
    p = dotagent("doctor", "--json", env=cli_env)
    assert p.returncode == 1
    report = json.loads(p.stdout)
    assert report["ok"] is False
    bad = next(m for m in report["manifests"] if m["declared_name"] == "bad")
    assert bad["status"] == "errors"
    assert {e["field"] for e in bad["errors"]} == {"run", "schedules"}


def test_doctor_warns_on_clamps_missing_command_and_shared_slug(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = tmp_path / "r"
    d = simple_agent(root, "risky", "definitely-not-installed-cmd", [],
                     extra="[defaults]\nmax_retries = 1000000\n")
    (d / "agent.toml").write_text((d / "agent.toml").read_text() +
                                  '\n[[schedules]]\nid = "twin"\ntype = "interval"\n'
                                  'interval_minutes = 5\n')
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = dotagent("doctor", env=cli_env)
    assert p.returncode == 0
    assert "defaults.max_retries: 1000000 → 32" in p.stdout
    assert "run.command: command not found: definitely-not-installed-cmd" in p.stdout
    assert "derives the same slug 'default' as 'main'" in p.stdout
    assert "no [security] section" in p.stdout
    assert "summary: 1 agent(s), 0 error(s), 4 warning(s)" in p.stdout


def test_doctor_explains_schedules_and_rejects_bad_expressions(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = tmp_path / "r"
    d = simple_agent(root, "cal", "true", [])
    toml = d / "agent.toml"
    toml.write_text(toml.read_text() + '\n[security]\n\n[[schedules]]\nid = "past"\n'
                    'type = "expression"\nexpression = "2001-01-01 00:00"\nargs = ["p"]\n'
                    '\n[[schedules]]\nid = "berlin"\ntype = "cron"\nweekdays = [1, 5]\n'
                    'hours = [8, 18]\nminute = 30\ntimezone = "Europe/Berlin"\nargs = ["b"]\n')
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = dotagent("doctor", "--json", env=cli_env)
    assert p.returncode == 0, p.stdout
    [m] = json.loads(p.stdout)["manifests"]
    by_id = {s["id"]: s for s in m["schedules"]}
    assert by_id["berlin"]["expression"] == "Mon,Fri *-*-* 08,18:30:00"
    from datetime import datetime
    from zoneinfo import ZoneInfo

    nxt = datetime.fromisoformat(by_id["berlin"]["next_fire"]).astimezone(
        ZoneInfo("Europe/Berlin"))
    assert nxt.strftime("%a %H:%M") in ("Mon 08:30", "Mon 18:30", "Fri 08:30", "Fri 18:30")
    assert by_id["past"]["next_fire"] is None
    assert by_id["main"]["next_fire"] is not None  # never-started interval: due now
    assert any("has no future elapse" in w["message"] for w in m["warnings"])
    toml.write_text(toml.read_text().replace('"2001-01-01 00:00"', '"Mon *-*-* 25:00"'))
    p = dotagent("doctor", env=cli_env)
    assert p.returncode == 1
    assert "schedules[1].expression: invalid calendar expression 'Mon *-*-* 25:00'" in p.stdout
    toml.write_text(toml.read_text().replace('"Mon *-*-* 25:00"', '"daily UTC"').replace(
        'args = ["p"]', 'args = ["p"]\ntimezone = "Asia/Tokyo"'))
    p = dotagent("doctor", env=cli_env)
    assert p.returncode == 1 and "has its own time zone and `timezone` is also set" in p.stdout


def test_unusable_state_directory_is_a_clean_error(tmp_path: Path,
                                                   cli_env: dict[str, str]) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    root = tmp_path / "r"
    simple_agent(root, "any", "true", [])
    cli_env.update(DOTAGENT_HOME=str(blocker), DOTAGENT_ROOT=str(root))
    p = dotagent("run", "any", env=cli_env)
    assert p.returncode == 73  # EX_CANTCREAT: dotagent's state, not the agent's status
    assert p.stderr.startswith(f"Error: cannot create directory {blocker}/state (to lock ")
    assert "Traceback" not in p.stderr


def test_duplicate_name_error_has_line_and_declared_name(tmp_path: Path,
                                                         cli_env: dict[str, str]) -> None:
    r1, r2 = tmp_path / "r1", tmp_path / "r2"
    a = simple_agent(r1, "same", "true", [])
    b = simple_agent(r2, "same", "true", [])
    cli_env["DOTAGENT_ROOT"] = f"{r1}:{r2}"
    p = dotagent("doctor", env=cli_env)
    assert p.returncode == 1
    assert f"✗ 'same': manifest has errors ({b}/agent.toml)" in p.stdout
    assert (f"{b}/agent.toml:2: agent.name: 'same' is already used by {a}/agent.toml, which "
            "keeps running") in p.stdout


def test_completion_lists_agents_and_honours_home(tmp_path: Path,
                                                   cli_env: dict[str, str]) -> None:
    other = tmp_path / "other"
    simple_agent(other / "agents", "gamma", "true", [])
    simple_agent(other / "agents", "gizmo", "true", [])
    env = dict(cli_env, _DOTAGENT_COMPLETE="bash_complete",
               COMP_WORDS=f"dotagent --home {other} run g", COMP_CWORD="4")
    p = dotagent(env=env)
    assert p.returncode == 0
    assert p.stdout.split() == ["plain,gamma", "plain,gizmo"]


def test_help_does_not_load_the_manifest_model() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom dotagent.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('pydantic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().endswith("False")


def test_unusual_manifest_values_never_stop_the_others(tmp_path: Path,
                                                       cli_env: dict[str, str]) -> None:
    root = tmp_path / "r"
    simple_agent(root, "good", "true", [])
    d = simple_agent(root, "zone", "true", [])
    (d / "agent.toml").write_text((d / "agent.toml").read_text().replace(
        'type = "interval"\ninterval_minutes = 60', 'type = "cron"\nweekdays = [1]\nhours = [8]'
        '\ntimezone = "America"'))
    simple_agent(root, "tilde", "~nosuchuser-xyz/bin/tool", [])
    simple_agent(root, "long", "true", [])
    long_toml = root / "long/agent.toml"
    long_toml.write_text(long_toml.read_text().replace(
        "[run]", f'[run]\nworking_dir = "{"x" * 5000}"'))
    simple_agent(root, "nul", "true", ["a\x00b"])
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = dotagent("doctor", env=cli_env)
    assert p.returncode == 1 and "Traceback" not in p.stderr and "internal error" not in p.stderr
    assert "schedules[0].timezone: 'America' is not a known time zone" in p.stdout
    assert "run.args[0]: contains a NUL character" in p.stdout
    assert "'good': manifest ok" in p.stdout
    for name, code in (("good", 0), ("tilde", 127), ("long", 126)):
        r = dotagent("run", name, env=cli_env)
        assert r.returncode == code, (name, r.stderr)
        assert "internal error" not in r.stderr


def test_non_utf8_agent_directory_runs_and_is_recorded(tmp_path: Path,
                                                       cli_env: dict[str, str],
                                                       dotagent_home: Path) -> None:
    import os

    root = tmp_path / "r"
    d = simple_agent(root, "bytes", "true", [])
    os.rename(d, os.fsencode(root) + b"/bad\xffname")
    cli_env["DOTAGENT_ROOT"] = str(root)
    for _ in range(2):
        p = dotagent("run", "bytes", env=cli_env)
        assert p.returncode == 0, p.stderr
    log = (dotagent_home / "audit.log").read_text()
    assert "manifest_cache_missing" not in log and log.count("agent_run") == 2
    json.loads((dotagent_home / "state/known_manifests.json").read_text())
