"""`dotagent init NAME`: a new agent directory that is clean for `doctor` and runs as it is.

Two files: `agent.toml` (a daily schedule, a commented `[security]` section that says what
each key means) and `run.sh`, an executable POSIX-sh script. Nothing that exists is ever
overwritten: both files are created exclusively (`O_EXCL`), and when the second cannot be,
the first is taken back. The directory may already exist (a repository of scripts that gets
its manifest), but not its `agent.toml` or `run.sh`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from dotagent.display import printable, quote_name
from dotagent.errors import ExistsError, StateError, UsageError
from dotagent.fserrors import reason
from dotagent.paths import unsafe_reason

__all__ = ["MANIFEST", "SCRIPT", "Scaffold", "check_name", "create_agent", "manifest_text",
           "script_text"]

MANIFEST = "agent.toml"
SCRIPT = "run.sh"
_DIR_MODE = 0o700
_MANIFEST_MODE = 0o600
_SCRIPT_MODE = 0o700


def manifest_text(name: str) -> str:
    quoted = json.dumps(name)  # a safe name needs no escaping; a TOML basic string anyway
    return f"""\
# The manifest of the agent {quoted}, made by `dotagent init`. Every key is described in
# docs/manifest.md; `dotagent doctor` checks this file, `dotagent run {name}` runs it now.

[agent]
name = {quoted}
description = "What this agent does, in one line"
timeout_seconds = 300          # stopped (TERM, then KILL) when a run takes longer

[run]
command = "./{SCRIPT}"            # run directly, never through a shell; relative to this directory
args = []                      # extra arguments, each passed as it is

[[schedules]]
id = "daily"
type = "cron"
weekdays = []                  # empty = every day (0 = Sunday .. 6 = Saturday)
hours = [9]                    # 09:00 local time
minute = 0
# Other kinds: type = "interval" with interval_minutes = 15, or type = "expression" with a
# systemd OnCalendar expression such as "Mon..Fri 08:30".

# What this agent may do, enforced on every run (network and filesystem_writable through
# bubblewrap; a run that cannot be confined is refused). See docs/security.md.
[security]
# The commands [run].command may be (as written, or the file it resolves to).
allowed_commands = ["./{SCRIPT}"]
# The plugins its hooks and plugin notifiers may use; empty = any. Outside the list, a
# plugin is not run.
allowed_plugins = []
# The network it needs: "allow" or "deny" (host lists such as ["api.example.com"] are
# refused until dotagent can filter them).
network = "deny"
# The only paths it may write to besides $AGENT_TMPDIR (relative ones are taken from this
# directory); empty = the filesystem is not restricted.
filesystem_writable = []
# The only variables of dotagent's environment it gets; empty = as [env] inherit says.
env_passthrough = []
"""


def script_text(name: str) -> str:
    return f"""\
#!/bin/sh
# The agent '{name}'. dotagent runs this file directly (not through a shell of its own),
# in this directory, with AGENT_NAME, AGENT_SCHEDULE_ID, AGENT_DRY_RUN, AGENT_TMPDIR and
# the other variables of docs/manifest.md set. Exit 0 for success: any other status is a
# failure, which dotagent records, retries and tells you about.
set -eu

if [ "${{AGENT_DRY_RUN:-false}}" = "true" ]; then
    echo "$AGENT_NAME: dry run, nothing done"
    exit 0
fi

echo "hello from $AGENT_NAME (schedule ${{AGENT_SCHEDULE_ID:-none}})"
"""


@dataclass
class Scaffold:
    directory: Path
    created: list[Path] = field(default_factory=list)
    made_directory: bool = False


def check_name(name: str) -> None:
    why = unsafe_reason(name)
    if why is not None:
        raise UsageError(f"invalid agent name: {why} (the manifest rules: agent.name in "
                         "docs/manifest.md)")


def _makedirs(path: Path) -> list[Path]:
    """`mkdir -p` with 0700 for each directory made here; returns them, deepest last. A
    link on the way is the user's (an `agents` linked into a dotfiles repository)."""
    made: list[Path] = []
    missing = []
    current = path
    while not current.exists():
        if current.is_symlink():  # a dangling link: following it would create elsewhere
            raise StateError(f"cannot create {printable(str(path))}: "
                             f"{printable(str(current))} is a dangling symlink")
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, _DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(directory, _DIR_MODE)
        made.append(directory)
    if not path.is_dir():
        raise StateError(f"cannot create {printable(str(path))}: it is not a directory")
    return made


def _create(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    try:
        os.fchmod(fd, mode)
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)


def create_agent(name: str, directory: Path) -> Scaffold:
    """Create `directory` (if missing) with `agent.toml` and `run.sh` for agent `name`.

    ExistsError (exit 73) when either file is already there — nothing is written then;
    UsageError for a name the manifest rules refuse; StateError when it cannot be written."""
    check_name(name)
    targets = [(directory / MANIFEST, manifest_text(name), _MANIFEST_MODE),
               (directory / SCRIPT, script_text(name), _SCRIPT_MODE)]
    there = [p for p, _, _ in targets if os.path.lexists(p)]
    if there:
        shown = " and ".join(printable(str(p)) for p in there)
        verb = "exists" if len(there) == 1 else "exist"
        raise ExistsError(f"not creating agent {quote_name(name)}: {shown} already {verb}; "
                          "dotagent init never overwrites (choose another --dir, or move it "
                          "away)")
    result = Scaffold(directory)
    made: list[Path] = []
    try:
        made = _makedirs(directory)
        result.made_directory = bool(made)
        for path, text, mode in targets:
            _create(path, text, mode)
            result.created.append(path)
    except OSError as exc:
        for path in reversed(result.created):  # take back what this call wrote, only
            with contextlib.suppress(OSError):
                os.unlink(path)
        for made_dir in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(made_dir)
        if exc.errno == errno.EEXIST:
            raise ExistsError(f"not creating agent {quote_name(name)}: "
                              f"{printable(str(exc.filename))} appeared meanwhile; "
                              "nothing was written") from exc
        where = printable(str(exc.filename)) if exc.filename else printable(str(directory))
        raise StateError(f"cannot create agent {quote_name(name)} in "
                         f"{printable(str(directory))}: {where}: {reason(exc)}") from exc
    return result
