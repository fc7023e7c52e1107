"""The reference plugins' behaviour table (SPEC S4.4), through the installed console
scripts and the real client."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from dotagent.paths import Home
from dotagent.plugins.client import PluginResult, invoke
from dotagent.plugins.protocol import invoke_payload

BIN = Path(sys.executable).parent


def call(name: str, verb: str, payload: Any) -> PluginResult:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return invoke(name, verb, payload, home=Home.from_env(), env=env,  # type: ignore[arg-type]
                  timeout=30)


def pre(config: Any) -> PluginResult:
    return call("preflight-cmd", "invoke", invoke_payload("preflight", "a", "s", "preflight",
                                                           None, config))


def sink(config: Any, message: str | None) -> PluginResult:
    return call("sink-file", "invoke", invoke_payload("sink", "a", "s", "success", message,
                                                       config))


def test_info() -> None:
    for name, kind in (("preflight-cmd", "preflight"), ("sink-file", "sink")):
        r = call(name, "info", None)
        assert r.ok, r.error
        assert r.data["name"] == name and r.data["kinds"] == [kind]
        assert "linux" in r.data["platforms"] and r.data["schema"]["type"] == "object"
        assert isinstance(r.data["version"], str)


@pytest.mark.parametrize(("name", "config", "error"), [
    ("preflight-cmd", {}, "command is required"),
    ("preflight-cmd", "not an object", "command is required"),
    ("preflight-cmd", None, "command is required"),
    ("preflight-cmd", {"command": "true"}, None),
    ("sink-file", {}, "path is required"),
    ("sink-file", [1, 2], "path is required"),
    ("sink-file", {"path": "x"}, None),
])
def test_validate(name: str, config: Any, error: str | None) -> None:
    r = call(name, "validate", config)
    assert r.ok is (error is None) and r.error == error
    assert r.exit_code == 0


@pytest.mark.parametrize(("config", "answer"), [
    ({"command": "true"}, {"ok": True, "exit_code": 0}),
    ({"command": "false"}, {"ok": False, "error": "preflight command failed", "exit_code": 1}),
    ({"command": "false", "expect_exit": 1}, {"ok": True, "exit_code": 1}),
    ({"command": "sh", "args": ["-c", "echo Connected >&2"], "expect_contains": "Connected"},
     {"ok": True, "exit_code": 0}),
    ({"command": "sh", "args": ["-c", "echo connected"], "expect_contains": "Connected"},
     {"ok": False, "error": "preflight command failed", "exit_code": 0}),
    ({"command": "sh", "args": ["-c", "echo ready; exit 3"], "expect_exit": 3,
      "expect_contains": "ready"}, {"ok": True, "exit_code": 3}),
])
def test_preflight_cmd_invoke(config: dict[str, Any], answer: dict[str, Any]) -> None:
    r = pre(config)
    assert r.data == answer and r.exit_code == 0


@pytest.mark.parametrize("config", [None, {"command": "/nonexistent/cmd"}, {}])
def test_preflight_cmd_fails_with_nonzero_exit(config: Any) -> None:
    r = pre(config)
    assert not r.ok and r.exit_code not in (0, None)
    assert r.error is not None and r.error.startswith("plugin preflight-cmd failed (exit 1): ")


def test_sink_file_overwrite_append_and_privacy(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "out.txt"
    r = sink({"path": str(target)}, "one\n")
    assert r.data == {"ok": True, "written_to": str(target)}
    assert target.read_bytes() == b"one\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    sink({"path": str(target)}, "two")
    assert target.read_text() == "two"
    sink({"path": str(target), "mode": "append"}, "三")
    assert target.read_text() == "two三"  # no separator
    sink({"path": str(target), "mode": "sideways"}, "over")  # unknown mode: overwrite
    assert target.read_text() == "over"
    sink({"path": str(target)}, None)  # null message: empty file
    assert target.read_bytes() == b""


def test_sink_file_relative_path_is_the_plugins_cwd(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = sink({"path": "rel/out.txt"}, "x")
    assert r.ok and (tmp_path / "rel" / "out.txt").read_text() == "x"


def test_sink_file_io_error_exits_nonzero(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    r = sink({"path": str(tmp_path / "file" / "below")}, "x")
    assert not r.ok and r.exit_code == 1
    assert "sink-file: cannot write" in (r.error or "")
    assert not sink({}, "x").ok
