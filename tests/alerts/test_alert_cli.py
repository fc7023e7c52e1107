"""`dotagent daily-summary [--dry-run]` and `dotagent snooze` as real processes."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

from helpers import dotagent, write_agent

FAILING = """
[agent]
name = "{name}"
[run]
command = "/bin/false"
[[schedules]]
id = "main"
type = "interval"
interval_minutes = 60
"""


def _agents(home: Path) -> None:
    for name in ("alpha", "beta"):
        write_agent(home / "agents", name, FAILING.format(name=name))


def test_dry_run_prints_body_and_drivers(dotagent_home: Path, cli_env: dict[str, str]) -> None:
    _agents(dotagent_home)
    (dotagent_home / "config.toml").write_text(
        '[[daily_summary.notifiers]]\ndriver = "ntfy"\ntopic = "t"\nevents = ["x"]\n'
        '[[daily_summary.notifiers]]\ndriver = "desktop"\n')
    p = dotagent("daily-summary", "--dry-run", env=cli_env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("📊 Agents · 20")
    assert lines[1:] == ["0/2 ok", "🕑 Stale:", "  · alpha/main — never ran",
                         "  · beta/main — never ran", "→ would deliver to: ntfy, desktop"]


def test_dry_run_defaults_to_desktop(dotagent_home: Path, cli_env: dict[str, str]) -> None:
    p = dotagent("daily-summary", "--dry-run", env=cli_env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[1:] == ["0/0 ok", "→ would deliver to: desktop"]


def test_summary_is_delivered_and_waited_for(dotagent_home: Path, cli_env: dict[str, str],
                                             tmp_path: Path) -> None:
    _agents(dotagent_home)
    record = tmp_path / "calls.jsonl"
    exe = tmp_path / "bin" / "notify-send"
    exe.parent.mkdir()
    exe.write_text(f"#!{sys.executable}\nimport json, sys\n"
                   f"open({str(record)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    exe.chmod(0o755)
    cli_env["PATH"] = f"{exe.parent}:{cli_env['PATH']}"
    p = dotagent("daily-summary", env=cli_env)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "daily summary sent to: desktop\n"
    (argv,) = [json.loads(line) for line in record.read_text().splitlines()]
    assert argv[-1].splitlines()[1:] == ["0/2 ok", "🕑 Stale:", "  · alpha/main — never ran",
                                          "  · beta/main — never ran"]


def test_broken_config_is_located(dotagent_home: Path, cli_env: dict[str, str]) -> None:
    (dotagent_home / "config.toml").write_text('[quiet_hours]\nstart = "22:00"\nend = 7\n')
    p = dotagent("daily-summary", "--dry-run", env=cli_env)
    assert p.returncode == 1  # sysexits only where an agent's status passes through
    assert "config.toml:3: quiet_hours.end:" in p.stderr
    assert "Traceback" not in p.stderr


def test_snooze_writes_state_and_audits(dotagent_home: Path, cli_env: dict[str, str]) -> None:
    _agents(dotagent_home)
    p = dotagent("snooze", "alpha", "2h", env=cli_env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("alerts of alpha snoozed until ")
    path = dotagent_home / "state" / "notify" / "snoozes.json"
    assert list(json.loads(path.read_text())["snoozes"]) == ["alpha"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    p = dotagent("snooze", "beta", "30m", "--schedule", "main", env=cli_env)
    assert p.returncode == 0, p.stderr
    assert sorted(json.loads(path.read_text())["snoozes"]) == ["alpha", "beta/main"]
    p = dotagent("snooze", "alpha", "off", env=cli_env)
    assert p.stdout == "alerts of alpha are no longer snoozed\n"
    assert list(json.loads(path.read_text())["snoozes"]) == ["beta/main"]
    lines = [json.loads(x)["event"] for x in
             (dotagent_home / "audit.log").read_text().splitlines()]
    snoozed = [e for e in lines if e["event_type"] == "agent_snoozed"]
    assert [(e["agent"], e["schedule"], e["reason"]) for e in snoozed] == [
        ("alpha", "", "snoozed for 2h"), ("beta", "main", "snoozed for 30m"),
        ("alpha", "", "lifted")]
    assert snoozed[-1]["until_iso"] == "" and snoozed[0]["until_iso"]


def test_snooze_refusals(dotagent_home: Path, cli_env: dict[str, str]) -> None:
    _agents(dotagent_home)
    p = dotagent("snooze", "alpha", "soon", env=cli_env)
    assert p.returncode == 2 and "invalid DURATION 'soon'" in p.stderr
    p = dotagent("snooze", "ghost", "1h", env=cli_env)
    assert p.returncode == 1 and "agent not found: 'ghost'" in p.stderr
    p = dotagent("snooze", "alpha", "1h", "--schedule", "nope", env=cli_env)
    assert p.returncode == 1 and "schedule id not found" in p.stderr
    assert not (dotagent_home / "state" / "notify" / "snoozes.json").exists()


def test_summary_goes_through_the_outbox_to_any_driver(dotagent_home: Path,
                                                      cli_env: dict[str, str]) -> None:
    # Not only desktop: a webhook gets the summary over real HTTP, `${VAR}` comes from the
    # secrets store, and each delivery is audited like any notifier's.
    import sys as _sys
    _sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from notify_kit import http_endpoint

    _agents(dotagent_home)
    secrets = dotagent_home / "secrets.env"
    secrets.write_text("HOOK_TOKEN=s3cr3t-hook-token\n")
    secrets.chmod(0o600)
    with http_endpoint() as endpoint:
        (dotagent_home / "config.toml").write_text(
            '[[daily_summary.notifiers]]\ndriver = "webhook"\n'
            f'url = "{endpoint.url}/hook/${{HOOK_TOKEN}}"\n')
        p = dotagent("daily-summary", env=cli_env)
        assert p.returncode == 0, p.stderr
        assert p.stdout == "daily summary sent to: webhook\n"
        (req,) = endpoint.requests
    assert req.method == "POST" and req.path == "/hook/s3cr3t-hook-token"
    body = json.loads(req.body)
    assert "0/2 ok" in json.dumps(body, ensure_ascii=False)
    audit = (dotagent_home / "audit.log").read_text()
    assert '"plugin":"notifier:webhook","plugin_kind":"notify","ok":true' in audit
    assert "s3cr3t-hook-token" not in audit


def test_summary_that_reaches_nobody_fails(dotagent_home: Path,
                                          cli_env: dict[str, str]) -> None:
    import sys as _sys
    _sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from notify_kit import http_endpoint

    with http_endpoint() as endpoint:
        endpoint.status = 500
        (dotagent_home / "config.toml").write_text(
            f'[[daily_summary.notifiers]]\ndriver = "webhook"\nurl = "{endpoint.url}/x"\n')
        p = dotagent("daily-summary", env=cli_env)
    assert p.returncode == 1
    assert "daily summary not delivered to: webhook" in p.stderr
    assert '"event_type":"notifier_failed"' in (dotagent_home / "audit.log").read_text()
