"""The plugin client against real, hostile executables (SPEC S4.2, issue 9 item 1)."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import pytest

from dotagent.paths import Home
from dotagent.plugins.client import invoke
from dotagent.plugins.protocol import encode, invoke_payload
from plugin_kit import plugin_env, write_plugin


@pytest.fixture
def pdir(tmp_path: Path) -> Path:
    return tmp_path / "plugins"


def call(pdir: Path, name: str, verb: str = "invoke", payload: object = None,
         timeout: float = 10.0, **kw: object):
    return invoke(name, verb, payload, home=Home.from_env(), env=plugin_env(pdir),  # type: ignore[arg-type]
                  timeout=timeout, **kw)  # type: ignore[arg-type]


def test_payload_key_order_and_compact_json() -> None:
    payload = invoke_payload("sink", "a", "s", "success", "héllo", None)
    assert encode(payload) == ('{"kind":"sink","agent":"a","schedule":"s","event":"success",'
                               '"message":"héllo","config":null}').encode()


def test_ok_answer_with_suggest_and_stdin_seen(pdir: Path) -> None:
    write_plugin(pdir, "echo", "import sys, json\n"
                 "p = json.load(sys.stdin)\n"
                 "print(json.dumps({'ok': False, 'error': 'no', 'suggest': 'fix it', 'got': p}))\n")
    r = call(pdir, "echo", payload=invoke_payload("preflight", "a", "s", "preflight", None,
                                                  {"x": 1}))
    assert not r.ok and r.error == "no" and r.suggest == "fix it"
    assert r.data["got"] == {"kind": "preflight", "agent": "a", "schedule": "s",
                             "event": "preflight", "message": None, "config": {"x": 1}}
    assert r.exit_code == 0 and r.path == pdir / "dotagent-plugin-echo"


def test_upstream_shaped_sh_plugin_works_unchanged(pdir: Path) -> None:
    write_plugin(pdir, "shy", 'case "$1" in\n'
                 '  info) echo \'{"name":"shy","version":"1.0","kinds":["notify"],'
                 '"platforms":["linux","macos"],"schema":{}}\' ;;\n'
                 '  validate) cat >/dev/null; echo \'{"ok":true}\' ;;\n'
                 '  invoke) input=$(cat); echo "$input" >&2; echo \'{"ok":true}\' ;;\n'
                 '  *) exit 64 ;;\n'
                 'esac\n', python=False)
    info = call(pdir, "shy", "info")
    assert info.ok and info.data["kinds"] == ["notify"]
    assert call(pdir, "shy", "validate", {"a": 1}).ok
    r = call(pdir, "shy", payload=invoke_payload("notify", "a", "s", "given_up", "m", None))
    assert r.ok and '"kind":"notify"' in r.stderr


def test_hanging_plugin_is_killed_with_its_group(pdir: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    write_plugin(pdir, "hang", f"#!/bin/sh\nsleep 300 &\necho $! > {pidfile}\nwait\n",
                 python=False)
    t0 = time.monotonic()
    r = call(pdir, "hang", timeout=0.5, grace=0.5)
    assert time.monotonic() - t0 < 5
    assert not r.ok and r.timed_out
    assert r.error == "plugin hang.invoke exceeded 0.5s — killed"
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the plugin's grandchild outlived the call")


def test_fifty_megabytes_of_output_fails_with_bounded_memory(pdir: Path) -> None:
    write_plugin(pdir, "flood", "import sys\nblock = b'x' * 65536\n"
                 "for _ in range(800):\n    sys.stdout.buffer.write(block)\n"
                 "print('{\"ok\": true}')\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = call(pdir, "flood")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert not r.ok and r.error == "plugin flood.invoke printed more than 1 MiB on stdout — killed"
    assert (after - before) < 20 * 1024  # KiB: far below the 50 MB printed


@pytest.mark.parametrize(("out", "problem"), [
    ("hello", "stdout is not JSON"),
    ('{"ok": true}\n{"ok": true}', "more than one JSON document"),
    ("[1]", "stdout is a JSON array, not an object"),
    ('{"ok": "yes"}', '"ok" is a JSON string, not a bool'),
    ('{"error": "x"}', 'the answer has no "ok" field'),
    ("", "printed nothing"),
])
def test_wrong_shaped_output_is_a_failure(pdir: Path, out: str, problem: str) -> None:
    write_plugin(pdir, "bad", f"import sys\nsys.stdout.write({out!r})\n")
    r = call(pdir, "bad")
    assert not r.ok and problem in (r.error or ""), r.error


def test_nonzero_exit_names_code_and_stderr(pdir: Path) -> None:
    write_plugin(pdir, "boom", "import sys\nprint('{\"ok\": true, \"suggest\": \"x\"}')\n"
                 "sys.stderr.write('it broke\\n')\nsys.exit(3)\n")
    r = call(pdir, "boom")
    assert not r.ok and r.error == "plugin boom failed (exit 3): it broke"
    assert r.suggest is None and r.exit_code == 3


def test_exits_early_without_reading_a_large_stdin(pdir: Path) -> None:
    write_plugin(pdir, "early", "print('{\"ok\": true}')\n")
    big = invoke_payload("sink", "a", "s", "success", "y" * (8 * 1024 * 1024), None)
    t0 = time.monotonic()
    r = call(pdir, "early", payload=big)
    assert r.ok and time.monotonic() - t0 < 10


def test_never_reads_a_large_stdin_does_not_hang_us(pdir: Path) -> None:
    write_plugin(pdir, "deaf", "import time\ntime.sleep(60)\n")
    big = invoke_payload("sink", "a", "s", "success", "y" * (4 * 1024 * 1024), None)
    t0 = time.monotonic()
    r = call(pdir, "deaf", payload=big, timeout=1.0, grace=0.5)
    assert r.timed_out and time.monotonic() - t0 < 5


def test_missing_plugin_says_where_it_looked(pdir: Path) -> None:
    r = call(pdir, "nope")
    assert not r.ok and r.path is None
    assert r.error is not None and r.error.startswith("plugin not found: nope (no "
                                                      "dotagent-plugin-nope in ")
    assert str(pdir) in r.error


def test_not_executable_is_a_failure_not_a_crash(pdir: Path) -> None:
    path = write_plugin(pdir, "noexec", "print('{}')\n")
    path.chmod(0o644)
    r = call(pdir, "noexec")
    assert not r.ok and "could not start" in (r.error or "")


def test_spawn_and_exit_callbacks(pdir: Path) -> None:
    write_plugin(pdir, "ok", "print('{\"ok\": true}')\n")
    seen: list[object] = []
    r = call(pdir, "ok", on_spawn=lambda pid, argv, exe: seen.append(("spawn", argv[1])),
             on_exit=lambda pid: seen.append("exit"))
    assert r.ok and seen == [("spawn", "invoke"), "exit"]


def test_python_interpreter_is_this_one() -> None:
    assert Path(sys.executable).exists()
    assert json.loads(encode({"a": 1})) == {"a": 1}


def test_a_stop_request_ends_the_call(pdir: Path) -> None:
    import threading

    from dotagent.runner.process import StopRequest

    write_plugin(pdir, "hang2", "import time\ntime.sleep(60)\n")
    stop = StopRequest()
    try:
        threading.Timer(0.3, stop.request).start()
        t0 = time.monotonic()
        r = call(pdir, "hang2", timeout=30, grace=0.5, stop=stop)
        assert time.monotonic() - t0 < 5
        assert not r.ok and not r.timed_out
        assert r.error == "plugin hang2.invoke stopped: dotagent is shutting down"
    finally:
        stop.close()


def test_resolution_uses_the_calls_home(tmp_path: Path) -> None:
    home = Home(tmp_path / "otherhome")
    write_plugin(tmp_path / "otherhome" / "plugins", "homed", "print('{\"ok\": true}')\n")
    env = {k: v for k, v in os.environ.items() if k != "DOTAGENT_PLUGIN_PATH"}
    r = invoke("homed", "invoke", None, home=home, env=env, timeout=10)
    assert r.ok and r.path == tmp_path / "otherhome" / "plugins" / "dotagent-plugin-homed"


def test_control_characters_in_a_plugins_words_are_shown_as_escapes(pdir: Path) -> None:
    # Before: an answer's error/suggest (and a failing plugin's stderr) reached the terminal
    # and the daemon log raw: ANSI escapes ran, a newline faked a line of dotagent's own.
    write_plugin(pdir, "ansi", "import json\nprint(json.dumps({'ok': False, "
                 "'error': 'e\\x1b[31mRED\\x1b]0;pwn\\x07\\nfake line', "
                 "'suggest': 's\\x1b[2Jclear'}))\n")
    r = call(pdir, "ansi")
    assert r.error == "e\\x1b[31mRED\\x1b]0;pwn\\x07\\nfake line"
    assert r.suggest == "s\\x1b[2Jclear"
    write_plugin(pdir, "ansi2", "import sys\nsys.stderr.write('a\\x1b[2J\\nb\\n')\nsys.exit(2)\n")
    assert call(pdir, "ansi2").error == "plugin ansi2 failed (exit 2): a\\x1b[2J\\nb"
