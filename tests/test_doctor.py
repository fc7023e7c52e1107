"""Who owns a name (S15.8), what `doctor` says about it, and doctor's `[security]` checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dotagent.discovery import discover, search_roots

from helpers import dotagent, simple_agent, write_agent

BROKEN_BACKUP = """
[agent]
name = "backup"

[run]
command = "true"

[[schedules]]
id = "main"
type = "interval"
interval_minutes = 0
"""


def marker_agent(root: Path, name: str, marker: Path, dirname: str | None = None) -> Path:
    return write_agent(root, name, f"""
    [agent]
    name = "{name}"
    [run]
    command = "touch"
    args = ["{marker}"]
    [[schedules]]
    id = "main"
    type = "interval"
    interval_minutes = 5
    """, dirname=dirname)


# -- a broken manifest's name is never served by another ---------------------------------
def test_broken_home_manifest_is_refused_not_shadowed_by_cwd(
        tmp_path: Path, cli_env: dict[str, str], dotagent_home: Path) -> None:
    """The issue's scenario: an invalid $DOTAGENT_HOME/agents/backup and a valid `backup` in
    the current directory. `run backup` refuses with the broken manifest's own error."""
    broken = write_agent(dotagent_home / "agents", "backup", BROKEN_BACKUP)
    cwd = tmp_path / "work"
    marker = tmp_path / "cwd-backup-ran"
    other = marker_agent(cwd, "backup", marker)
    p = dotagent("run", "backup", env=cli_env, cwd=cwd)
    assert p.returncode == 78, p.stderr  # EX_CONFIG: dotagent's refusal, not an agent status
    assert p.stderr.startswith("Error: agent 'backup' cannot be used: its manifest "
                               f"{broken}/agent.toml has 1 error(s):\n")
    assert (f"  {broken}/agent.toml:10: schedules[0].interval_minutes: 0 is out of range "
            "(1..5270400)\n") in p.stderr
    assert f"{other}/agent.toml declares the same name and is ignored" in p.stderr
    assert "Traceback" not in p.stderr
    assert not marker.exists()
    audit = dotagent_home / "audit.log"
    assert not audit.exists() or "agent_run" not in audit.read_text()

    d = dotagent("doctor", env=cli_env, cwd=cwd)
    assert d.returncode == 1
    assert (f"{other}/agent.toml:2: agent.name: 'backup' is already used by "
            f"{broken}/agent.toml, which has errors") in d.stdout
    # The broken claimant is listed first, its duplicate after it.
    assert d.stdout.index(f"({broken}/agent.toml)") < d.stdout.index(f"({other}/agent.toml)")


def test_a_manifest_whose_name_cannot_be_read_claims_its_directory_name(
        tmp_path: Path, cli_env: dict[str, str], dotagent_home: Path) -> None:
    root = tmp_path / "root"
    write_agent(root, "backup", "[agent\nname = ")  # TOML syntax error, in directory backup
    marker = tmp_path / "ran"
    later = marker_agent(dotagent_home / "agents", "backup", marker)
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = dotagent("run", "backup", env=cli_env, cwd=tmp_path)
    assert p.returncode == 78 and "TOML syntax error" in p.stderr, p.stderr
    assert not marker.exists()
    d = dotagent("doctor", "--json", env=cli_env, cwd=tmp_path)
    by_path = {m["path"]: m for m in json.loads(d.stdout)["manifests"]}
    first = by_path[str(root / "backup/agent.toml")]
    assert (first["name"], first["declared_name"], first["claims"]) == (None, None, "backup")
    dup = by_path[str(later / "agent.toml")]
    assert dup["claims"] is None and dup["status"] == "errors"
    assert "'backup' is already used by" in dup["errors"][0]["message"]
    text = dotagent("doctor", env=cli_env, cwd=tmp_path).stdout
    assert f"✗ 'backup' (its directory name): manifest has errors ({root}/backup" in text
    # A second unreadable manifest in a directory of the same name collides by that name.
    other = tmp_path / "other"
    write_agent(other, "backup", "no = [")
    cli_env["DOTAGENT_ROOT"] = f"{root}{os.pathsep}{other}"
    text = dotagent("doctor", env=cli_env, cwd=tmp_path).stdout
    assert (f"{other}/backup/agent.toml: agent.name: its directory name 'backup' is already "
            f"used by {root}/backup/agent.toml, which has errors") in text


def test_a_later_broken_duplicate_reports_both_problems_and_the_first_runs(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    r1, r2 = tmp_path / "r1", tmp_path / "r2"
    marker = tmp_path / "ran"
    first = marker_agent(r1, "backup", marker)
    later = write_agent(r2, "backup", BROKEN_BACKUP)
    cli_env["DOTAGENT_ROOT"] = f"{r1}{os.pathsep}{r2}"
    assert dotagent("run", "backup", env=cli_env, cwd=tmp_path).returncode == 0
    assert marker.exists()
    d = dotagent("doctor", env=cli_env, cwd=tmp_path)
    assert f"{later}/agent.toml:10: schedules[0].interval_minutes: 0 is out of range" in d.stdout
    assert (f"{later}/agent.toml:2: agent.name: 'backup' is already used by "
            f"{first}/agent.toml, which keeps running") in d.stdout


def test_daemon_roots_leave_out_the_current_directory(tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    simple_agent(home / "agents", "homed", "true", [])
    simple_agent(cwd / "agents", "local", "true", [])
    simple_agent(cwd, "here", "true", [])
    env = {"DOTAGENT_HOME": str(home), "HOME": str(tmp_path)}
    assert search_roots(env, cwd, include_cwd=False) == [home / "agents"]
    daemon = discover(env, cwd, include_cwd=False)
    assert sorted(daemon.agents) == ["homed"]
    interactive = discover(env, cwd, include_cwd=True)
    assert sorted(interactive.agents) == ["here", "homed", "local"]
    seen = {n: interactive.seen_by_daemon(m.path) for n, m in interactive.agents.items()}
    assert seen == {"homed": True, "local": False, "here": False}


def test_doctor_marks_agents_the_daemon_does_not_see(tmp_path: Path,
                                                       cli_env: dict[str, str]) -> None:
    cwd = tmp_path / "cwd"
    simple_agent(cwd / "agents", "local", "true", [])
    p = dotagent("doctor", env=cli_env, cwd=cwd)
    assert (f"    not seen by the daemon: found in {cwd / 'agents'}, which only `run` and "
            "`doctor` search") in p.stdout
    [m] = json.loads(dotagent("doctor", "--json", env=cli_env, cwd=cwd).stdout)["manifests"]
    assert m["seen_by_daemon"] is False


def test_searched_lists_each_root_once(tmp_path: Path, cli_env: dict[str, str],
                                       dotagent_home: Path) -> None:
    agents = dotagent_home / "agents"
    simple_agent(agents, "solo", "true", [])
    cli_env["DOTAGENT_ROOT"] = str(agents)
    # DOTAGENT_ROOT is the home's agents directory, and so is the current directory.
    p = dotagent("doctor", env=cli_env, cwd=agents)
    assert p.returncode == 0, p.stdout
    [searched] = [line for line in p.stdout.splitlines() if line.startswith("searched: ")]
    assert searched == f"searched: {agents}, {agents / 'agents'}"
    assert "not seen by the daemon" not in p.stdout


# -- [security]: declared, checked, not enforced --------------------------------------------
def test_doctor_warns_where_a_manifest_contradicts_its_security_section(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    root, bin_dir, plugins = tmp_path / "r", tmp_path / "bin", tmp_path / "plugins"
    for d, name in ((bin_dir, "mytool"), (plugins, "dotagent-plugin-sink-a"),
                    (plugins, "dotagent-plugin-notify-b")):
        d.mkdir(exist_ok=True)
        # plugins that answer every verb (doctor calls info and validate)
        (d / name).write_text("#!/bin/sh\ncat >/dev/null\necho '{\"ok\": true}'\n")
        (d / name).chmod(0o755)
    write_agent(root, "loose", f"""
    [agent]
    name = "loose"
    [run]
    command = "mytool"
    [env]
    inherit = true
    [[schedules]]
    id = "main"
    type = "interval"
    interval_minutes = 5
    [[on_success]]
    plugin = "sink-a"
    [[notifiers]]
    driver = "plugin"
    name = "notify-b"
    [security]
    allowed_commands = ["othertool", "/usr/bin/also-not"]
    allowed_plugins = ["sink-a"]
    env_passthrough = ["HOME", "LANG"]
    filesystem_writable = ["{tmp_path}", "out/missing", "~/nowhere-xyz"]
    """)
    cli_env.update(DOTAGENT_ROOT=str(root), DOTAGENT_PLUGIN_PATH=str(plugins),
                   PATH=f"{bin_dir}{os.pathsep}{cli_env['PATH']}")
    p = dotagent("doctor", env=cli_env, cwd=tmp_path)
    assert p.returncode == 0, p.stdout
    toml = root / "loose/agent.toml"
    warnings = [line.split("warning: ", 1)[1] for line in p.stdout.splitlines()
                if line.startswith("    warning: ")]
    assert warnings == [
        f"{toml}:4: run.command: 'mytool' ({bin_dir}/mytool) is not in "
        "security.allowed_commands ('othertool', '/usr/bin/also-not'); runs are refused",
        f"{toml}:15: notifiers[0].name: plugin 'notify-b' is not in security.allowed_plugins "
        "('sink-a')",
        f"{toml}:20: security.filesystem_writable[1]: {root}/loose/out/missing does not exist",
        f"{toml}:20: security.filesystem_writable[2]: {os.environ['HOME']}/nowhere-xyz "
        "does not exist",
    ]
    assert p.stdout.count("note: [security] is enforced: network and filesystem_writable "
                          "through bubblewrap") == 1

    # The command matches as the absolute path PATH resolves it to; the plugin is allowed;
    # without inherit the passthrough is consistent: no [security] warning left.
    toml.write_text(toml.read_text()
                    .replace('"othertool"', f'"{bin_dir}/mytool"')
                    .replace('allowed_plugins = ["sink-a"]',
                             'allowed_plugins = ["sink-a", "notify-b"]')
                    .replace("inherit = true", "inherit = false")
                    .replace(', "out/missing", "~/nowhere-xyz"', ""))
    p = dotagent("doctor", env=cli_env, cwd=tmp_path)
    assert "    warning: " not in p.stdout, p.stdout
    assert "summary: 1 agent(s), 0 error(s), 0 warning(s)" in p.stdout


def test_env_passthrough_with_the_default_inherit_is_no_contradiction(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    """env_passthrough clears the environment whatever [env] inherit says (enforced since
    issue 11), so doctor has nothing to warn about."""
    root = tmp_path / "r"
    simple_agent(root, "dflt", "true", [], extra='[security]\nenv_passthrough = ["HOME"]\n')
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = dotagent("doctor", env=cli_env, cwd=tmp_path)
    assert p.returncode == 0, p.stdout
    assert "security.env_passthrough" not in p.stdout
    assert "summary: 1 agent(s), 0 error(s), 0 warning(s)" in p.stdout


def test_no_security_note_when_no_manifest_declares_the_section(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = tmp_path / "r"
    simple_agent(root, "plain", "true", [])
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = dotagent("doctor", env=cli_env, cwd=tmp_path)
    assert "[security] is enforced" not in p.stdout
    report = json.loads(dotagent("doctor", "--json", env=cli_env, cwd=tmp_path).stdout)
    assert report["notes"] == []


# -- small things a user sees ----------------------------------------------------------------
def test_json_problems_about_a_whole_file_have_null_line_and_field(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = tmp_path / "r"
    simple_agent(root, "plain", "true", [])
    cli_env["DOTAGENT_ROOT"] = f"{root}{os.pathsep}{tmp_path / 'missing-root'}"
    report = json.loads(dotagent("doctor", "--json", env=cli_env, cwd=tmp_path).stdout)
    [m] = report["manifests"]
    [w] = m["warnings"]
    assert w["message"].startswith("no [security] section")
    assert (w["line"], w["field"]) == (None, None)
    [g] = report["general"]
    assert (g["path"], g["line"], g["field"], g["severity"]) == (
        str(tmp_path / "missing-root"), None, "DOTAGENT_ROOT", "warning")
    every = [p for m in report["manifests"] for p in m["errors"] + m["warnings"]]
    assert all(p["field"] != "" for p in every + report["general"])


def test_warnings_are_listed_by_line(tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = tmp_path / "r"
    d = simple_agent(root, "noisy", "not-installed-xyz", [],
                     extra="zzz = 1\n[defaults]\nmax_retries = 99\n")
    toml = d / "agent.toml"
    toml.write_text(toml.read_text() + '[[schedules]]\nid = "twin"\ntype = "interval"\n'
                    "interval_minutes = 5\n")
    cli_env["DOTAGENT_ROOT"] = str(root)
    report = json.loads(dotagent("doctor", "--json", env=cli_env, cwd=tmp_path).stdout)
    [m] = report["manifests"]
    lines = [w["line"] or 0 for w in m["warnings"]]
    assert len(lines) == 5 and lines == sorted(lines), m["warnings"]


def test_control_characters_in_a_directory_name_are_escaped(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = tmp_path / "r"
    write_agent(root, "nl", '[agent]\nname = "nl"\n', dirname="new\nline\x1b[31m")
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = dotagent("doctor", env=cli_env, cwd=tmp_path)
    assert "\x1b" not in p.stdout
    assert f"({root}/new\\nline\\x1b[31m/agent.toml)" in p.stdout
    assert f"    error: {root}/new\\nline\\x1b[31m/agent.toml:1: run: required" in p.stdout
    r = dotagent("run", "nl", env=cli_env, cwd=tmp_path)
    assert r.returncode == 78
    assert "\x1b" not in r.stderr and "new\\nline\\x1b[31m/agent.toml" in r.stderr
    # --json keeps the real name (JSON escapes it its own way).
    report = json.loads(dotagent("doctor", "--json", env=cli_env, cwd=tmp_path).stdout)
    assert report["manifests"][0]["path"] == f"{root}/new\nline\x1b[31m/agent.toml"


def test_an_agent_name_starting_with_a_dash_is_a_manifest_error(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    root = tmp_path / "r"
    simple_agent(root, "-rf", "true", [])
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = dotagent("doctor", env=cli_env, cwd=tmp_path)
    assert p.returncode == 1
    assert ("agent.toml:2: agent.name: '-rf' starts with '-', which a command line would read "
            "as an option") in p.stdout


# -- an unusable state directory is an error (docs/cli.md) ------------------------------------
def _home_with_a_run(cli_env: dict[str, str], tmp_path: Path) -> Path:
    root = tmp_path / "r"
    simple_agent(root, "plain", "true", [])
    cli_env["DOTAGENT_ROOT"] = str(root)
    assert dotagent("run", "plain", env=cli_env, cwd=tmp_path).returncode == 0
    return Path(cli_env["DOTAGENT_HOME"])


def _general_errors(p: object) -> list[str]:
    out = p.stdout
    return [line for line in out.splitlines() if line.startswith("error: ")]


def test_doctor_fails_on_audit_files_that_are_not_regular_files(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    home = _home_with_a_run(cli_env, tmp_path)
    log = home / "audit.log"
    cases = {
        "fifo": (lambda: os.mkfifo(log), "it is a named pipe, not a regular file"),
        "directory": (lambda: log.mkdir(), "it is a directory, not a regular file"),
        "dev-null": (lambda: log.symlink_to(os.devnull),
                     "it is a symlink (to /dev/null); dotagent does not follow links in its "
                     "state directory"),
    }
    for make, words in cases.values():
        if log.is_dir() and not log.is_symlink():
            log.rmdir()
        else:
            log.unlink(missing_ok=True)
        make()
        p = dotagent("doctor", env=cli_env, cwd=tmp_path, timeout=30)
        assert p.returncode == 1, p.stdout
        assert _general_errors(p) == [f"error: {log}: {words}: nothing can be recorded "
                                      + ("(remove the link)" if "symlink" in words else
                                         "(move it aside; dotagent creates the file it needs)")]
        assert "'plain': manifest ok" in p.stdout  # the manifests are still checked
        report = json.loads(dotagent("doctor", "--json", env=cli_env, cwd=tmp_path).stdout)
        assert report["ok"] is False
        assert [(g["path"], g["severity"]) for g in report["general"]
                if g["severity"] == "error"] == [(str(log), "error")]


def test_doctor_fails_on_a_state_directory_that_is_a_link(tmp_path: Path,
                                                          cli_env: dict[str, str]) -> None:
    home = _home_with_a_run(cli_env, tmp_path)
    (home / "state").rename(tmp_path / "state-elsewhere")
    (home / "state").symlink_to(tmp_path / "state-elsewhere")
    p = dotagent("doctor", env=cli_env, cwd=tmp_path)
    assert p.returncode == 1
    assert _general_errors(p) == [
        f"error: {home / 'state'}: it is a symlink (to {tmp_path / 'state-elsewhere'}); "
        "dotagent does not follow links in its state directory: nothing can be recorded "
        "(remove the link)"]


def test_doctor_fails_on_a_read_only_home(tmp_path: Path, cli_env: dict[str, str]) -> None:
    import subprocess

    home = _home_with_a_run(cli_env, tmp_path)
    subprocess.run(["mount", "--bind", str(home), str(home)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(home)], check=True)
        p = dotagent("doctor", env=cli_env, cwd=tmp_path)
        assert p.returncode == 1, p.stdout
        assert _general_errors(p) == [
            f"error: {home}: DOTAGENT_HOME: the state directory is on a read-only file "
            "system: nothing can be recorded, and `run` refuses every agent"]
        assert dotagent("run", "plain", env=cli_env, cwd=tmp_path).returncode == 73
    finally:
        subprocess.run(["umount", str(home)], check=False)


def test_allowed_commands_match_through_a_symlinked_directory(
        tmp_path: Path, cli_env: dict[str, str]) -> None:
    # Merged /usr in miniature: bin -> usr/bin, and PATH names usr/bin.
    real = tmp_path / "usr" / "bin"
    real.mkdir(parents=True)
    (real / "tool").write_text("#!/bin/sh\n")
    (real / "tool").chmod(0o755)
    (real / "other").write_text("#!/bin/sh\n")
    (real / "other").chmod(0o755)
    (tmp_path / "bin").symlink_to("usr/bin")
    root = tmp_path / "r"
    simple_agent(root, "merged", "tool", [], extra=f'[security]\nallowed_commands = '
                 f'["{tmp_path}/bin/tool"]\n')
    cli_env.update(DOTAGENT_ROOT=str(root), PATH=f"{real}{os.pathsep}{cli_env['PATH']}")
    p = dotagent("doctor", env=cli_env, cwd=tmp_path)
    assert "is not in security.allowed_commands" not in p.stdout, p.stdout
    # Another name in the same directory is another command: still a warning.
    toml = root / "merged" / "agent.toml"
    toml.write_text(toml.read_text().replace('command = "tool"', 'command = "other"'))
    p = dotagent("doctor", env=cli_env, cwd=tmp_path)
    assert f"'other' ({real}/other) is not in security.allowed_commands" in p.stdout


def test_an_empty_filesystem_writable_entry_is_a_warning(tmp_path: Path,
                                                         cli_env: dict[str, str]) -> None:
    root = tmp_path / "r"
    simple_agent(root, "blank", "true", [],
                 extra=f'[security]\nfilesystem_writable = ["{tmp_path}", ""]\n')
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = dotagent("doctor", env=cli_env, cwd=tmp_path)
    toml = root / "blank" / "agent.toml"
    assert (f"    warning: {toml}:5: security.filesystem_writable[1]: is empty: name a path "
            "(an empty one would mean the working directory)") in p.stdout.splitlines()


def test_errors_and_warnings_are_listed_together_by_line(tmp_path: Path,
                                                         cli_env: dict[str, str]) -> None:
    root = tmp_path / "r"
    # A warning on line 2 (an unknown key), an error further down (interval 0).
    write_agent(root, "mixed", """
    [agent]
    name = "mixed"
    zzz = 1
    [run]
    command = "true"
    [[schedules]]
    id = "main"
    type = "interval"
    interval_minutes = 0
    """)
    cli_env["DOTAGENT_ROOT"] = str(root)
    p = dotagent("doctor", env=cli_env, cwd=tmp_path)
    listed = [line for line in p.stdout.splitlines() if line.startswith("    error: ")
              or line.startswith("    warning: ")]
    numbers = [int(line.split(".toml:", 1)[1].split(":", 1)[0]) if ".toml:" in line and
               line.split(".toml:", 1)[1].split(":", 1)[0].isdigit() else 0 for line in listed]
    assert numbers == sorted(numbers), listed
    assert any(line.startswith("    error: ") for line in listed)
    assert any(line.startswith("    warning: ") for line in listed)
