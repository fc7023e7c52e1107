"""The reference plugins (SPEC S4.4), installed as `dotagent-plugin-preflight-cmd` and
`dotagent-plugin-sink-file`. Each is a complete plugin in the protocol's own terms (argv
`[binary, verb]`, JSON on stdin, one JSON object on stdout, logs on stderr), standard library
only, so a copy works anywhere a Python 3 is.

`validate` treats a config it cannot use (not an object) as the defaults, as upstream does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

from dotagent import __version__

__all__ = ["preflight_cmd_main", "sink_file_main"]

PLATFORMS = ["linux", "macos"]


def _answer(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _die(message: str, code: int = 1) -> NoReturn:
    sys.stderr.write(message.rstrip("\n") + "\n")
    raise SystemExit(code)


def _read_stdin() -> Any:
    raw = sys.stdin.buffer.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        _die(f"stdin is not JSON: {exc}")


def _config_object(config: Any) -> dict[str, Any]:
    return config if isinstance(config, dict) else {}


def _verb(argv: list[str], name: str) -> str:
    if len(argv) != 2 or argv[1] not in ("info", "validate", "invoke"):
        _die(f"usage: dotagent-plugin-{name} info|validate|invoke", 2)
    return argv[1]


# ---------------------------------------------------------------------------------------
# preflight-cmd
# ---------------------------------------------------------------------------------------
PREFLIGHT_CMD_SCHEMA = {
    "type": "object",
    "required": ["command"],
    "properties": {
        "command": {"type": "string", "description": "executable to run (no shell)"},
        "args": {"type": "array", "items": {"type": "string"}, "default": []},
        "expect_exit": {"type": "integer", "default": 0},
        "expect_contains": {"type": "string",
                            "description": "text required in stdout or stderr "
                                           "(case-sensitive)"},
    },
}


def _preflight_validate(config: Any) -> dict[str, Any]:
    command = _config_object(config).get("command")
    if not isinstance(command, str) or not command:
        return {"ok": False, "error": "command is required"}
    return {"ok": True}


def _preflight_invoke(payload: Any) -> dict[str, Any]:
    config = payload.get("config") if isinstance(payload, dict) else None
    if config is None:
        _die("preflight-cmd: config is null (set command = \"...\")")
    cfg = _config_object(config)
    command = cfg.get("command")
    if not isinstance(command, str) or not command:
        _die("preflight-cmd: command is required")
    args = cfg.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        _die("preflight-cmd: args must be a list of strings")
    expect_exit = cfg.get("expect_exit", 0)
    if not isinstance(expect_exit, int) or isinstance(expect_exit, bool):
        expect_exit = 0
    expect_contains = cfg.get("expect_contains")
    try:
        proc = subprocess.run([command, *args], stdin=subprocess.DEVNULL,
                              capture_output=True, check=False)
    except (OSError, ValueError) as exc:
        _die(f"preflight-cmd: cannot run {command}: {exc}")
    code = proc.returncode
    passed = code == expect_exit
    if passed and isinstance(expect_contains, str):
        needle = expect_contains.encode("utf-8")
        passed = needle in proc.stdout or needle in proc.stderr
    if passed:
        return {"ok": True, "exit_code": code}
    return {"ok": False, "error": "preflight command failed", "exit_code": code}


def preflight_cmd_main(argv: list[str] | None = None) -> None:
    verb = _verb(sys.argv if argv is None else argv, "preflight-cmd")
    if verb == "info":
        _answer({"name": "preflight-cmd", "version": __version__, "kinds": ["preflight"],
                 "platforms": PLATFORMS, "schema": PREFLIGHT_CMD_SCHEMA})
    elif verb == "validate":
        _answer(_preflight_validate(_read_stdin()))
    else:
        _answer(_preflight_invoke(_read_stdin()))


# ---------------------------------------------------------------------------------------
# sink-file
# ---------------------------------------------------------------------------------------
SINK_FILE_SCHEMA = {
    "type": "object",
    "required": ["path"],
    "properties": {
        "path": {"type": "string", "description": "file to write; relative to the "
                                                  "plugin's working directory"},
        "mode": {"enum": ["overwrite", "append"], "default": "overwrite"},
    },
}


def _sink_validate(config: Any) -> dict[str, Any]:
    path = _config_object(config).get("path")
    if not isinstance(path, str) or not path:
        return {"ok": False, "error": "path is required"}
    return {"ok": True}


def _sink_invoke(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        _die("sink-file: the payload is not a JSON object")
    cfg = _config_object(payload.get("config"))
    path = cfg.get("path")
    if not isinstance(path, str) or not path:
        _die("sink-file: path is required")
    append = cfg.get("mode") == "append"
    message = payload.get("message")
    text = message if isinstance(message, str) else ""
    data = text.encode("utf-8", errors="surrogatepass")
    target = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    try:
        old_umask = os.umask(0o077)  # new directories 0700, a new file 0600
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
        finally:
            os.umask(old_umask)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as exc:
        _die(f"sink-file: cannot write {path}: {exc.strerror or exc}")
    return {"ok": True, "written_to": path}


def sink_file_main(argv: list[str] | None = None) -> None:
    verb = _verb(sys.argv if argv is None else argv, "sink-file")
    if verb == "info":
        _answer({"name": "sink-file", "version": __version__, "kinds": ["sink"],
                 "platforms": PLATFORMS, "schema": SINK_FILE_SCHEMA})
    elif verb == "validate":
        _answer(_sink_validate(_read_stdin()))
    else:
        _answer(_sink_invoke(_read_stdin()))
