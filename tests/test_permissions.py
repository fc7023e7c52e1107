"""Everything dotagent creates under the home is private (S15.11), whatever the umask.

dotagent tightens what it created itself (also what an older version left 0644/0755) and
never changes the user's own files, which `doctor` reports instead. The suite runs as root,
so access cannot be observed; modes are asserted with os.stat.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from helpers import DOTAGENT, simple_agent

USER_FILES = ("agents", "config.toml", "secrets.env")


def run(*args: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    """The real executable, with the umask set explicitly in the child."""
    return subprocess.run([DOTAGENT, *args], capture_output=True, text=True, timeout=60,
                          check=False, env=dict(os.environ),
                          preexec_fn=lambda: os.umask(umask))


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def created_by_dotagent(home: Path) -> dict[str, int]:
    """Mode of every path under the home except the home itself and the user's own files."""
    found: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(home):
        rel_dir = Path(dirpath).relative_to(home)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d not in USER_FILES]
            filenames = [f for f in filenames if f not in USER_FILES]
        for name in dirnames + filenames:
            found[str(rel_dir / name)] = mode(Path(dirpath) / name)
    return found


def loose(found: dict[str, int], home: Path) -> dict[str, str]:
    want = {rel: 0o700 if (home / rel).is_dir() else 0o600 for rel in found}
    return {rel: f"{m:04o}" for rel, m in found.items() if m != want[rel]}


def setup_agent(home: Path) -> None:
    simple_agent(home / "agents", "echoer", "/bin/sh", ["-c", "echo secret-output; echo e >&2"])


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
def test_everything_dotagent_creates_is_private(dotagent_home: Path, umask: int) -> None:
    home = dotagent_home
    setup_agent(home)
    assert run("run", "echoer", umask=umask).returncode == 0
    assert run("selfcheck", "--record", umask=umask).returncode == 0
    with (home / "audit.log").open("ab") as fh:  # a torn final line, set aside by repair
        fh.write(b'{"ts":"2026')
    p = run("audit", "repair", umask=umask)
    assert p.returncode == 0 and "torn" in p.stdout
    found = created_by_dotagent(home)
    for expected in ("logs/agents/echoer/echoer.log", "state/agents/echoer",
                     "state/known_manifests.json", "state/audit.head", "audit.log",
                     "audit.log.lock", "daemon.sha256", "state/selfcheck.json"):
        assert expected in found
    assert any(rel.startswith("audit.log.torn-") for rel in found)
    assert any(rel.endswith(".heartbeat.lock") for rel in found)
    assert loose(found, home) == {}


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
def test_a_home_dotagent_creates_is_0700(tmp_path: Path, umask: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "fresh" / "dotagent"
    monkeypatch.setenv("DOTAGENT_HOME", str(home))
    assert run("selfcheck", "--record", umask=umask).returncode == 0
    assert mode(home) == 0o700
    assert mode(tmp_path / "fresh") == 0o700  # every directory dotagent makes
    assert loose(created_by_dotagent(home), home) == {}


# The suite runs as root; without these capabilities the kernel checks modes as for any
# user (the test of a strict umask needs to see a 0400 file refused).
AS_A_USER = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def test_a_strict_umask_still_gives_0600_files_and_every_run_is_recorded(
        dotagent_home: Path) -> None:
    home = dotagent_home
    setup_agent(home)
    for _ in range(3):
        p = subprocess.run([*AS_A_USER, DOTAGENT, "run", "echoer"], capture_output=True,
                           text=True, timeout=60, check=False, env=dict(os.environ),
                           preexec_fn=lambda: os.umask(0o277))
        assert p.returncode == 0, p.stderr
        assert p.stderr == "e\n"  # the agent's own; nothing about recording
    assert (home / "audit.log").read_text().count('"agent_run"') == 3
    assert loose(created_by_dotagent(home), home) == {}


def age(home: Path) -> None:
    """What an older version left: 0755 directories, 0644 files, under state/ and logs/."""
    for dirpath, dirnames, filenames in os.walk(home):
        if Path(dirpath) == home:
            dirnames[:] = [d for d in dirnames if d not in USER_FILES]
            filenames = [f for f in filenames if f not in USER_FILES]
        for d in dirnames:
            os.chmod(Path(dirpath) / d, 0o755)
        for f in filenames:
            os.chmod(Path(dirpath) / f, 0o644)


@pytest.mark.parametrize("command", [["run", "echoer"], ["audit", "repair"],
                                     ["selfcheck", "--record"], ["audit", "verify"]])
def test_what_an_older_version_left_is_tightened(dotagent_home: Path, tmp_path: Path,
                                                 command: list[str]) -> None:
    home = dotagent_home
    setup_agent(home)
    assert run("run", "echoer").returncode == 0
    assert run("selfcheck", "--record").returncode == 0
    # Files of another agent this run does not touch, and a torn-tail side file.
    (home / "logs/agents/old").mkdir()
    (home / "logs/agents/old/old.log").write_text("old output\n")
    (home / "audit.log.torn-20250101T000000").write_bytes(b"{")
    # A symlink under logs/ to a file of the user's: never followed.
    outside = tmp_path / "user-notes.txt"
    outside.write_text("mine\n")
    outside.chmod(0o644)
    (home / "logs/agents/notes").symlink_to(outside)
    # The user's own files, with loose modes dotagent must leave alone.
    (home / "config.toml").write_text("")
    (home / "secrets.env").write_text("TOKEN=abc\n")
    os.chmod(home / "agents/echoer/agent.toml", 0o666)
    age(home)
    os.chmod(home, 0o755)
    os.chmod(home / "agents", 0o755)
    before = {rel: mode(home / rel) for rel in ("", "agents", "agents/echoer",
                                               "agents/echoer/agent.toml", "config.toml",
                                               "secrets.env")}
    assert loose(created_by_dotagent(home), home) != {}

    assert run(*command).returncode == 0

    found = created_by_dotagent(home)
    found.pop("logs/agents/notes")  # the symlink itself
    assert loose(found, home) == {}
    assert mode(outside) == 0o644
    assert {rel: mode(home / rel) for rel in before} == before


def test_log_written_by_a_run_is_private_even_if_an_old_one_was_not(
        dotagent_home: Path) -> None:
    # Without the start-up sweep too: opening the log tightens it (the file is dotagent's).
    home = dotagent_home
    setup_agent(home)
    log = home / "logs/agents/echoer/echoer.log"
    log.parent.mkdir(parents=True)
    log.write_text("from an older version\n")
    log.chmod(0o644)
    assert run("run", "echoer").returncode == 0
    assert mode(log) == 0o600
    assert "secret-output" in log.read_text()


def doctor_general(home: Path) -> tuple[int, dict[str, str]]:
    p = run("doctor", "--json")
    general = json.loads(p.stdout)["general"]
    return p.returncode, {g["path"]: g["message"] for g in general if g["severity"] == "warning"}


def test_doctor_warns_on_loose_user_files_and_changes_nothing(dotagent_home: Path) -> None:
    home = dotagent_home
    setup_agent(home)
    manifest = home / "agents/echoer/agent.toml"
    (home / "secrets.env").write_text("TOKEN=abc\n")
    (home / "config.toml").write_text("")
    for path, m in ((home, 0o755), (manifest, 0o666), (home / "secrets.env", 0o644),
                    (home / "config.toml", 0o640)):
        os.chmod(path, m)
    rc, warnings = doctor_general(home)
    assert rc == 0  # warnings only
    assert "group and others may read it (mode 0755)" in warnings[str(home)]
    assert "chmod 700" in warnings[str(home)]
    assert "group and others may write it (mode 0666)" in warnings[str(manifest)]
    assert "owner-only" in warnings[str(home / "secrets.env")]
    assert "chmod 600" in warnings[str(home / "secrets.env")]
    assert "group may read it (mode 0640)" in warnings[str(home / "config.toml")]
    assert mode(home) == 0o755 and mode(manifest) == 0o666
    assert mode(home / "secrets.env") == 0o644
    text = run("doctor").stdout
    assert f"warning: {manifest}: group and others may write it" in text


def test_doctor_is_quiet_about_private_and_merely_readable_files(dotagent_home: Path) -> None:
    home = dotagent_home
    setup_agent(home)
    (home / "secrets.env").write_text("TOKEN=abc\n")
    os.chmod(home, 0o700)
    os.chmod(home / "secrets.env", 0o600)
    os.chmod(home / "agents/echoer/agent.toml", 0o644)  # readable is fine for a manifest
    os.chmod(home / "agents", 0o755)
    assert doctor_general(home) == (0, {})


def test_doctor_warns_on_a_writable_agents_directory(dotagent_home: Path) -> None:
    home = dotagent_home
    setup_agent(home)
    os.chmod(home / "agents", 0o777)
    os.chmod(home / "agents/echoer", 0o775)
    _, warnings = doctor_general(home)
    assert "could add or replace agents" in warnings[str(home / "agents")]
    assert "group may write it" in warnings[str(home / "agents/echoer")]
