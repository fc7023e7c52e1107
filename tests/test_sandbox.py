"""`[security]` enforced with bubblewrap, failing closed (issue 11 items 1 and 3).

Real bwrap, real `dotagent run-now` processes, a real HTTP server on the host's loopback.
bwrap is required (`.ci/run` installs it): no test here is skipped for its absence."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dotagent.sandbox import BwrapSandbox, Policy

from helpers import dotagent, write_agent

PY = sys.executable


def audit(home: Path) -> list[dict[str, Any]]:
    out = []
    for line in (home / "audit.log").read_text().splitlines():
        record = json.loads(line)
        out.append({"severity": record["severity"], **record["event"]})
    return out


def of_type(home: Path, event_type: str) -> list[dict[str, Any]]:
    return [e for e in audit(home) if e["event_type"] == event_type]


def agent(root: Path, name: str, command: str, args: list[str], security: str, *,
          timeout: int = 30, env: str = "") -> Path:
    return write_agent(root, name, f"""
    [agent]
    name = "{name}"
    timeout_seconds = {timeout}
    [run]
    command = {json.dumps(command)}
    args = {json.dumps(args)}
    {env}
    [[schedules]]
    id = "main"
    type = "interval"
    interval_minutes = 60
    [security]
    {security}
    """)


def run_now(name: str, env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    p = dotagent("run-now", name, "--json", env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    result: dict[str, Any] = json.loads(p.stdout)["result"]
    return result


@pytest.fixture
def env(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    assert shutil.which("bwrap"), "bubblewrap must be installed (.ci/run installs it)"
    cli_env["DOTAGENT_ROOT"] = str(tmp_path / "agents")
    return cli_env


@pytest.fixture
def http_server() -> Iterator[str]:
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


FETCH = ("import sys, urllib.request\n"
         "try:\n"
         "    print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())\n"
         "except OSError as exc:\n"
         "    print('unreachable:', exc); sys.exit(7)\n")


def test_network_deny_cannot_reach_the_hosts_loopback_a_plain_agent_can(
        env: dict[str, str], tmp_path: Path, http_server: str) -> None:
    agents = tmp_path / "agents"
    agent(agents, "offline", PY, ["-c", FETCH, http_server], 'network = "deny"')
    agent(agents, "online", PY, ["-c", FETCH, http_server], 'network = "allow"')
    online = run_now("online", env, tmp_path)
    assert (online["exit_code"], online["stdout_tail"]) == (0, "hello")
    offline = run_now("offline", env, tmp_path)
    assert offline["exit_code"] == 7, offline
    assert offline["stdout_tail"].startswith("unreachable:")
    runs = of_type(env_home(env), "agent_run")
    assert [(r["agent"], r["exit_code"]) for r in runs] == [("online", 0), ("offline", 7)]


def env_home(env: dict[str, str]) -> Path:
    return Path(env["DOTAGENT_HOME"])


def test_writes_outside_filesystem_writable_fail_inside_succeed(
        env: dict[str, str], tmp_path: Path) -> None:
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    script = (f'echo a > {inside}/ok && echo inside-ok\n'
              f'echo b > {outside}/no 2>/dev/null || echo outside-refused\n'
              'echo c > "$AGENT_TMPDIR/t" && echo tmpdir-ok\n'
              f'echo d > {tmp_path}/sibling 2>/dev/null || echo tmp-sibling-refused\n'
              f'cat {outside}/readable\n')
    (outside / "readable").write_text("still-readable\n")
    agent(tmp_path / "agents", "writer", "/bin/sh", ["-c", script],
          f'filesystem_writable = ["{inside}"]')
    result = run_now("writer", env, tmp_path)
    assert result["exit_code"] == 0, result
    assert result["stdout_tail"].splitlines() == [
        "inside-ok", "outside-refused", "tmpdir-ok", "tmp-sibling-refused", "still-readable"]
    assert (inside / "ok").read_text() == "a\n"
    assert not (outside / "no").exists() and not (tmp_path / "sibling").exists()
    # The finish heartbeat is still written by dotagent outside the sandbox.
    beat = json.loads((env_home(env) / "state/agents/writer/default.heartbeat.json")
                      .read_text())
    assert beat["exit_code"] == 0


def test_an_env_var_outside_env_passthrough_is_absent(env: dict[str, str],
                                                      tmp_path: Path) -> None:
    env.update(PASS_ME="yes", HIDE_ME="secret-ish")
    agent(tmp_path / "agents", "envy", "/usr/bin/env", [], 'env_passthrough = ["PASS_ME"]',
          env='[env]\ninherit = true\nextra = { EXTRA = "1" }')
    result = run_now("envy", env, tmp_path)
    assert result["exit_code"] == 0, result
    names = sorted(line.split("=", 1)[0] for line in result["stdout_tail"].splitlines())
    assert [n for n in names if not n.startswith("AGENT_")] == ["EXTRA", "PASS_ME"]
    assert {"AGENT_NAME", "AGENT_TMPDIR", "AGENT_HEARTBEAT_FILE"} <= set(names)


def test_a_disallowed_command_is_refused_and_audited(env: dict[str, str],
                                                     tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    agent(tmp_path / "agents", "sneaky", "touch", [str(marker)],
          'allowed_commands = ["/usr/bin/true"]')
    result = run_now("sneaky", env, tmp_path)
    assert result["exit_code"] == 77 and not marker.exists()
    (refused,) = of_type(env_home(env), "command_not_allowed")
    assert refused == {"severity": "critical", "event_type": "command_not_allowed",
                       "agent": "sneaky", "schedule": "main", "command": "touch",
                       "refused": True}
    # Under "warn" it runs, and the choice is recorded at notice severity.
    (env_home(env) / "config.toml").write_text('[security]\nenforcement = "warn"\n')
    assert run_now("sneaky", env, tmp_path)["exit_code"] == 0 and marker.exists()
    warned = of_type(env_home(env), "command_not_allowed")[1]
    assert (warned["severity"], warned["refused"]) == ("notice", False)
    (env_home(env) / "config.toml").unlink()
    marker.unlink()
    # As its absolute PATH resolution, the same command is allowed.
    resolved = shutil.which("touch", path=env["PATH"])
    assert resolved is not None
    agent(tmp_path / "agents", "sneaky", "touch", [str(marker)],
          f'allowed_commands = ["{resolved}"]')
    assert run_now("sneaky", env, tmp_path)["exit_code"] == 0 and marker.exists()


def test_without_bwrap_the_agent_does_not_run_and_it_is_audited(
        env: dict[str, str], tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    agent(tmp_path / "agents", "boxed", "/bin/sh", ["-c", f": > {marker}"],
          'network = "deny"')
    # PATH without bwrap (the venv's python and /bin/sh are found by absolute path).
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "dotagent").symlink_to(Path(sys.executable).parent / "dotagent")
    no_bwrap = dict(env, PATH=str(bare))
    result = run_now("boxed", no_bwrap, tmp_path)
    assert result["exit_code"] == 69 and not marker.exists()
    (event,) = of_type(env_home(env), "sandbox_unavailable")
    assert event["severity"] == "critical" and event["refused"] is True
    assert event["reason"].startswith("bubblewrap (bwrap) is not installed")
    human = dotagent("run-now", "boxed", env=no_bwrap, cwd=tmp_path)
    assert human.stdout.splitlines()[1] == (
        "  could not start: [security] cannot be enforced: bubblewrap (bwrap) is not "
        "installed or not on PATH (Debian/Ubuntu: apt install bubblewrap)")
    doctor = dotagent("doctor", env=no_bwrap, cwd=tmp_path)
    assert doctor.returncode == 1
    assert "security.network: cannot be enforced: bubblewrap (bwrap) is not installed" \
        in doctor.stdout
    # The override tests and users use: a named binary that does not exist.
    result = run_now("boxed", dict(env, DOTAGENT_BWRAP=str(tmp_path / "nope")), tmp_path)
    assert result["exit_code"] == 69 and not marker.exists()
    # "warn" runs it unconfined and records that, every run.
    (env_home(env) / "config.toml").write_text('[security]\nenforcement = "warn"\n')
    for _ in range(2):
        assert run_now("boxed", no_bwrap, tmp_path)["exit_code"] == 0
    assert marker.exists()
    assert len(of_type(env_home(env), "sandbox_unavailable")) == 5  # 3 refused, 2 warned
    warned = [e for e in of_type(env_home(env), "sandbox_unavailable") if not e["refused"]]
    assert [e["severity"] for e in warned] == ["notice", "notice"]
    assert warned[0]["reason"].endswith('ran unconfined ([security] enforcement = "warn" in '
                                        "config.toml)")


def test_a_host_allowlist_is_refused_until_the_proxy_exists(env: dict[str, str],
                                                            tmp_path: Path) -> None:
    agent(tmp_path / "agents", "picky", "/bin/true", [], 'network = ["example.org"]')
    assert run_now("picky", env, tmp_path)["exit_code"] == 69
    (event,) = of_type(env_home(env), "sandbox_unavailable")
    assert event["reason"] == ("network host allowlists ([security] network = [...]) cannot "
                               "be enforced yet: dotagent has no filtering proxy")


def _processes_with(token: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if token.encode() in cmdline and b"/bin/sh" not in cmdline:
                found.append(int(entry))
    return found


def test_a_timeout_kills_the_whole_sandboxed_group_even_a_setsid_escapee(
        env: dict[str, str], tmp_path: Path) -> None:
    token = str(900000 + os.getpid() % 99999)
    script = f"sleep {token}1 & setsid sleep {token}2 & sleep {token}3"
    agent(tmp_path / "agents", "stuck", "/bin/sh", ["-c", script], 'network = "deny"',
          timeout=1)
    result = run_now("stuck", env, tmp_path)
    assert result["timed_out"] is True and result["exit_code"] == 124
    deadline = time.monotonic() + 10
    while _processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_with(token) == []


def test_the_bwrap_argv_for_each_restriction(tmp_path: Path) -> None:
    box = BwrapSandbox("/usr/bin/bwrap")
    policy = Policy(network="deny", writable=(tmp_path / "w",))
    argv, exe = box.wrap(policy, ["tool", "-x"], "/usr/bin/tool", cwd=tmp_path,
                         writable_extra=[tmp_path / "t"])
    assert exe == "/usr/bin/bwrap"
    assert argv == ["/usr/bin/bwrap", "--die-with-parent", "--unshare-pid", "--cap-drop",
                    "ALL", "--unshare-net", "--ro-bind", "/", "/", "--dev", "/dev", "--proc",
                    "/proc", "--bind-try", f"{tmp_path}/w", f"{tmp_path}/w", "--bind-try",
                    f"{tmp_path}/t", f"{tmp_path}/t", "--chdir", str(tmp_path), "--",
                    "/usr/bin/tool", "-x"]
    argv, _ = box.wrap(Policy(network="deny"), ["tool"], "/usr/bin/tool", cwd=tmp_path,
                       writable_extra=[tmp_path / "t"])
    assert "--ro-bind" not in argv and argv[argv.index("--bind") + 1:][:2] == ["/", "/"]


def test_a_failed_probe_is_tried_again_later_a_working_one_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bubblewrap installed (or user namespaces allowed) while the daemon runs: the refusal
    lasts until the next probe, RETRY_FAILED_AFTER later, not until a restart. A real bwrap
    behind a wrapper script that first fails."""
    from dotagent.sandbox import bwrap as module

    real = shutil.which("bwrap")
    assert real, "bubblewrap must be installed (.ci/run installs it)"
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    now = [1000.0]
    monkeypatch.setattr(module, "_clock", lambda: now[0])
    monkeypatch.setattr(module, "_PROBES", {})
    box = BwrapSandbox(str(fake))
    assert "cannot create namespaces here" in (box.unavailable() or "")
    fake.write_text(f'#!/bin/sh\nexec {real} "$@"\n')  # "installed" / allowed now
    now[0] += module.RETRY_FAILED_AFTER - 1
    assert box.unavailable() is not None  # not yet tried again
    now[0] += 1
    assert box.unavailable() is None  # tried again: works
    fake.write_text("#!/bin/sh\nexit 1\n")
    now[0] += 10 * module.RETRY_FAILED_AFTER
    assert box.unavailable() is None  # a working bwrap is not probed again
