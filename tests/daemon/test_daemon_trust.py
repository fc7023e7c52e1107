"""A real daemon with `[trust] require_signed_manifests = true`: it runs the signed agent,
leaves the unsigned one alone, audits `manifest_signature_invalid` once and tells the
daemon-wide notifier; editing the signed manifest stops it, signing the other lets it run
(the daemon notices the new agent.toml.minisig without waiting for a rescan)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from daemon_kit import DOTAGENT, DaemonFactory, events_of, history_rows, wait_for, write_agent

HOURLY = 'type = "interval"\ninterval_minutes = 60'


def _notify_send(daemon_env: dict[str, str], tmp_path: Path) -> Path:
    record = tmp_path / "notify-send.jsonl"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "notify-send"
    exe.write_text(f"#!{sys.executable}\nimport json, sys\n"
                   f"with open({str(record)!r}, 'a') as f:\n"
                   "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n")
    exe.chmod(0o755)
    daemon_env["PATH"] = f"{bin_dir}:{daemon_env['PATH']}"
    return record


def _calls(record: Path) -> list[list[str]]:
    if not record.exists():
        return []
    return [json.loads(x) for x in record.read_text().splitlines() if x.strip()]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOTAGENT, *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def _finished(home: Path, agent: str) -> list[dict[str, object]]:
    return [r for r in history_rows(home, agent) if r["finished_at"] is not None]


def test_the_daemon_runs_only_signed_agents(home: Path, daemons: DaemonFactory,
                                            daemon_env: dict[str, str],
                                            tmp_path: Path) -> None:
    record = _notify_send(daemon_env, tmp_path)
    made = _cli(daemon_env, "key", "generate", "--no-password")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    (home / "config.toml").write_text(
        "[daemon]\nshutdown_grace_seconds = 1\n[daily_summary]\nenabled = false\n"
        f'[trust]\nrequire_signed_manifests = true\ntrusted_public_keys = ["{key}"]\n'
        '[[notifiers]]\ndriver = "desktop"\nevents = ["manifest_signature_invalid"]\n')
    signed = write_agent(home / "agents", "signed", schedule=HOURLY,
                         script=f"echo x >> {home / 'signed.ran'}\n")
    write_agent(home / "agents", "unsigned", schedule=HOURLY,
                script=f"echo x >> {home / 'unsigned.ran'}\n")
    assert _cli(daemon_env, "sign", "signed").returncode == 0
    daemon = daemons()
    daemon.start()
    wait_for(lambda: _finished(home, "signed"), 30, "the signed agent's run")
    (event,) = wait_for(lambda: events_of(home, "manifest_signature_invalid",
                                          agent="unsigned"), 10, "the refusal")
    assert event["severity"] == "critical"
    assert event["reason"] == "unsigned (agent.toml.minisig does not exist)"
    (argv,) = wait_for(lambda: _calls(record), 10, "the daemon-wide notice")
    assert "--urgency=critical" in argv
    assert argv[-1].startswith("🛡️ dotagent: agent 'unsigned' is not run: unsigned "
                               "(agent.toml.minisig does not exist) (")
    assert argv[-1].endswith("[manifest_signature_invalid]")
    assert history_rows(home, "unsigned") == []
    assert not (home / "unsigned.ran").exists()

    # Editing the signed manifest invalidates its signature: refused at the rescan.
    manifest = signed / "agent.toml"
    manifest.write_text(manifest.read_text() + "# edited after signing\n")
    (edited,) = wait_for(lambda: events_of(home, "manifest_signature_invalid",
                                           agent="signed"), 20, "the edited manifest refused")
    assert str(edited["reason"]).startswith("bad signature: ")
    daemon.wait_log("agent 'signed' is not run: bad signature", 10)

    # Signing the other agent lets it run, without a restart or a rescan period.
    assert _cli(daemon_env, "sign", "unsigned").returncode == 0
    wait_for(lambda: _finished(home, "unsigned"), 30, "the newly signed agent's run")
    assert (home / "unsigned.ran").read_text() == "x\n"
    assert daemon.stop() == 0
    assert len(events_of(home, "manifest_signature_invalid", agent="unsigned")) == 1
    assert len(_finished(home, "signed")) == 1


def test_the_daemon_holds_a_phantom_until_it_is_approved(home: Path, daemons: DaemonFactory,
                                                         daemon_env: dict[str, str]) -> None:
    (home / "config.toml").write_text(
        "[daemon]\nshutdown_grace_seconds = 1\n[daily_summary]\nenabled = false\n"
        "[trust]\napprove_new_agents = true\n")
    write_agent(home / "agents", "first", schedule=HOURLY,
                script=f"echo x >> {home / 'first.ran'}\n")
    daemon = daemons()
    daemon.start()
    wait_for(lambda: _finished(home, "first"), 30, "the baseline agent's run")
    assert events_of(home, "agent_approved", agent="first", via="baseline")
    write_agent(home / "agents", "sneaky", schedule=HOURLY,
                script=f"echo x >> {home / 'sneaky.ran'}\n")
    wait_for(lambda: events_of(home, "phantom_agent_detected", agent="sneaky"), 20,
             "the phantom")
    daemon.wait_log("agent 'sneaky' is not run: it waits for approval (new agent, never "
                    "approved", 10)
    listed = json.loads(_cli(daemon_env, "pending", "--json").stdout)
    assert [p["agent"] for p in listed["pending"]] == ["sneaky"]
    assert history_rows(home, "sneaky") == []
    approved = _cli(daemon_env, "approve", "sneaky")
    assert approved.returncode == 0, approved.stderr
    assert "told the running daemon (pid " in approved.stdout
    wait_for(lambda: _finished(home, "sneaky"), 30, "the approved agent's run")
    (event,) = events_of(home, "agent_approved", agent="sneaky")
    assert event["via"] == "approve" and event["uid"] == os.getuid()
    assert daemon.stop() == 0
    assert (home / "sneaky.ran").read_text() == "x\n"
