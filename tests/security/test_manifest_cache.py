"""Drift, phantom agents and a vanished cache, played as attacks through `dotagent run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import dotagent, simple_agent, write_agent


def audit_events(home: Path) -> list[dict]:
    path = home / "audit.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def of_type(home: Path, kind: str) -> list[dict]:
    return [e for e in audit_events(home) if e["event"]["event_type"] == kind]


@pytest.fixture
def root(tmp_path: Path, cli_env: dict[str, str]) -> Path:
    r = tmp_path / "agents"
    simple_agent(r, "innocent", "true", [])
    cli_env["DOTAGENT_ROOT"] = str(r)
    return r


def run(cli_env: dict[str, str], name: str = "innocent") -> str:
    p = dotagent("run", name, env=cli_env)
    assert p.returncode in (0, 1), p.stderr
    return p.stderr


def test_first_start_is_a_baseline_not_a_phantom_storm(root: Path, cli_env: dict[str, str],
                                                       dotagent_home: Path) -> None:
    simple_agent(root, "second", "true", [])
    run(cli_env)
    kinds = [e["event"]["event_type"] for e in audit_events(dotagent_home)]
    assert kinds == ["manifest_loaded", "manifest_loaded", "agent_run"]
    cache = json.loads((dotagent_home / "state/known_manifests.json").read_text())
    assert list(cache["entries"]) == ["innocent", "second"]
    entry = cache["entries"]["innocent"]
    assert list(entry) == ["path", "sha256", "first_seen_at_iso", "last_seen_at_iso"]
    assert entry["sha256"] == __import__("hashlib").sha256(
        (root / "innocent/agent.toml").read_bytes()).hexdigest()


def test_agent_run_records_manifest_sha256(root: Path, cli_env: dict[str, str],
                                           dotagent_home: Path) -> None:
    run(cli_env)
    [event] = of_type(dotagent_home, "agent_run")
    sha = __import__("hashlib").sha256((root / "innocent/agent.toml").read_bytes()).hexdigest()
    assert event["severity"] == "notice"
    assert event["event"]["manifest_sha256"] == sha
    assert event["event"]["agent"] == "innocent" and event["event"]["exit_code"] == 0
    dotagent("run", "innocent", "--dry-run", env=cli_env)
    dry = of_type(dotagent_home, "agent_run")[-1]["event"]
    assert dry["dry_run"] is True


def test_manifest_hijack_is_drift_reported_once(root: Path, cli_env: dict[str, str],
                                                dotagent_home: Path) -> None:
    run(cli_env)
    toml = root / "innocent/agent.toml"
    before = __import__("hashlib").sha256(toml.read_bytes()).hexdigest()
    toml.write_text(toml.read_text().replace('command = "true"', 'command = "false"'))
    err = run(cli_env)
    assert "manifest of 'innocent' changed since last seen" in err
    [drift] = of_type(dotagent_home, "manifest_drift_detected")
    assert drift["severity"] == "critical"
    assert drift["event"]["expected_sha256"] == before
    assert drift["event"]["actual_sha256"] != before
    run(cli_env)  # accepted after being reported once
    assert len(of_type(dotagent_home, "manifest_drift_detected")) == 1


def test_phantom_agent_detected_on_any_run(root: Path, cli_env: dict[str, str],
                                           dotagent_home: Path) -> None:
    run(cli_env)
    simple_agent(root, "spyware", "true", [])
    err = run(cli_env)  # running the innocent agent still checks every manifest
    assert "phantom agent 'spyware'" in err
    [phantom] = of_type(dotagent_home, "phantom_agent_detected")
    assert phantom["severity"] == "critical" and phantom["event"]["agent"] == "spyware"
    assert [e["event"]["agent"] for e in of_type(dotagent_home, "manifest_loaded")] == [
        "innocent", "spyware"]


def test_deleting_the_cache_is_itself_detected_and_does_not_launder(
        root: Path, cli_env: dict[str, str], dotagent_home: Path) -> None:
    run(cli_env)
    (dotagent_home / "state/known_manifests.json").unlink()
    toml = root / "innocent/agent.toml"
    toml.write_text(toml.read_text() + "\n# edited\n")
    simple_agent(root, "spyware", "true", [])
    err = run(cli_env)
    assert "known_manifests.json is missing" in err
    [missing] = of_type(dotagent_home, "manifest_cache_missing")
    assert missing["severity"] == "critical"
    # Known hashes came back from the audit log: the edit is drift, the newcomer a phantom.
    assert [e["event"]["agent"] for e in of_type(dotagent_home, "manifest_drift_detected")] == [
        "innocent"]
    assert [e["event"]["agent"] for e in of_type(dotagent_home, "phantom_agent_detected")] == [
        "spyware"]


def test_invalid_manifest_audited_once_per_content(root: Path, cli_env: dict[str, str],
                                                   dotagent_home: Path) -> None:
    bad = write_agent(root, "broken", '[agent]\nname = "broken"\n')
    run(cli_env)
    run(cli_env)
    [inv] = of_type(dotagent_home, "manifest_invalid")
    assert inv["event"]["path"] == str(bad / "agent.toml")
    assert "run: required field is missing" in inv["event"]["error"]
    (bad / "agent.toml").write_text('[agent]\nname = "broken"\n[run]\ncommand="x"\n')
    run(cli_env)
    assert len(of_type(dotagent_home, "manifest_invalid")) == 2


def test_doctor_shows_drift_without_updating(root: Path, cli_env: dict[str, str],
                                             dotagent_home: Path) -> None:
    run(cli_env)
    cache = (dotagent_home / "state/known_manifests.json").read_bytes()
    log = (dotagent_home / "audit.log").read_bytes()
    toml = root / "innocent/agent.toml"
    toml.write_text(toml.read_text() + "\n# edited\n")
    simple_agent(root, "newcomer", "true", [])
    p = dotagent("doctor", env=cli_env)
    assert "manifest drift since last seen (cached " in p.stdout
    assert "not in known_manifests.json" in p.stdout
    assert (dotagent_home / "state/known_manifests.json").read_bytes() == cache
    assert (dotagent_home / "audit.log").read_bytes() == log


def test_unrelated_audit_history_does_not_make_a_first_start_suspicious(
        root: Path, cli_env: dict[str, str], dotagent_home: Path) -> None:
    assert dotagent("selfcheck", env=cli_env).returncode == 0  # the log now has an entry
    err = run(cli_env)
    assert "phantom" not in err and "missing" not in err
    assert of_type(dotagent_home, "phantom_agent_detected") == []
    assert of_type(dotagent_home, "manifest_cache_missing") == []
    assert len(of_type(dotagent_home, "manifest_loaded")) == 1


def test_concurrent_runs_report_baseline_and_drift_once(root: Path, cli_env: dict[str, str],
                                                        dotagent_home: Path) -> None:
    import subprocess

    from helpers import DOTAGENT

    simple_agent(root, "b", "true", [])
    simple_agent(root, "c", "true", [])

    ran = 0

    def burst() -> None:
        nonlocal ran
        procs = [subprocess.Popen([DOTAGENT, "run", "innocent"], env=cli_env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(8)]
        codes = [p.wait(timeout=60) for p in procs]
        # One run per agent at a time: the others are refused with EX_TEMPFAIL, after they
        # have checked the manifests like every command that executes agents.
        assert set(codes) <= {0, 75} and 0 in codes
        ran += codes.count(0)

    burst()
    assert len(of_type(dotagent_home, "manifest_loaded")) == 3
    assert of_type(dotagent_home, "manifest_cache_missing") == []
    assert of_type(dotagent_home, "phantom_agent_detected") == []
    toml = root / "b/agent.toml"
    toml.write_text(toml.read_text() + "\n# changed\n")
    burst()
    assert len(of_type(dotagent_home, "manifest_drift_detected")) == 1
    assert len(of_type(dotagent_home, "agent_run")) == ran


def test_deleting_the_whole_audit_history_is_recorded(root: Path, cli_env: dict[str, str],
                                                      dotagent_home: Path) -> None:
    run(cli_env)
    for name in ("audit.log", "audit.log.lock", "state/audit.head"):
        (dotagent_home / name).unlink(missing_ok=True)
    err = run(cli_env)
    assert "audit.log is missing or empty" in err
    [broken] = of_type(dotagent_home, "audit_chain_broken")
    assert broken["severity"] == "critical" and broken["event"]["kind"] == "truncation"
    run(cli_env)
    assert len(of_type(dotagent_home, "audit_chain_broken")) == 1


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_deleting_the_log_alone_is_one_break_not_two(root: Path, cli_env: dict[str, str],
                                                      dotagent_home: Path, how: str) -> None:
    # The head record still vouches for the entries: the audit layer records the truncation,
    # and the manifest cache's own evidence of the same deletion adds no second break.
    run(cli_env)
    run(cli_env)
    log = dotagent_home / "audit.log"
    if how == "deleted":
        log.unlink()
    else:
        log.write_bytes(b"")
    err = run(cli_env)
    assert err == ("[dotagent] warning: audit.log is missing or empty although dotagent has "
                   "run here before (recorded as critical audit_chain_broken)\n")
    [broken] = of_type(dotagent_home, "audit_chain_broken")
    assert broken["event"]["kind"] == "truncation"
    assert "head record says" in broken["event"]["detail"]
    assert [e["event"]["event_type"] for e in audit_events(dotagent_home)] == [
        "audit_chain_broken", "agent_run"]
    run(cli_env)
    assert len(of_type(dotagent_home, "audit_chain_broken")) == 1


@pytest.mark.parametrize("garbage", [b"garbage\n", b'{"entries": [1]}', b"\xff\xfe"])
def test_garbage_cache_is_unreadable_not_missing_and_does_not_launder(
        root: Path, cli_env: dict[str, str], dotagent_home: Path, garbage: bytes) -> None:
    run(cli_env)
    cache = dotagent_home / "state/known_manifests.json"
    cache.write_bytes(garbage)
    toml = root / "innocent/agent.toml"
    toml.write_text(toml.read_text() + "\n# edited\n")
    simple_agent(root, "spyware", "true", [])
    err = run(cli_env)
    assert f"{cache} is unreadable: " in err and "is missing" not in err
    assert "(recorded as critical manifest_cache_missing; not treated as a first start)" in err
    [event] = of_type(dotagent_home, "manifest_cache_missing")
    assert event["severity"] == "critical" and event["event"]["path"] == str(cache)
    reason = event["event"]["reason"]
    assert reason.startswith("unreadable: ") and "rebuilt from the audit log" in reason
    why = {b"garbage\n": "not valid JSON", b'{"entries": [1]}': "not a known_manifests.json",
           b"\xff\xfe": "not UTF-8"}[garbage]
    assert why in reason and why in err
    # Rebuilt from the audit log, as for a deleted cache: the edit is drift, the newcomer a
    # phantom, and the cache is readable again afterwards.
    assert [e["event"]["agent"] for e in of_type(dotagent_home, "manifest_drift_detected")] == [
        "innocent"]
    assert [e["event"]["agent"] for e in of_type(dotagent_home, "phantom_agent_detected")] == [
        "spyware"]
    assert set(json.loads(cache.read_text())["entries"]) == {"innocent", "spyware"}
    run(cli_env)
    assert len(of_type(dotagent_home, "manifest_cache_missing")) == 1


def test_garbage_cache_without_manifest_history_is_no_first_start(
        root: Path, cli_env: dict[str, str], dotagent_home: Path) -> None:
    cache = dotagent_home / "state/known_manifests.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("not json")
    err = run(cli_env)
    assert f"{cache} is unreadable: not valid JSON" in err
    [event] = of_type(dotagent_home, "manifest_cache_missing")
    assert "no manifest history to rebuild it from" in event["event"]["reason"]
    # Something wrote that file: its agents are not silently taken as a baseline.
    assert [e["event"]["agent"] for e in of_type(dotagent_home, "phantom_agent_detected")] == [
        "innocent"]


def test_cache_that_is_a_fifo_does_not_hang_a_run(root: Path, cli_env: dict[str, str],
                                                  dotagent_home: Path) -> None:
    import os

    run(cli_env)
    cache = dotagent_home / "state/known_manifests.json"
    cache.unlink()
    os.mkfifo(cache)
    p = dotagent("run", "innocent", env=cli_env, timeout=30)
    assert f"{cache} is unreadable: it is not a regular file" in p.stderr


def test_new_invalid_manifest_is_announced_once(root: Path, cli_env: dict[str, str]) -> None:
    bad = write_agent(root, "broken", '[agent]\nname = "broken"\n')
    err = run(cli_env)
    assert f"manifest {bad / 'agent.toml'} is invalid (recorded as critical " \
           "manifest_invalid" in err
    assert "manifest_invalid" not in run(cli_env)


def test_a_symlinked_alias_records_one_stable_path(dotagent_home: Path) -> None:
    agents = dotagent_home / "agents"
    simple_agent(agents, "real", "true", [])
    bad = agents / "broken"
    bad.mkdir()
    (bad / "agent.toml").write_text("[agent\n")
    (agents / "aaa").symlink_to("real")  # found first (sorted), the same manifest
    (agents / "bbb").symlink_to("broken")
    p = dotagent("run", "real")
    assert p.returncode == 0, p.stderr
    shown = agents / "bbb" / "agent.toml"  # messages show the path as found ...
    assert f"manifest {shown} is invalid" in p.stderr
    cache = json.loads((dotagent_home / "state/known_manifests.json").read_text())
    # ... the record holds the manifest's own path, whichever alias found it
    assert cache["entries"]["real"]["path"] == str(agents / "real" / "agent.toml")
    assert list(cache["invalid"]) == [str(bad / "agent.toml")]
    [loaded] = of_type(dotagent_home, "manifest_loaded")
    assert loaded["event"]["path"] == str(agents / "real" / "agent.toml")
    # Renaming the aliases changes nothing that is recorded: no second manifest_invalid.
    (agents / "aaa").rename(agents / "000")
    (agents / "bbb").rename(agents / "001")
    p = dotagent("run", "real")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert len(of_type(dotagent_home, "manifest_invalid")) == 1
