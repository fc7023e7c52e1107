"""`dotagent install` / `uninstall`: the unit file systemd (and launchd) would read, through
the real `dotagent`, checked by `systemd-analyze verify`, plistlib and a real daemon."""

from __future__ import annotations

import os
import plistlib
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import systemd_syntax

from helpers import DOTAGENT, dotagent

LABEL = "run.avelino.dotagent"
# Every character systemd's unit syntax treats specially, and one that is a real specifier
# when left unescaped (%h would silently become a home directory).
WEIRD = "we ird %h %Z $HOME ${X} $$ \" ' \\ \\n é"


def unit_file(env: dict[str, str]) -> Path:
    return Path(env["HOME"]) / ".config/systemd/user" / f"{LABEL}.service"


def plist_file(env: dict[str, str]) -> Path:
    return Path(env["HOME"]) / "Library/LaunchAgents" / f"{LABEL}.plist"


def verify(unit: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` in system mode (a root CI box has no user manager), on a copy
    named as the unit is."""
    where = tmp_path / "verify"
    where.mkdir(exist_ok=True)
    copy = where / unit.name
    shutil.copyfile(unit, copy)
    return subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                          text=True, timeout=60, check=False, cwd=where)


@pytest.fixture
def no_linger_check(tmp_path: Path, cli_env: dict[str, str]) -> dict[str, str]:
    """A `loginctl` that says lingering is on, first on PATH: the tests below are about the
    unit; the linger tests set up their own."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "loginctl").write_text("#!/bin/sh\necho Linger=yes\n")
    (fake / "loginctl").chmod(0o755)
    cli_env["PATH"] = f"{fake}{os.pathsep}{cli_env['PATH']}"
    return cli_env


def test_unit_passes_systemd_analyze_verify(tmp_path: Path,
                                            no_linger_check: dict[str, str]) -> None:
    env = no_linger_check
    p = dotagent("install", env=env)
    assert p.returncode == 0, p.stderr
    unit = unit_file(env)
    assert p.stdout.splitlines()[0] == f"wrote {unit}"
    text = unit.read_text()
    v = verify(unit, tmp_path)
    assert (v.returncode, v.stderr, v.stdout) == (0, "", ""), v.stderr
    s = systemd_syntax.settings(text)
    assert s["Description"] == [f"dotagent daemon ({LABEL})"]
    assert (s["Type"], s["Restart"], s["RestartSec"]) == (["simple"], ["always"], ["10"])
    assert s["WantedBy"] == ["default.target"]
    assert (s["KillMode"], s["UMask"]) == (["mixed"], ["0077"])
    assert s["RestartPreventExitStatus"] == ["77 78"]  # refusals a restart cannot cure
    assert systemd_syntax.exec_start(text) == [DOTAGENT, "daemon"]
    home = env["DOTAGENT_HOME"]
    assert systemd_syntax.environment(text) == {"DOTAGENT_HOME": home}
    assert systemd_syntax.append_path(text, "StandardOutput") == \
        f"{home}/logs/daemon/{LABEL}.log"
    assert systemd_syntax.append_path(text, "StandardError") == \
        f"{home}/logs/daemon/{LABEL}-error.log"
    # Private, and the directory systemd appends to exists (it does not create it).
    assert stat.S_IMODE(unit.stat().st_mode) == 0o600
    assert stat.S_IMODE((Path(home) / "logs/daemon").stat().st_mode) == 0o700
    assert "Next steps:\n  systemctl --user daemon-reload && systemctl --user enable --now " \
           f"{LABEL}\n" in p.stdout


def test_weird_paths_round_trip(tmp_path: Path, no_linger_check: dict[str, str]) -> None:
    """A DOTAGENT_HOME with spaces, %, $, quotes and backslashes, and a dotagent installed
    under a path with spaces, % and $: verify finds the executable (so ExecStart unquotes to
    the real path) and reports no setting it could not parse; the values systemd reads back
    are the originals."""
    env = no_linger_check
    home = tmp_path / WEIRD / "home"
    env["DOTAGENT_HOME"] = str(home)
    bindir = tmp_path / "bin dir %i $USER"
    bindir.mkdir()
    (bindir / "dotagent").symlink_to(DOTAGENT)
    p = subprocess.run([str(bindir / "dotagent"), "install"], capture_output=True, text=True,
                       env=env, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    text = unit_file(env).read_text()
    v = verify(unit_file(env), tmp_path)
    assert (v.returncode, v.stderr) == (0, ""), v.stderr + text
    # Not resolved: the link the user installed is what the unit runs.
    assert systemd_syntax.exec_start(text) == [str(bindir / "dotagent"), "daemon"]
    assert systemd_syntax.environment(text) == {"DOTAGENT_HOME": str(home)}
    assert systemd_syntax.append_path(text, "StandardOutput") == \
        str(home / "logs/daemon" / f"{LABEL}.log")
    assert (home / "logs/daemon").is_dir()


def test_the_unit_starts_a_daemon_in_its_home(tmp_path: Path,
                                              no_linger_check: dict[str, str]) -> None:
    """What the unit says, run the way systemd would (its ExecStart argv, its Environment
    over a bare one): a real daemon comes up in the weird home and stops on SIGTERM."""
    env = no_linger_check
    home = tmp_path / WEIRD
    env["DOTAGENT_HOME"] = str(home)
    assert dotagent("install", env=env).returncode == 0
    text = unit_file(env).read_text()
    argv = systemd_syntax.exec_start(text)
    daemon_env = {"PATH": "/usr/bin:/bin", "HOME": env["HOME"],
                  **systemd_syntax.environment(text)}
    with open(systemd_syntax.append_path(text, "StandardError"), "ab") as err:
        proc = subprocess.Popen(argv, env=daemon_env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
    log = Path(systemd_syntax.append_path(text, "StandardError"))
    try:
        # Serving once its first scan is logged (its signal handlers are in place by then).
        deadline = time.monotonic() + 30
        while "scanned " not in log.read_text() and proc.poll() is None and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        assert "scanned " in log.read_text(), log.read_text()
        pid = (home / "state/daemon.pid").read_text().split()[0]
        assert pid == str(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_python_m_dotagent_installs_the_interpreter(tmp_path: Path,
                                                    no_linger_check: dict[str, str]) -> None:
    """Without an entry point (`python -m dotagent`) the unit runs the same interpreter,
    unresolved: the venv's python, whose packages include dotagent."""
    env = no_linger_check
    p = subprocess.run([sys.executable, "-m", "dotagent", "install"], capture_output=True,
                       text=True, env=env, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    text = unit_file(env).read_text()
    assert systemd_syntax.exec_start(text) == [sys.executable, "-m", "dotagent", "daemon"]
    assert verify(unit_file(env), tmp_path).stderr == ""


def test_a_program_path_systemd_cannot_hold_is_refused(tmp_path: Path,
                                                       no_linger_check: dict[str, str]) -> None:
    env = no_linger_check
    bindir = tmp_path / 'has"quote'
    bindir.mkdir()
    (bindir / "dotagent").symlink_to(DOTAGENT)
    p = subprocess.run([str(bindir / "dotagent"), "install"], capture_output=True, text=True,
                       env=env, timeout=60, check=False)
    assert p.returncode == 1
    assert p.stderr.startswith("Error: the program path ") and "contains \"" in p.stderr
    assert "Traceback" not in p.stderr
    assert not unit_file(env).exists()


def test_install_is_idempotent_and_updates_its_own_unit(tmp_path: Path,
                                                        no_linger_check: dict[str, str]) -> None:
    env = no_linger_check
    assert dotagent("install", env=env).returncode == 0
    unit = unit_file(env)
    before = unit.stat()
    p = dotagent("install", env=env)
    assert p.returncode == 0
    assert p.stdout.splitlines()[0] == f"already installed, unchanged: {unit}"
    after = unit.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # Another home: our unit is rewritten for it, and the restart is what to do next.
    env["DOTAGENT_HOME"] = str(tmp_path / "other-home")
    p = dotagent("install", env=env)
    assert p.returncode == 0
    assert p.stdout.splitlines()[0] == f"updated {unit}"
    assert f"systemctl --user daemon-reload && systemctl --user restart {LABEL}" in p.stdout
    assert systemd_syntax.environment(unit.read_text()) == {
        "DOTAGENT_HOME": str(tmp_path / "other-home")}


def test_dry_run_writes_nothing(no_linger_check: dict[str, str]) -> None:
    env = no_linger_check
    p = dotagent("install", "--dry-run", env=env)
    assert p.returncode == 0
    unit = unit_file(env)
    assert p.stdout.splitlines()[0] == f"would write {unit} (--dry-run: nothing written)"
    assert "ExecStart=" in p.stdout and "[Install]" in p.stdout
    assert not unit.exists() and not unit.parent.exists()
    assert not (Path(env["DOTAGENT_HOME"]) / "logs").exists()


def test_a_foreign_unit_is_left_alone_unless_forced(tmp_path: Path,
                                                    no_linger_check: dict[str, str]) -> None:
    env = no_linger_check
    unit = unit_file(env)
    unit.parent.mkdir(parents=True)
    mine = "[Service]\nExecStart=/usr/bin/true\n"
    unit.write_text(mine)
    for args in (("install",), ("install", "--dry-run"), ("uninstall",)):
        p = dotagent(*args, env=env)
        assert p.returncode == (1 if args == ("uninstall",) else 73), (args, p.stderr)
        assert "does not carry dotagent's marker line" in p.stderr
        assert "Traceback" not in p.stderr
        assert unit.read_text() == mine
    p = dotagent("install", "--force", env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == f"replaced (--force) {unit}"
    assert verify(unit, tmp_path).stderr == ""


def test_a_symlinked_unit_is_foreign_and_force_replaces_the_link(
        tmp_path: Path, no_linger_check: dict[str, str]) -> None:
    env = no_linger_check
    unit = unit_file(env)
    unit.parent.mkdir(parents=True)
    target = tmp_path / "dotfiles.service"
    target.write_text("[Service]\nExecStart=/usr/bin/true\n")
    unit.symlink_to(target)
    p = dotagent("install", env=env)
    assert p.returncode == 73
    assert f"it is a symlink to {target}" in p.stderr
    assert dotagent("uninstall", env=env).returncode == 1
    assert unit.is_symlink()
    assert dotagent("install", "--force", env=env).returncode == 0
    assert not unit.is_symlink() and "ExecStart=\"" in unit.read_text()
    assert target.read_text() == "[Service]\nExecStart=/usr/bin/true\n"  # never followed


def test_uninstall_removes_only_its_own_unit(no_linger_check: dict[str, str]) -> None:
    env = no_linger_check
    unit = unit_file(env)
    p = dotagent("uninstall", env=env)
    assert (p.returncode, p.stdout) == (
        0, f"nothing to remove (daemon unit not found: {unit})\n")
    assert dotagent("install", env=env).returncode == 0
    p = dotagent("uninstall", env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "To stop and disable the daemon, run (dotagent runs no service-manager command "
        "itself):",
        f"  systemctl --user disable --now {LABEL}",
        f"removed {unit}",
        "Then:",
        "  systemctl --user daemon-reload",
    ]
    assert not unit.exists()


def test_xdg_config_home_is_honoured(tmp_path: Path, no_linger_check: dict[str, str]) -> None:
    env = no_linger_check
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    assert dotagent("install", env=env).returncode == 0
    assert (tmp_path / "xdg/systemd/user" / f"{LABEL}.service").is_file()
    assert not unit_file(env).exists()
    assert dotagent("uninstall", env=env).returncode == 0
    assert not (tmp_path / "xdg/systemd/user" / f"{LABEL}.service").exists()


def test_dotagent_variables_that_are_set_are_carried(tmp_path: Path,
                                                     no_linger_check: dict[str, str]) -> None:
    env = no_linger_check
    env["DOTAGENT_ROOT"] = f"{tmp_path}/a b:{tmp_path}/c"
    env["DOTAGENT_PLUGIN_PATH"] = ""  # set but empty: not carried
    assert dotagent("install", env=env).returncode == 0
    assert systemd_syntax.environment(unit_file(env).read_text()) == {
        "DOTAGENT_HOME": env["DOTAGENT_HOME"], "DOTAGENT_ROOT": env["DOTAGENT_ROOT"]}


def test_launchd_plist(tmp_path: Path, no_linger_check: dict[str, str]) -> None:
    env = no_linger_check
    home = tmp_path / WEIRD
    env["DOTAGENT_HOME"] = str(home)
    p = dotagent("install", "--manager", "launchd", env=env)
    assert p.returncode == 0, p.stderr
    path = plist_file(env)
    assert p.stdout.splitlines()[0] == f"wrote {path}"
    data = plistlib.loads(path.read_bytes())
    assert data == {
        "Label": LABEL,
        "ProgramArguments": [DOTAGENT, "daemon"],
        "EnvironmentVariables": {"DOTAGENT_HOME": str(home)},
        "RunAtLoad": True,
        "KeepAlive": True,
        "ProcessType": "Background",
        "ThrottleInterval": 10,
        "Umask": 0o077,
        "StandardOutPath": str(home / "logs/daemon" / f"{LABEL}.log"),
        "StandardErrorPath": str(home / "logs/daemon" / f"{LABEL}-error.log"),
    }
    assert "launchctl bootstrap gui/\"$(id -u)\" " in p.stdout
    assert "loginctl" not in p.stderr  # lingering is systemd's
    assert dotagent("install", "--manager", "launchd", env=env).stdout.startswith(
        "already installed, unchanged: ")
    foreign = plistlib.dumps({"Label": LABEL})
    path.write_bytes(foreign)
    assert dotagent("install", "--manager", "launchd", env=env).returncode == 73
    assert dotagent("uninstall", "--manager", "launchd", env=env).returncode == 1
    assert path.read_bytes() == foreign
    assert dotagent("install", "--manager", "launchd", "--force", env=env).returncode == 0
    p = dotagent("uninstall", "--manager", "launchd", env=env)
    assert p.returncode == 0
    assert p.stdout.splitlines()[1] == f'  launchctl bootout gui/"$(id -u)"/{LABEL}'
    assert not path.exists()


def _fake_loginctl(tmp_path: Path, script: str) -> str:
    fake = tmp_path / "linger-bin"
    fake.mkdir(exist_ok=True)
    (fake / "loginctl").write_text("#!/bin/sh\n" + script)
    (fake / "loginctl").chmod(0o755)
    return str(fake)


def test_lingering_off_is_warned_with_the_fix(tmp_path: Path, cli_env: dict[str, str]) -> None:
    import pwd

    user = pwd.getpwuid(os.getuid()).pw_name
    record = tmp_path / "asked"
    fake = _fake_loginctl(tmp_path, f'echo "$@" > {record}\necho Linger=no\n')
    cli_env["PATH"] = f"{fake}{os.pathsep}{cli_env['PATH']}"
    p = dotagent("install", env=cli_env)
    assert p.returncode == 0
    assert record.read_text() == f"show-user {user} -p Linger\n"
    assert f"[dotagent] warning: lingering is off for user {user}" in p.stderr
    assert f"Fix: loginctl enable-linger {user}" in p.stderr


def test_lingering_on_says_nothing(tmp_path: Path, no_linger_check: dict[str, str]) -> None:
    p = dotagent("install", env=no_linger_check)
    assert p.returncode == 0 and p.stderr == ""


@pytest.mark.parametrize("case", ["absent", "fails"])
def test_lingering_that_cannot_be_checked_is_said(case: str, tmp_path: Path,
                                                  cli_env: dict[str, str]) -> None:
    if case == "absent":
        empty = tmp_path / "empty"
        empty.mkdir()
        cli_env["PATH"] = str(empty)
        why = "loginctl is not on PATH"
    else:
        cli_env["PATH"] = _fake_loginctl(tmp_path, "echo 'Failed to connect to bus' >&2\n"
                                                   "exit 1\n")
        why = "loginctl exited 1: Failed to connect to bus"
    p = dotagent("install", env=cli_env)
    assert p.returncode == 0, p.stderr
    assert "[dotagent] note: could not check whether lingering is on for user " in p.stderr
    assert why in p.stderr
    assert "loginctl enable-linger" in p.stderr


def test_other_platforms_are_refused_clearly() -> None:
    from dotagent.daemon.install import UnsupportedPlatform, default_manager

    assert default_manager("linux") == "systemd"
    assert default_manager("darwin") == "launchd"
    with pytest.raises(UnsupportedPlatform, match=r"not 'freebsd14'.*`dotagent daemon`"):
        default_manager("freebsd14")
