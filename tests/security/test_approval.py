"""Approval of new and changed agents (issue 11 item 5) through the real CLI: with
`[trust] approve_new_agents = true` a phantom or a drifted agent does not run until
`dotagent approve NAME`; `dotagent pending` lists what waits; the approvals survive the
deletion of their file (rebuilt from the audit log)."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
from pathlib import Path

from helpers import dotagent, sh_agent


def _events(home: Path, kind: str) -> list[dict[str, object]]:
    path = home / "audit.log"
    if not path.exists():
        return []
    return [{"severity": r["severity"], **r["event"]}
            for r in map(json.loads, path.read_text().splitlines())
            if r["event"]["event_type"] == kind]


def _agent(home: Path, name: str) -> Path:
    return sh_agent(home / "agents", name, f"echo ran >> {home / (name + '.ran')}") / \
        "agent.toml"


def _on(home: Path) -> None:
    (home / "config.toml").write_text("[trust]\napprove_new_agents = true\n")


def _ran(home: Path, name: str) -> int:
    path = home / f"{name}.ran"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_phantom_waits_until_approved(dotagent_home: Path, cli_env: dict[str, str]) -> None:
    _on(dotagent_home)
    known = _agent(dotagent_home, "known")
    assert dotagent("run-now", "known", env=cli_env).returncode == 0  # first start: baseline
    (baseline,) = _events(dotagent_home, "agent_approved")
    assert baseline == {"severity": "notice", "event_type": "agent_approved", "agent": "known",
                        "path": str(known.resolve()),
                        "sha256": hashlib.sha256(known.read_bytes()).hexdigest(),
                        "via": "baseline", "user": "", "uid": -1}
    phantom = _agent(dotagent_home, "sneaky")
    sha = hashlib.sha256(phantom.read_bytes()).hexdigest()
    refused = dotagent("run-now", "sneaky", env=cli_env)
    assert refused.returncode == 77
    assert "agent 'sneaky' waits for approval: new agent, never approved" in refused.stderr
    assert _events(dotagent_home, "phantom_agent_detected")[0]["agent"] == "sneaky"
    tick = dotagent("tick", env=cli_env)
    assert "agent 'sneaky' is not run: it waits for approval" in tick.stderr
    assert _ran(dotagent_home, "sneaky") == 0
    pending = dotagent("pending", "--json", env=cli_env)
    assert pending.returncode == 0, pending.stderr
    assert json.loads(pending.stdout) == {
        "approve_new_agents": True,
        "pending": [{"agent": "sneaky", "path": str(phantom.resolve()), "sha256": sha,
                     "approved_sha256": None, "reason": "new agent, never approved"}]}
    assert dotagent("pending", env=cli_env).stdout.startswith(
        f"'sneaky'  new agent, never approved  sha256 {sha[:12]}  {phantom.resolve()}\n")
    wrong = dotagent("approve", "sneaky", "--sha256", "deadbeef", env=cli_env)
    assert wrong.returncode == 2 and "nothing approved" in wrong.stderr
    ok = dotagent("approve", "sneaky", "--sha256", sha[:8], env=cli_env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == f"approved 'sneaky' at sha256 {sha[:12]}\n"
    me = pwd.getpwuid(os.getuid())
    approved = [e for e in _events(dotagent_home, "agent_approved") if e["agent"] == "sneaky"]
    assert approved == [{"severity": "notice", "event_type": "agent_approved",
                         "agent": "sneaky", "path": str(phantom.resolve()), "sha256": sha,
                         "via": "approve", "user": me.pw_name, "uid": me.pw_uid}]
    again = dotagent("approve", "sneaky", env=cli_env)
    assert again.stdout == f"'sneaky' is already approved at sha256 {sha[:12]}\n"
    assert dotagent("run-now", "sneaky", env=cli_env).returncode == 0
    assert _ran(dotagent_home, "sneaky") == 1
    assert json.loads(dotagent("pending", "--json", env=cli_env).stdout)["pending"] == []


def test_a_drifted_agent_waits_and_deleting_the_approvals_launders_nothing(
        dotagent_home: Path, cli_env: dict[str, str]) -> None:
    _on(dotagent_home)
    manifest = _agent(dotagent_home, "job")
    assert dotagent("run", "job", env=cli_env).returncode == 0
    before = hashlib.sha256(manifest.read_bytes()).hexdigest()
    manifest.write_text(manifest.read_text().replace("echo ran", "echo changed"))
    after = hashlib.sha256(manifest.read_bytes()).hexdigest()
    for argv in (["run", "job"], ["run-now", "job"]):
        refused = dotagent(*argv, env=cli_env)
        assert refused.returncode == 77, argv
        assert f"changed since approved ({before[:12]} → {after[:12]})" in refused.stderr
    doctor = dotagent("doctor", env=cli_env)
    assert "waits for approval (changed since approved" in doctor.stdout
    # The drift was accepted by the manifest cache; approval still holds it back, also
    # after state/approved_manifests.json is deleted (rebuilt from the audit log).
    (dotagent_home / "state" / "approved_manifests.json").unlink()
    assert dotagent("run-now", "job", env=cli_env).returncode == 77
    stored = json.loads((dotagent_home / "state" / "approved_manifests.json").read_text())
    assert stored["job"]["sha256"] == before
    assert _ran(dotagent_home, "job") == 1
    assert dotagent("approve", "job", env=cli_env).returncode == 0
    assert dotagent("run-now", "job", env=cli_env).returncode == 0
    assert _ran(dotagent_home, "job") == 2


def test_without_the_setting_nothing_waits(dotagent_home: Path,
                                           cli_env: dict[str, str]) -> None:
    _agent(dotagent_home, "job")
    assert dotagent("run-now", "job", env=cli_env).returncode == 0
    _agent(dotagent_home, "new")
    assert dotagent("run-now", "new", env=cli_env).returncode == 0
    listed = dotagent("pending", env=cli_env).stdout
    assert listed.startswith("note: [trust] approve_new_agents is off")
    assert _events(dotagent_home, "agent_approved") == []
