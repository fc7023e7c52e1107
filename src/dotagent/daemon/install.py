"""`install` / `uninstall`: put the daemon's unit file in place, or take it away (SPEC S11).

Only files: nothing here runs systemctl or launchctl (the reports carry the exact commands
to run next), and the only process started is `loginctl show-user`, read-only, to warn
when lingering is off. A unit at the path that dotagent did not write (no marker, a
symlink, not a regular file) is never replaced without `force`, and never removed.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dotagent.atomicfile import write_atomic
from dotagent.daemon.units import (
    LABEL,
    UnitSpec,
    launchd_plist,
    systemd_unit,
    written_by_dotagent,
)
from dotagent.display import printable
from dotagent.errors import DotagentError, ExistsError, StateError
from dotagent.fserrors import reporting
from dotagent.paths import Home
from dotagent.private import private_mkdir

__all__ = [
    "CARRIED_VARIABLES",
    "InstallReport",
    "Linger",
    "Manager",
    "UninstallReport",
    "check_linger",
    "daemon_argv",
    "default_manager",
    "install",
    "uninstall",
    "unit_path",
    "unit_spec",
]

Manager = Literal["systemd", "launchd"]
Action = Literal["created", "updated", "unchanged", "replaced"]

# Besides DOTAGENT_HOME (always written): the variables that choose what the daemon sees,
# carried into the unit when they are set where `install` runs, so that the daemon under
# the service manager sees the agents `dotagent doctor` shows in that shell.
CARRIED_VARIABLES = ("DOTAGENT_ROOT", "DOTAGENT_PLUGIN_PATH", "DOTAGENT_SECRETS_FILE",
                     "DOTAGENT_LOG")
_MAX_UNIT = 1 << 20  # a unit file of ours is ~1 KiB; anything this large is not ours


class UnsupportedPlatform(DotagentError):
    """Neither systemd nor launchd: nothing to install into."""


def default_manager(platform: str | None = None) -> Manager:
    platform = sys.platform if platform is None else platform
    if platform.startswith("linux"):
        return "systemd"
    if platform == "darwin":
        return "launchd"
    raise UnsupportedPlatform(f"`dotagent install` supports Linux (a systemd user unit) and "
                              f"macOS (a launchd agent), not {platform!r}: run "
                              "`dotagent daemon` under your own service manager")


def _user_home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME", "")
    if home:
        return Path(home)
    import pwd

    return Path(pwd.getpwuid(os.getuid()).pw_dir)


def unit_path(manager: Manager, env: Mapping[str, str]) -> Path:
    """Where the unit goes: systemd's first user unit directory (`$XDG_CONFIG_HOME`, when set
    to an absolute path, else `~/.config`), or `~/Library/LaunchAgents`."""
    if manager == "launchd":
        return _user_home(env) / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    config = env.get("XDG_CONFIG_HOME", "")
    base = Path(config) if config.startswith("/") else _user_home(env) / ".config"
    return base / "systemd" / "user" / f"{LABEL}.service"


def daemon_argv(argv0: str | None = None, executable: str | None = None,
                env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The command line that starts this dotagent's daemon.

    The entry point this process was started through (`sys.argv[0]`, made absolute but not
    resolved: a `~/.local/bin/dotagent` link made by pipx stays the link, so an upgrade that
    moves the target keeps working). Started as `python -m dotagent`, there is no entry
    point: the same interpreter (`sys.executable`, again unresolved: resolving a venv's
    `bin/python` link would leave the venv and lose its packages) with `-m dotagent`.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    name = os.path.basename(argv0)
    if argv0 and name not in ("__main__.py", "-c", "-m") and not name.endswith(".py"):
        path = argv0 if os.sep in argv0 else shutil.which(argv0, path=(env or {}).get("PATH"))
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return (os.path.abspath(path), "daemon")
    if not executable:
        raise StateError("cannot tell which program runs dotagent (no sys.argv[0] entry point "
                         "and no sys.executable)")
    return (os.path.abspath(executable), "-m", "dotagent", "daemon")


def unit_spec(home: Home, env: Mapping[str, str], argv: tuple[str, ...]) -> UnitSpec:
    environment = {"DOTAGENT_HOME": str(home.root)}
    for name in CARRIED_VARIABLES:
        if env.get(name):
            environment[name] = env[name]
    return UnitSpec(argv=argv, environment=environment, log_dir=home.root / "logs" / "daemon")


def render(manager: Manager, spec: UnitSpec) -> bytes:
    return launchd_plist(spec) if manager == "launchd" else systemd_unit(spec).encode()


# -- lingering --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Linger:
    """What `loginctl show-user USER -p Linger` said: "yes", "no", or "unknown" (with why)."""

    state: Literal["yes", "no", "unknown"]
    user: str
    detail: str = ""


def _user_name(env: Mapping[str, str]) -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        return env.get("USER", "") or str(os.getuid())


def check_linger(env: Mapping[str, str], *, timeout: float = 5.0) -> Linger:
    """Ask logind whether the user's manager outlives their sessions. Never raises."""
    user = _user_name(env)
    loginctl = shutil.which("loginctl", path=env.get("PATH"))
    if loginctl is None:
        return Linger("unknown", user, "loginctl is not on PATH")
    try:
        proc = subprocess.run([loginctl, "show-user", user, "-p", "Linger"],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                              check=False, env=dict(env))
    except subprocess.TimeoutExpired:
        return Linger("unknown", user, f"loginctl did not answer within {timeout:g} s")
    except OSError as exc:
        return Linger("unknown", user, f"loginctl could not be run: {exc.strerror or exc}")
    out = proc.stdout.decode(errors="replace")
    for line in out.splitlines():
        if line.strip() in ("Linger=yes", "Linger=no"):
            return Linger("yes" if line.strip().endswith("yes") else "no", user)
    said = (proc.stderr.decode(errors="replace").strip() or out.strip()).splitlines()
    why = printable(said[0]) if said else "no Linger= line"
    return Linger("unknown", user, f"loginctl exited {proc.returncode}: {why}")


# -- install / uninstall ---------------------------------------------------------------------

def _quoted(path: Path) -> str:
    return shlex.quote(str(path))


def _read_existing(path: Path) -> tuple[bytes | None, str | None]:
    """(content, None) for a regular file; (None, None) when absent; (None, why) when what is
    there cannot be a unit dotagent wrote (a symlink, a directory, too large)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        raise StateError(f"cannot read {printable(str(path))}: {exc.strerror}") from exc
    if stat.S_ISLNK(st.st_mode):
        try:
            to = f" to {printable(os.readlink(path))}"
        except OSError:
            to = ""
        return None, f"it is a symlink{to}, which dotagent never writes"
    if not stat.S_ISREG(st.st_mode):
        return None, "it is not a regular file"
    if st.st_size > _MAX_UNIT:
        return None, f"it is {st.st_size} bytes long, far more than a unit dotagent writes"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "it is a symlink, which dotagent never writes"
        raise StateError(f"cannot read {printable(str(path))}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(_MAX_UNIT + 1)
    if not written_by_dotagent(data):
        return None, "it does not carry dotagent's marker line"
    return data, None


@dataclass
class InstallReport:
    manager: Manager
    path: Path
    content: bytes
    action: Action
    dry_run: bool = False
    spec: UnitSpec | None = None
    linger: Linger | None = None
    next_steps: list[str] = field(default_factory=list)


def _next_steps(manager: Manager, action: Action, path: Path) -> list[str]:
    if manager == "launchd":
        domain = 'gui/"$(id -u)"'
        start = f"launchctl bootstrap {domain} {_quoted(path)}"
        if action == "updated":
            return [f"launchctl bootout {domain}/{LABEL}; {start}"]
        return [start]
    reload = "systemctl --user daemon-reload"
    if action == "updated":
        return [f"{reload} && systemctl --user restart {LABEL}",
                f"(not enabled yet? systemctl --user enable --now {LABEL})"]
    return [f"{reload} && systemctl --user enable --now {LABEL}"]


def install(manager: Manager, path: Path, spec: UnitSpec, *, force: bool = False,
            dry_run: bool = False) -> InstallReport:
    """Write the unit at `path` unless the same one is there; refuse (ExistsError) a file
    there that dotagent did not write, unless `force`. With `dry_run`, decide only."""
    content = render(manager, spec)
    existing, foreign = _read_existing(path)
    action: Action
    if foreign is not None:
        if not force:
            raise ExistsError(f"not replacing {printable(str(path))}: {foreign}, so dotagent "
                              "did not write it; move it away, or pass --force to replace it")
        action = "replaced"
    elif existing is None:
        action = "created"
    else:
        action = "unchanged" if existing == content else "updated"
    report = InstallReport(manager, path, content, action, dry_run=dry_run, spec=spec,
                           next_steps=_next_steps(manager, action, path))
    if dry_run:
        return report
    # systemd opens the `append:` files itself and does not create their directory.
    private_mkdir(spec.log_dir)
    if action != "unchanged":
        with reporting("write", path):
            # The unit's directory is the user's (~/.config/systemd/user): created 0700 when
            # missing, left as it is when present.
            private_mkdir(path.parent)
            if action == "replaced" and os.path.islink(path):
                os.unlink(path)  # replace the link itself, never the file it points to
        write_atomic(path, content)
    return report


@dataclass
class UninstallReport:
    manager: Manager
    path: Path
    removed: bool
    before: list[str] = field(default_factory=list)  # run first: stop and disable
    after: list[str] = field(default_factory=list)  # run then: forget the unit


def uninstall(manager: Manager, path: Path) -> UninstallReport:
    """Remove the unit at `path` if dotagent wrote it; a foreign one is refused (exit 1)."""
    if manager == "launchd":
        before = [f'launchctl bootout gui/"$(id -u)"/{LABEL}']
        after: list[str] = []
    else:
        before = [f"systemctl --user disable --now {LABEL}"]
        after = ["systemctl --user daemon-reload"]
    existing, foreign = _read_existing(path)
    if foreign is not None:
        raise DotagentError(f"not removing {printable(str(path))}: {foreign}, so dotagent did "
                            "not write it")
    if existing is None:
        return UninstallReport(manager, path, removed=False)
    with reporting("remove", path):
        os.unlink(path)
    return UninstallReport(manager, path, removed=True, before=before, after=after)
