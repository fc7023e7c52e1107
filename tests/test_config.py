"""config.toml: a partial overlay over defaults, validated like a manifest (docs/config.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from datetime import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from dotagent.config import Config, SummaryNotifier, load_config, parse_config
from dotagent.errors import EX_CONFIG, ConfigError
from dotagent.paths import Home

from conftest import REPO
from helpers import dotagent

SHOWN = Path("/h/config.toml")


def parse(body: str) -> Any:
    return parse_config(textwrap.dedent(body).lstrip().encode(), SHOWN)


def lines(problems: list[Any]) -> list[str]:
    return [str(p) for p in problems]


# -- defaults and overlays ------------------------------------------------------------------
def test_missing_file_gives_the_defaults(dotagent_home: Path) -> None:
    result = load_config(dotagent_home)
    assert (result.exists, result.ok, result.errors, result.warnings) == (False, True, [], [])
    assert result.config == Config()
    assert result.path == dotagent_home / "config.toml"
    assert load_config(Home(dotagent_home)).config == Config()


def test_defaults_are_the_documented_ones() -> None:
    c = Config()
    assert (c.logging.level, c.logging.format, c.logging.retention_days,
            c.logging.per_agent_retention_days, c.logging.compress_after_days) == \
        ("info", "json", 30, 14, 1)
    assert (c.telemetry.otlp_endpoint, c.telemetry.protocol, c.telemetry.service_name,
            c.telemetry.resource, c.telemetry.headers) == ("", "grpc", "dotagent", {}, {})
    assert c.secrets.file == ""
    assert (c.daemon.max_concurrent_runs, c.daemon.max_runs_per_agent,
            c.daemon.rescan_minutes, c.daemon.shutdown_grace_seconds) == (10, 1, 30, 5)
    assert (c.power.on_battery, c.power.min_battery_percent) == ("run", 0)
    assert (c.state.window_retention_days, c.state.history_retention_days) == (30, 90)
    assert (c.daily_summary.enabled, c.daily_summary.time, c.daily_summary.grace_minutes,
            c.daily_summary.notifiers) == (True, time(22, 45), 30, [])
    assert c.security.enforcement == "enforce"


def test_empty_file_and_partial_overlay() -> None:
    assert parse("").config == Config()
    result = parse("""
        [daemon]
        max_concurrent_runs = 4
        [power]
        on_battery = "defer"
        """)
    assert (result.errors, result.warnings) == ([], [])
    c = result.config
    assert c.daemon.max_concurrent_runs == 4 and c.power.on_battery == "defer"
    assert c.daemon.rescan_minutes == 30 and c.power.min_battery_percent == 0
    assert c.logging == Config().logging and c.daily_summary == Config().daily_summary


def test_reads_through_the_home(dotagent_home: Path) -> None:
    (dotagent_home / "config.toml").write_text("[state]\nhistory_retention_days = 7\n")
    result = load_config(dotagent_home)
    assert result.exists and result.ok
    assert result.require().state.history_retention_days == 7


# -- errors ------------------------------------------------------------------------------
def test_every_error_is_located_and_nothing_falls_back_to_defaults() -> None:
    result = parse("""
        [daemon]
        max_concurrent_runs = "10"
        shutdown_grace_seconds = -1
        [power]
        on_battery = "deffer"
        min_battery_percent = 101
        [logging]
        format = "pretty"
        level = "loud"
        [state]
        window_retention_days = 1.5
        [telemetry]
        otlp_endpoint = "localhost:4317"
        resource = { a = 1 }
        [security]
        enforcement = "strict"
        """)
    assert result.config is None and not result.ok
    assert lines(result.errors) == [
        '/h/config.toml:2: daemon.max_concurrent_runs: expected an integer, got a string '
        '("10")',
        "/h/config.toml:3: daemon.shutdown_grace_seconds: -1 is negative (expected 1..60 "
        "seconds; larger values are lowered to the limit)",
        "/h/config.toml:5: power.on_battery: \"deffer\" is not allowed (expected 'run' or "
        "'defer')",
        "/h/config.toml:6: power.min_battery_percent: 101 is out of range (0..100)",
        "/h/config.toml:8: logging.format: \"pretty\" is not allowed (expected 'json' or "
        "'text')",
        "/h/config.toml:9: logging.level: \"loud\" is not allowed (expected 'error', 'warn', "
        "'info', 'debug', 'trace' or 'off')",
        "/h/config.toml:11: state.window_retention_days: expected an integer, got a float "
        "(1.5)",
        "/h/config.toml:13: telemetry.otlp_endpoint: 'localhost:4317' is not an http(s) URL",
        "/h/config.toml:14: telemetry.resource.a: expected a string, got an integer (1)",
        "/h/config.toml:16: security.enforcement: \"strict\" is not allowed (expected "
        "'enforce' or 'warn')",
    ]
    with pytest.raises(ConfigError) as caught:
        result.require()
    assert caught.value.sysexit == EX_CONFIG == 78
    assert caught.value.message.splitlines()[0] == "invalid configuration:"
    assert caught.value.message.splitlines()[1:] == [f"  {ln}" for ln in lines(result.errors)]


def test_a_section_of_the_wrong_kind_is_an_error() -> None:
    result = parse("""
        daemon = 5
        [daily_summary]
        notifiers = "desktop"
        [[state]]
        windows = 3
        """)
    assert lines(result.errors) == [
        "/h/config.toml:1: daemon: expected a table, got an integer (5)",
        "/h/config.toml:3: daily_summary.notifiers: expected an array, got a string "
        '("desktop")',
        "/h/config.toml:4: state: expected a table, got an array",
    ]
    assert result.warnings == []  # the keys of a table that is not one are not guessed at


def test_syntax_and_encoding_errors_carry_a_line() -> None:
    result = parse("[daemon]\nmax_concurrent_runs = 4\n[power\n")
    assert lines(result.errors) == ["/h/config.toml:3: TOML syntax error: Expected ']' at the "
                                    "end of a table declaration (column 7)"]
    assert result.config is None
    result = parse_config(b"[daemon]\n# caf\xe9\n", SHOWN)
    assert lines(result.errors) == ["/h/config.toml:2: file is not valid UTF-8"]
    result = parse_config(b"x = " + b"[" * 2000 + b"]" * 2000 + b"\n", SHOWN)
    assert result.errors and result.errors[0].message.startswith("TOML syntax error")


@pytest.mark.timeout(10)
def test_unreadable_files_are_located_errors_and_never_block(dotagent_home: Path) -> None:
    target = dotagent_home / "config.toml"
    shown = str(target)
    target.mkdir()
    assert lines(load_config(dotagent_home).errors) == [
        f"{shown}: cannot read: not a regular file"]
    target.rmdir()
    os.mkfifo(target)  # opening a FIFO for reading would block without O_NONBLOCK
    assert lines(load_config(dotagent_home).errors) == [
        f"{shown}: cannot read: not a regular file"]
    target.unlink()
    target.symlink_to("/dev/zero")
    assert lines(load_config(dotagent_home).errors) == [
        f"{shown}: cannot read: not a regular file"]
    target.unlink()
    target.symlink_to(dotagent_home / "gone.toml")
    result = load_config(dotagent_home)
    assert lines(result.errors) == [
        f"{shown}: cannot read: it is a symlink to a file that does not exist"]
    assert result.config is None and result.exists
    target.unlink()
    target.write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    assert lines(load_config(dotagent_home).errors) == [
        f"{shown}: cannot read: larger than 1024 KiB"]


def test_a_home_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("")
    assert lines(load_config(home).errors) == [
        f"{home}/config.toml: cannot read: {home} is not a directory"]


# -- warnings ----------------------------------------------------------------------------
def test_clamps_load_the_limit_with_a_warning() -> None:
    result = parse("""
        [daemon]
        max_concurrent_runs = 100
        max_runs_per_agent = 3
        rescan_minutes = 0
        shutdown_grace_seconds = 600
        [daily_summary]
        grace_minutes = 0
        """)
    assert result.errors == []
    d = result.config.daemon
    assert (d.max_concurrent_runs, d.max_runs_per_agent, d.rescan_minutes,
            d.shutdown_grace_seconds) == (64, 1, 1, 60)
    assert result.config.daily_summary.grace_minutes == 1
    assert lines(result.warnings) == [
        "/h/config.toml:2: daemon.max_concurrent_runs: 100 → 64 (safety limit: 1..64 runs at "
        "once)",
        "/h/config.toml:3: daemon.max_runs_per_agent: 3 → 1 (safety limit: one run per agent "
        "at a time)",
        "/h/config.toml:4: daemon.rescan_minutes: 0 → 1 (safety limit: 1..1440 minutes)",
        "/h/config.toml:5: daemon.shutdown_grace_seconds: 600 → 60 (safety limit: 1..60 "
        "seconds)",
        "/h/config.toml:7: daily_summary.grace_minutes: 0 → 1 (safety limit: 1..1440 minutes)",
    ]
    assert [(c.field, c.declared, c.effective) for c in result.clamps][:2] == [
        ("daemon.max_concurrent_runs", 100, 64), ("daemon.max_runs_per_agent", 3, 1)]
    assert all(w.severity == "warning" for w in result.warnings)


def test_unknown_keys_warn_with_a_suggestion_at_every_level() -> None:
    result = parse("""
        [demon]
        x = 1
        [daemon]
        max_concurent_runs = 3
        [[daily_summary.notifiers]]
        driver = "desktop"
        anything = "the notifier's own"
        [telemetry.resource]
        free = "form"
        """)
    assert result.errors == []
    assert lines(result.warnings) == [
        "/h/config.toml:1: demon: unknown key, ignored (did you mean 'daemon'?)",
        "/h/config.toml:4: daemon.max_concurent_runs: unknown key, ignored (did you mean "
        "'max_concurrent_runs'?)",
    ]
    assert result.config.daemon.max_concurrent_runs == 10


def test_upstream_sections_we_leave_out_load_with_a_warning() -> None:
    result = parse("""
        [telegram]
        bot_token = "123:abc"
        allowed_user_ids = [1]
        [memory]
        enabled = true
        [skills]
        paths = []
        [commands]
        enabled = false
        [os]
        enabled = true
        [[os.tool]]
        bin = "ls"
        [daemon]
        max_concurrent_runs = 2
        """)
    assert result.errors == [] and result.config.daemon.max_concurrent_runs == 2
    assert lines(result.warnings) == [
        f"/h/config.toml:{line}: {name}: not used by this implementation (it configures "
        f"upstream's {what}); ignored"
        for line, name, what in ((1, "telegram", "Telegram chat"),
                                 (4, "memory", "memory workspace"), (6, "skills", "skills"),
                                 (8, "commands", "slash commands"),
                                 (10, "os", "commands from chat"))]


def test_log_level_spellings() -> None:
    for written, level in (("INFO", "info"), ("warning", "warn"), ("Debug", "debug"),
                           ("off", "off")):
        result = parse(f'[logging]\nlevel = "{written}"\n')
        assert (result.errors, result.warnings) == ([], []), written
        assert result.config.logging.level == level
    result = parse('[logging]\nlevel = "warn,dotagent=debug"\n')
    assert result.config.logging.level == "warn"
    assert lines(result.warnings) == [
        '/h/config.toml:2: logging.level: "warn,dotagent=debug": per-target filter directives '
        "are not supported here; using 'warn' for everything"]
    assert parse('[logging]\nlevel = "dotagent=debug"\n').config.logging.level == "info"
    assert parse("[logging]\nlevel = 3\n").errors[0].message == \
        "3 is not allowed (expected 'error', 'warn', 'info', 'debug', 'trace' or 'off')"


def test_secrets_file_must_be_absolute() -> None:
    result = parse('[secrets]\nfile = "secrets/prod.env"\n')
    assert result.errors == [] and result.config.secrets.file == ""
    assert lines(result.warnings) == [
        '/h/config.toml:2: secrets.file: "secrets/prod.env" is not an absolute path; ignored '
        "(secrets are read from $DOTAGENT_SECRETS_FILE or $DOTAGENT_HOME/secrets.env instead)"]
    result = parse('[secrets]\nfile = "/etc/me/secrets.env"\n')
    assert (result.warnings, result.config.secrets.file) == ([], "/etc/me/secrets.env")


# -- [daily_summary] ------------------------------------------------------------------------
def test_summary_time_forms() -> None:
    for written, expected in (('"22:45"', time(22, 45)), ('"07:05:09"', time(7, 5, 9)),
                              ('"7:30"', time(7, 30)), ("06:15:00", time(6, 15))):
        result = parse(f"[daily_summary]\ntime = {written}\n")
        assert result.errors == [], written
        assert result.config.daily_summary.time == expected
    for written in ('"24:00"', '"22:60"', '"22h45"', '"22:45:00+01:00"', "22", "true",
                    "2026-01-01T22:45:00Z"):
        result = parse(f"[daily_summary]\ntime = {written}\n")
        [err] = result.errors
        assert (err.line, err.field) == (2, "daily_summary.time"), written
        assert err.message.endswith('is not a time of day (expected "HH:MM" or "HH:MM:SS" in '
                                    'local time, e.g. "22:45")'), err.message


def test_summary_notifiers_keep_their_tables_and_need_a_driver() -> None:
    result = parse("""
        [[daily_summary.notifiers]]
        driver = "ntfy"
        topic = "agents"
        priority = 4
        [[daily_summary.notifiers]]
        driver = "plugin"
        name = "mail"
        config = { to = ["me@example.com"] }
        """)
    assert result.errors == [] and result.warnings == []
    first, second = result.config.daily_summary.notifiers
    assert isinstance(first, SummaryNotifier) and first.driver == "ntfy"
    assert first.table() == {"driver": "ntfy", "topic": "agents", "priority": 4}
    assert second.table() == {"driver": "plugin", "name": "mail",
                              "config": {"to": ["me@example.com"]}}
    result = parse("""
        [daily_summary]
        notifiers = [{ topic = "x" }, 5, { driver = "" }, { driver = 1 }]
        """)
    assert [(e.field, e.message) for e in result.errors] == [
        ("daily_summary.notifiers[0].driver", "required field is missing"),
        ("daily_summary.notifiers[1]", "expected a table, got an integer (5)"),
        ("daily_summary.notifiers[2].driver", "must not be empty"),
        ("daily_summary.notifiers[3].driver", "expected a string, got an integer (1)"),
    ]


# -- the documented example --------------------------------------------------------------
def _example() -> str:
    text = (REPO / "docs/config.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S)
    assert block is not None
    return block.group(1)


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, info in model.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel) and sub is not SummaryNotifier:
            out |= _keys(sub, f"{prefix}{name}.")
        else:
            out.add(f"{prefix}{name}")
    return out


def test_the_complete_example_loads_clean_and_names_every_key() -> None:
    example = _example()
    result = parse_config(example.encode(), Path("docs/config.md"))
    assert (result.errors, result.warnings) == ([], [])
    written: set[str] = set()
    for section, table in tomllib.loads(example).items():
        if isinstance(table, list):  # an array of tables ([[notifiers]]): free-form entries
            written.add(section)
            continue
        written |= {f"{section}.{key}" for key in table}
    assert written == _keys(Config)
    doc = (REPO / "docs/config.md").read_text()
    for key in sorted(_keys(Config)):
        if "." not in key:
            assert f"[[{key}]]" in doc, key
            continue
        section, name = key.split(".")
        assert f"`{name}`" in doc or f"[{section}.{name}]" in doc, key


# -- doctor and start-up ---------------------------------------------------------------
def test_doctor_reports_config_problems(dotagent_home: Path, cli_env: dict[str, str]) -> None:
    config = dotagent_home / "config.toml"
    config.write_text("[daemon]\nmax_concurrent_runs = 100\nmax_concurent = 1\n")
    config.chmod(0o600)  # a private file: no permission warning in the counts below
    p = dotagent("doctor", env=cli_env)
    assert p.returncode == 0, p.stdout
    assert f"warning: {config}:2: daemon.max_concurrent_runs: 100 → 64 (safety limit: 1..64 " \
        "runs at once)" in p.stdout
    assert f"warning: {config}:3: daemon.max_concurent: unknown key, ignored (did you mean " \
        "'max_concurrent_runs'?)" in p.stdout
    assert "summary: 0 agent(s), 0 error(s), 2 warning(s)" in p.stdout

    config.write_text("[power]\nmin_battery_percent = 150\n")
    p = dotagent("doctor", env=cli_env)
    assert p.returncode == 1
    assert f"error: {config}:2: power.min_battery_percent: 150 is out of range (0..100)" \
        in p.stdout
    p = dotagent("doctor", "--json", env=cli_env)
    report = json.loads(p.stdout)
    assert (p.returncode, report["ok"]) == (1, False)
    assert report["general"] == [{
        "path": str(config), "line": 2, "field": "power.min_battery_percent",
        "message": "150 is out of range (0..100)", "severity": "error"}]

    config.unlink()
    config.mkdir()
    p = dotagent("doctor", "--json", env=cli_env)
    assert p.returncode == 1
    assert json.loads(p.stdout)["general"] == [{
        "path": str(config), "line": None, "field": None,
        "message": "cannot read: not a regular file", "severity": "error"}]


def test_doctor_is_silent_about_a_missing_or_clean_config(dotagent_home: Path,
                                                         cli_env: dict[str, str]) -> None:
    p = dotagent("doctor", "--json", env=cli_env)
    assert (p.returncode, json.loads(p.stdout)["general"]) == (0, [])
    (dotagent_home / "config.toml").write_text(_example())
    (dotagent_home / "config.toml").chmod(0o600)
    p = dotagent("doctor", "--json", env=cli_env)
    assert (p.returncode, json.loads(p.stdout)["general"]) == (0, [])


def test_version_imports_neither_config_nor_power() -> None:
    code = ("import sys; from dotagent.cli import main; main(['--version']); "
            "print(sorted(m for m in ('dotagent.config', 'dotagent.power', 'pydantic') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines()[-1] == "[]"


# -- never a traceback ---------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_value(k)} = {_toml_value(v)}"
                               for k, v in value.items()) + "}"
    return repr(value)


def _fuzz_strategy() -> Any:
    from hypothesis import strategies as st

    sections = sorted({*Config.model_fields, "telegram", "os", "nonsense"})
    keys = sorted({k for name in Config.model_fields
                   for k in getattr(Config.model_fields[name].annotation, "model_fields", ())}
                  | {"driver", "x", "max_concurent_runs", "events"})
    text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
    scalar = st.one_of(st.integers(-300, 300), st.booleans(), text,
                       st.floats(allow_nan=False, allow_infinity=False),
                       st.sampled_from(["22:45", "7:5", "run", "defer", "warn", "json",
                                        "http://x", "/abs", "rel", "", "info,a=b"]))
    value = st.recursive(scalar, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(keys), inner,
                                                     max_size=3)), max_leaves=6)
    return st.dictionaries(st.sampled_from(sections),
                           st.dictionaries(st.sampled_from(keys), value, max_size=5),
                           max_size=6)


def test_any_document_gives_a_config_or_located_errors_never_a_traceback() -> None:
    from hypothesis import given, settings

    @settings(max_examples=300, deadline=None)
    @given(_fuzz_strategy())
    def check(doc: dict[str, dict[str, Any]]) -> None:
        body = "".join(f"[{section}]\n" + "".join(f"{_toml_value(k)} = {_toml_value(v)}\n"
                                                  for k, v in table.items())
                       for section, table in doc.items())
        result = parse_config(body.encode(), SHOWN)
        assert (result.config is None) == bool(result.errors), body
        for problem in result.errors + result.warnings:
            assert problem.line is not None and problem.field, (body, str(problem))

    check()
