"""Secrets in real runs: `[env] secrets` reaches the agent (and nothing else does), a missing
name stops the run, and after runs that used a secret no file under the home holds it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import dotagent, simple_agent

TOKEN = "tok-Zq9-unguessable-4711"
OTHER = "other-secret-never-handed-out"

# The agent prints the secret on stdout and stderr, passes it as an argument to a child, dumps
# its environment outside the home (for the test to read), and fails — so that the stderr
# tail travels to history, the window file and the given-up notification.
SCRIPT = ('printf "stdout token=%s\\n" "$API_TOKEN"; '
          'printf "stderr token=%s\\n" "$API_TOKEN" >&2; '
          '/bin/sh -c "echo child got \\$1" child "$API_TOKEN"; '
          'env > "$DUMP"; exit 3')


def scan(root: Path, *values: str) -> list[str]:
    """Every file under `root` (any depth, any kind of content) holding one of `values`."""
    hits = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            hits += [f"{path}: {v}" for v in values if v.encode() in data]
    return hits


@pytest.fixture
def setup(tmp_path: Path, dotagent_home: Path, cli_env: dict[str, str]) -> dict[str, str]:
    vault = tmp_path / "vault"
    vault.mkdir()
    secrets = vault / "secrets.env"
    secrets.write_text(f"# mine\nexport API_TOKEN={TOKEN}\nOTHER_SECRET='{OTHER}'\n")
    secrets.chmod(0o600)
    env = dict(cli_env, DOTAGENT_SECRETS_FILE=str(secrets), DUMP=str(tmp_path / "env.txt"))
    simple_agent(dotagent_home / "agents", "leaky", "/bin/sh", ["-c", SCRIPT],
                 env='[env]\nsecrets = ["API_TOKEN"]')
    return env


def test_run_now_hands_over_only_the_named_secret_and_leaves_no_trace(
        setup: dict[str, str], dotagent_home: Path, tmp_path: Path) -> None:
    done = dotagent("run-now", "leaky", "--json", env=setup)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["result"]["exit_code"] == 3
    assert report["result"]["stdout_tail"] == ("stdout token=[REDACTED]\n"
                                               "child got [REDACTED]")
    assert report["result"]["stderr_tail"] == "stderr token=[REDACTED]"
    dumped = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines()
                  if "=" in line)
    assert dumped["API_TOKEN"] == TOKEN
    assert "OTHER_SECRET" not in dumped and OTHER not in (tmp_path / "env.txt").read_text()
    # Human output too.
    done = dotagent("run-now", "leaky", env=setup)
    assert TOKEN not in done.stdout + done.stderr and "[REDACTED]" in done.stdout
    log = (dotagent_home / "logs/agents/leaky/leaky.log").read_text()
    assert "stdout token=[REDACTED]" in log and "[stderr] stderr token=[REDACTED]" in log
    audit = (dotagent_home / "audit.log").read_text()
    # a foreground command's load is not the daemon's store: no secrets_loaded line
    assert '"event_type":"secrets_loaded"' not in audit.replace(" ", "")
    for command in (["history", "leaky", "--json"], ["status", "--json"],
                    ["inspect", "leaky", "--json"]):
        shown = dotagent(*command, env=setup)
        assert TOKEN not in shown.stdout + shown.stderr, command
    assert scan(dotagent_home, TOKEN, OTHER) == []


def test_a_name_the_store_lacks_stops_the_run_clearly(setup: dict[str, str],
                                                     dotagent_home: Path,
                                                     tmp_path: Path) -> None:
    simple_agent(dotagent_home / "agents", "needy", "/bin/sh", ["-c", 'env > "$DUMP"'],
                 env='[env]\nsecrets = ["API_TOKEN", "NOT_THERE"]')
    done = dotagent("run-now", "needy", "--json", env=setup)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["result"]
    assert result["exit_code"] == 78
    assert not (tmp_path / "env.txt").exists()  # it never started
    log = (dotagent_home / "logs/agents/needy/needy.log").read_text()
    secrets = setup["DOTAGENT_SECRETS_FILE"]
    assert (f"[dotagent] cannot start: [env] secrets asks for NOT_THERE, but {secrets} does "
            "not define it (exit 78)") in log
    # The foreground command says the same and exits with EX_CONFIG.
    done = dotagent("run", "needy", env=setup)
    assert done.returncode == 78
    assert "[env] secrets asks for NOT_THERE" in done.stderr


def test_a_refused_file_is_reported_and_the_run_that_needs_it_does_not_start(
        setup: dict[str, str], dotagent_home: Path) -> None:
    secrets = Path(setup["DOTAGENT_SECRETS_FILE"])
    secrets.chmod(0o640)
    done = dotagent("run-now", "leaky", "--json", env=setup)
    assert json.loads(done.stdout)["result"]["exit_code"] == 78
    assert f"[dotagent] error: secrets refused: insecure permissions on {secrets}" in \
        done.stderr
    audit = [json.loads(line) for line in
             (dotagent_home / "audit.log").read_text().splitlines()]
    refused = [a for a in audit if a["event"]["event_type"] == "secrets_refused"]
    assert refused and refused[0]["severity"] == "critical"
    log = (dotagent_home / "logs/agents/leaky/leaky.log").read_text()
    assert "the secrets file was refused: insecure permissions" in log


def test_foreground_run_passes_the_secret_and_redacts_the_terminal_copy_in_the_log(
        setup: dict[str, str], dotagent_home: Path, tmp_path: Path) -> None:
    done = dotagent("run", "leaky", env=setup)
    assert done.returncode == 3
    assert f"API_TOKEN={TOKEN}" in (tmp_path / "env.txt").read_text()
    assert scan(dotagent_home, TOKEN, OTHER) == []


def test_run_without_env_secrets_reads_no_secrets(setup: dict[str, str],
                                                  dotagent_home: Path) -> None:
    simple_agent(dotagent_home / "agents", "plain", "/bin/sh", ["-c", "echo hi"])
    assert dotagent("run", "plain", env=setup).returncode == 0
    audit = (dotagent_home / "audit.log").read_text()
    assert "secrets_loaded" not in audit


def test_tick_loads_the_store_before_running(setup: dict[str, str], dotagent_home: Path,
                                             tmp_path: Path) -> None:
    done = dotagent("tick", env=setup)
    assert done.returncode in (0, 1), done.stderr
    assert f"API_TOKEN={TOKEN}" in (tmp_path / "env.txt").read_text()  # the run got it
    # ...and a tick (from cron, every minute) adds no secrets_loaded line each time
    dotagent("tick", env=setup)
    assert "secrets_loaded" not in (dotagent_home / "audit.log").read_text()
    assert scan(dotagent_home, TOKEN, OTHER) == []


def test_doctor_reports_the_file_and_the_missing_names(setup: dict[str, str],
                                                     dotagent_home: Path) -> None:
    secrets = Path(setup["DOTAGENT_SECRETS_FILE"])
    simple_agent(dotagent_home / "agents", "needy", "/bin/sh", ["-c", "true"],
                 env='[env]\nsecrets = ["NOT_THERE"]')
    done = dotagent("doctor", env=setup)
    assert done.returncode == 1
    assert "env.secrets[0]: secret NOT_THERE is not available: " \
           f"{secrets} does not define it; runs of this agent will not start" in done.stdout
    secrets.write_text(f"API_TOKEN={TOKEN}\n\nbad line here\n")
    done = dotagent("doctor", env=setup)
    assert f"{secrets}:3: no '=' (expected KEY=value)" in done.stdout
    assert TOKEN not in done.stdout + done.stderr
    secrets.write_text(f"API_TOKEN={TOKEN}\n")
    secrets.chmod(0o644)
    done = dotagent("doctor", "--json", env=setup)
    general = json.loads(done.stdout)["general"]
    assert any(g["path"] == str(secrets) and "chmod 600" in g["message"] for g in general)


def test_env_secrets_names_are_validated(dotagent_home: Path, cli_env: dict[str, str]) -> None:
    simple_agent(dotagent_home / "agents", "bad", "/bin/sh", ["-c", "true"],
                 env='[env]\nsecrets = ["OK_NAME", "1BAD"]')
    done = dotagent("doctor", env=cli_env)
    assert done.returncode == 1
    assert "env.secrets[1]: '1BAD' is not a secret name" in done.stdout
