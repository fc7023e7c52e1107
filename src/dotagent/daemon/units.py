"""The service-manager files that keep the daemon running (SPEC S11), as pure text.

`systemd_unit` renders the systemd user unit, `launchd_plist` the launchd agent; both are
functions of a `UnitSpec` only, so the same spec always gives the same bytes (which is what
makes `install` idempotent). Upstream wrote its paths unescaped and no environment; here:

- every path is quoted by the rules of the setting it appears in (they differ: see
  `systemd_exec_path`, `systemd_env_assignment`, `systemd_file_path`), and a path systemd
  cannot hold at all is refused with the reason instead of written broken;
- `DOTAGENT_HOME` (and the other `DOTAGENT_*` variables that choose what the daemon sees,
  when they were set) is written into the unit, so the daemon uses the home `install` was
  run for, whatever the service manager's environment says.

Each file carries a marker (a comment line; an XML comment in the plist) so that `install`
and `uninstall` only ever replace or remove a file dotagent wrote.
"""

from __future__ import annotations

import plistlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from dotagent.display import printable
from dotagent.errors import DotagentError

__all__ = [
    "LABEL",
    "LAUNCHD_MARKER",
    "SYSTEMD_MARKER",
    "UnitSpec",
    "UnquotablePath",
    "launchd_plist",
    "systemd_env_assignment",
    "systemd_exec_path",
    "systemd_file_path",
    "systemd_unit",
    "written_by_dotagent",
]

LABEL = "run.avelino.dotagent"
SYSTEMD_MARKER = (f"# Written by `dotagent install` ({LABEL}); `dotagent uninstall` removes "
                  "it. Edits are replaced by the next install.")
LAUNCHD_MARKER = (f"<!-- Written by `dotagent install` ({LABEL}); `dotagent uninstall` "
                  "removes it. Edits are replaced by the next install. -->")
_MARKER_PREFIXES = tuple(m.split(";")[0].encode() for m in (SYSTEMD_MARKER, LAUNCHD_MARKER))
# The daemon's own files under <home>/logs/daemon: what the service manager captures.
STDOUT_LOG = f"{LABEL}.log"
STDERR_LOG = f"{LABEL}-error.log"


class UnquotablePath(DotagentError):
    """A path (or value) that the service manager's file format cannot carry."""


@dataclass(frozen=True)
class UnitSpec:
    """What the daemon's service runs: `argv` (absolute program first), its environment, and
    the directory its standard output and error are appended to."""

    argv: tuple[str, ...]
    environment: dict[str, str] = field(default_factory=dict)
    log_dir: Path = Path("/")

    @property
    def stdout_log(self) -> Path:
        return self.log_dir / STDOUT_LOG

    @property
    def stderr_log(self) -> Path:
        return self.log_dir / STDERR_LOG


# -- systemd quoting ------------------------------------------------------------------------
# systemd.syntax(7) and systemd.exec(5). Three settings, three sets of rules:
# - ExecStart='s program is unquoted and C-unescaped, then must not contain a quote, a
#   backslash or a control character at all ("Executable name contains special
#   characters"); `$` is not expanded in it (in arguments it is, and `$$` is a `$`).
# - Environment= is unquoted and C-unescaped; `$` has no special meaning there.
# - StandardOutput=append:PATH takes the rest of the line as it is: no unquoting at all.
# All three expand %-specifiers, so a `%` is always written `%%`.

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_text(value: str, what: str) -> None:
    if _CONTROL.search(value) or any(unicodedata.category(ch) == "Cc" for ch in value):
        raise UnquotablePath(f"{what} {printable(value)} contains a control character, "
                             "which a unit file cannot hold")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UnquotablePath(f"{what} {printable(value)} is not valid UTF-8, which a "
                             "systemd unit must be") from None


def systemd_exec_path(path: str) -> str:
    """The program of `ExecStart=`, quoted (double quotes keep spaces in one word)."""
    _check_text(path, "the program path")
    bad = sorted({ch for ch in path if ch in "\"'\\"})
    if bad:
        shown = " ".join(bad)
        raise UnquotablePath(f"the program path {printable(path)} contains {shown}: systemd "
                             "refuses such an executable name whatever the quoting; install "
                             "dotagent at a path without quotes or backslashes (or link it "
                             "from one) and run `install` from there")
    return '"' + path.replace("%", "%%") + '"'


def systemd_env_assignment(name: str, value: str) -> str:
    """One `Environment=` item, `"NAME=value"` with `\\` and `"` escaped, `%` doubled."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise UnquotablePath(f"{printable(name)} is not an environment variable name systemd "
                             "accepts")
    _check_text(value, f"the value of {name}")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{name}={escaped}"'


def systemd_file_path(path: Path) -> str:
    """A path after `append:`: written as it is, only `%` doubled (systemd unquotes nothing
    there). Its ends must not be blank: systemd strips a line's surrounding whitespace."""
    text = str(path)
    _check_text(text, "the log path")
    if not text.startswith("/") or text != text.strip():
        raise UnquotablePath(f"the log path {printable(text)} must be absolute and must not "
                             "end in a space")
    return text.replace("%", "%%")


def systemd_unit(spec: UnitSpec) -> str:
    """The text of `run.avelino.dotagent.service`."""
    program, *args = spec.argv
    for arg in args:  # constant words today ("daemon", "-m", "dotagent"), checked anyway
        if not re.fullmatch(r"[A-Za-z0-9._-]+", arg):
            raise UnquotablePath(f"argument {printable(arg)} is not a plain word")
    exec_start = " ".join([systemd_exec_path(program), *args])
    lines = [
        SYSTEMD_MARKER,
        "[Unit]",
        f"Description=dotagent daemon ({LABEL})",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_start}",
    ]
    lines += [f"Environment={systemd_env_assignment(k, v)}"
              for k, v in sorted(spec.environment.items())]
    lines += [
        "Restart=always",
        "RestartSec=10",
        # Refusals a restart cannot cure: the installation differs from the recorded one
        # (77; `dotagent selfcheck --record` after an upgrade) or config.toml is invalid (78).
        "RestartPreventExitStatus=77 78",
        # The daemon stops its agents itself (TERM, grace, KILL, each run recorded) and then
        # drains its notifiers; systemd only kills what is left when the daemon has exited.
        "KillMode=mixed",
        # What the daemon and its agents create is private, whatever the manager's umask.
        "UMask=0077",
        f"StandardOutput=append:{systemd_file_path(spec.stdout_log)}",
        f"StandardError=append:{systemd_file_path(spec.stderr_log)}",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


# -- launchd --------------------------------------------------------------------------------

def launchd_plist(spec: UnitSpec) -> bytes:
    """The bytes of `run.avelino.dotagent.plist` (plistlib does the XML escaping)."""
    for value in (*spec.argv, *spec.environment.values(), str(spec.log_dir)):
        _check_text(value, "the value")  # XML 1.0 holds no control character either
    body: dict[str, object] = {
        "Label": LABEL,
        "ProgramArguments": list(spec.argv),
        "RunAtLoad": True,
        "KeepAlive": True,
        "ProcessType": "Background",
        "ThrottleInterval": 10,
        "Umask": 0o077,
        "StandardOutPath": str(spec.stdout_log),
        "StandardErrorPath": str(spec.stderr_log),
    }
    if spec.environment:
        body["EnvironmentVariables"] = dict(sorted(spec.environment.items()))
    data = plistlib.dumps(body, fmt=plistlib.FMT_XML, sort_keys=True)
    head, sep, rest = data.partition(b"<plist ")
    return head + LAUNCHD_MARKER.encode() + b"\n" + sep + rest


def written_by_dotagent(data: bytes) -> bool:
    """Whether a unit file's bytes carry dotagent's marker: a line starting as the marker
    does (its wording after the label may change between versions)."""
    return any(line.startswith(_MARKER_PREFIXES) for line in data.splitlines())
