"""The daemon's own log (SPEC S12, S14.14; docs/logs.md): JSON lines in daily UTC files."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dotagent import daemonlog, redaction
from dotagent.daemonlog import DailyFileHandler, configure, fields, resolve_level
from tmpfs import fill, small_tmpfs

Setup = tuple[Path, io.StringIO, daemonlog.DaemonLogging]


def record(msg: str, when: datetime, level: int = logging.INFO, name: str = "dotagent.daemon",
           **values: object) -> logging.LogRecord:
    rec = logging.getLogger(name).makeRecord(name, level, __file__, 1, msg, (), None,
                                             extra=fields(**values))
    rec.created = when.timestamp()
    return rec


def json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture
def logging_to(tmp_path: Path) -> Iterator[Setup]:
    err = io.StringIO()
    setup = configure(tmp_path, level=daemonlog.TRACE, stderr=err)
    yield tmp_path / "logs" / "daemon", err, setup
    setup.close()


def test_lines_have_upstreams_shape_and_a_compact_stderr_copy(logging_to: Setup) -> None:
    directory, err, _ = logging_to
    log = logging.getLogger("dotagent.daemon")
    log.info("dispatching run", extra=fields(agent="report", schedule="daily", attempt=1,
                                            max_retries=3, expected="2026-05-19T14:30:00Z"))
    log.warning("odd value %s", "x y")
    log.log(daemonlog.TRACE, "sleeping until 2026-05-19T15:00:00Z (1800s)")
    (path,) = directory.iterdir()
    today = datetime.now(UTC).date().isoformat()
    assert path.name == f"dotagent.log.{today}"
    first, second, third = json_lines(path)
    assert list(first) == ["timestamp", "level", "fields", "target"]
    assert first["level"] == "INFO" and first["target"] == "dotagent.daemon"
    assert first["fields"] == {"message": "dispatching run", "agent": "report",
                               "schedule": "daily", "attempt": 1, "max_retries": 3,
                               "expected": "2026-05-19T14:30:00Z"}
    ts = str(first["timestamp"])
    assert len(ts) == len("2026-05-19T14:30:00.123456Z") and ts.endswith("Z")
    assert datetime.fromisoformat(ts).tzinfo is not None
    assert (second["level"], second["fields"]) == ("WARN", {"message": "odd value x y"})
    assert third["level"] == "TRACE"
    assert path.read_text().count("\n") == 3 and " " not in path.read_text().split('"')[0]
    out = err.getvalue().splitlines()
    assert out[0] == (f"{ts}  INFO dotagent.daemon: dispatching run agent=report "
                      "schedule=daily attempt=1 max_retries=3 expected=2026-05-19T14:30:00Z")
    assert out[1].endswith("  WARN dotagent.daemon: odd value x y")
    assert path.stat().st_mode & 0o777 == 0o600 and directory.stat().st_mode & 0o777 == 0o700


def test_one_file_per_utc_date(tmp_path: Path) -> None:
    handler = DailyFileHandler(tmp_path)
    handler.handle(record("before", datetime(2026, 5, 19, 23, 59, 59, 999999, tzinfo=UTC)))
    handler.handle(record("after", datetime(2026, 5, 20, 0, 0, 0, tzinfo=UTC)))
    handler.handle(record("late straggler", datetime(2026, 5, 19, 23, 59, 59, tzinfo=UTC)))
    handler.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dotagent.log.2026-05-19",
                                                         "dotagent.log.2026-05-20"]
    day1 = json_lines(tmp_path / "dotagent.log.2026-05-19")
    assert [x["fields"]["message"] for x in day1] == ["before", "late straggler"]  # type: ignore[index]
    assert day1[0]["timestamp"] == "2026-05-19T23:59:59.999999Z"
    (day2,) = json_lines(tmp_path / "dotagent.log.2026-05-20")
    assert day2["timestamp"] == "2026-05-20T00:00:00.000000Z"


def test_the_timestamp_ignores_a_leap_second_tz(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import logging
        from pathlib import Path
        from dotagent.daemonlog import DailyFileHandler
        h = DailyFileHandler(Path({str(tmp_path)!r}))
        r = logging.makeLogRecord({{"name": "dotagent", "levelno": 20, "msg": "m"}})
        r.created = 1779201000.25
        h.handle(r)
    """)
    env = dict(os.environ, TZ="right/UTC")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    (line,) = json_lines(tmp_path / "dotagent.log.2026-05-19")
    assert line["timestamp"] == "2026-05-19T14:30:00.250000Z"


def test_secrets_are_scrubbed_from_messages_and_fields(logging_to: Setup) -> None:
    directory, err, _ = logging_to
    redaction.register_secret("hunter2-token")
    try:
        logging.getLogger("dotagent.daemon").error(
            "plugin said hunter2-token", extra=fields(stderr="x hunter2-token y",
                                                      nested={"k": ["hunter2-token"]}))
    finally:
        redaction.clear_secrets()
    (path,) = directory.iterdir()
    assert "hunter2" not in path.read_text() and "hunter2" not in err.getvalue()
    (line,) = json_lines(path)
    assert line["fields"] == {"message": "plugin said [REDACTED]",
                              "stderr": "x [REDACTED] y", "nested": {"k": ["[REDACTED]"]}}


def test_a_full_disk_drops_lines_counts_them_and_says_so_later(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", size_kib=256) as disk:
        handler = DailyFileHandler(disk / "daemon")
        when = datetime(2026, 5, 19, 12, tzinfo=UTC)
        handler.handle(record("before", when))
        filler = fill(disk)
        for i in range(50):  # none of these raises
            handler.handle(record(f"while full {i} " + "z" * 200, when))
        assert handler.dropped > 0
        dropped = handler.dropped
        filler.unlink()
        handler.handle(record("after", when))
        handler.close()
        text = (disk / "daemon/dotagent.log.2026-05-19").read_text()
    parsed, torn = [], 0
    for line in text.splitlines():
        try:
            parsed.append(json.loads(line))
        except ValueError:
            torn += 1  # at most the one line the disk cut short, on its own line
    assert torn <= 1
    messages = [x["fields"]["message"] for x in parsed]
    assert messages[0] == "before" and messages[-2] == "after"
    lost = parsed[-1]  # the first line that could be written again is followed by the count
    assert (lost["level"], lost["fields"]["message"]) == ("WARN", "daemon log lines were lost")
    assert lost["fields"]["count"] == dropped


def test_an_unwritable_directory_never_raises(tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("not a directory")
    setup = configure(tmp_path, stderr=False)
    try:
        logging.getLogger("dotagent.daemon").info("lost")
        assert setup.file.dropped == 1
    finally:
        setup.close()


STDERR_CHILD = textwrap.dedent("""
    import logging, sys
    from pathlib import Path
    from dotagent.daemonlog import configure
    setup = configure(Path(sys.argv[1]))
    for i in range(200):
        logging.getLogger("dotagent.daemon").info("line %d", i)
    setup.close()
    open(Path(sys.argv[1]) / "done", "w").close()
""")


def test_a_closed_stderr_is_ignored(tmp_path: Path) -> None:
    p = subprocess.run(["sh", "-c", 'exec 2>&-; exec "$0" -c "$1" "$2"', sys.executable,
                        STDERR_CHILD, str(tmp_path)], capture_output=False,
                       stdout=subprocess.PIPE, check=False)
    assert p.returncode == 0 and (tmp_path / "done").exists()
    (path,) = (tmp_path / "logs/daemon").iterdir()
    assert len(path.read_text().splitlines()) == 200


def test_a_stderr_nobody_reads_is_ignored(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.close(r)  # every write to stderr fails with EPIPE
    p = subprocess.run([sys.executable, "-c", STDERR_CHILD, str(tmp_path)], stderr=w,
                       check=False)
    os.close(w)
    assert p.returncode == 0 and (tmp_path / "done").exists()
    (path,) = (tmp_path / "logs/daemon").iterdir()
    assert len(path.read_text().splitlines()) == 200


@pytest.mark.parametrize(("env", "config", "level", "note"), [
    ({}, "info", logging.INFO, None),
    ({}, "off", daemonlog.OFF, None),
    ({"DOTAGENT_LOG": "debug"}, "info", logging.DEBUG, None),
    ({"DOTAGENT_LOG": "WARNING"}, "debug", logging.WARNING, None),
    ({"DOTAGENT_LOG": "trace"}, "info", daemonlog.TRACE, None),
    ({"DOTAGENT_LOG": " "}, "error", logging.ERROR, None),
    ({"DOTAGENT_LOG": "info,hyper=warn"}, "error", logging.INFO,
     "$DOTAGENT_LOG='info,hyper=warn': per-target filter directives are not supported; "
     "using 'info' for everything"),
    ({"DOTAGENT_LOG": "loud"}, "warn", logging.WARNING,
     "$DOTAGENT_LOG='loud' names no log level (expected one of error, warn, info, debug, "
     "trace, off); using [logging] level 'warn'"),
])
def test_the_level_comes_from_dotagent_log_then_config(env: dict[str, str], config: str,
                                                       level: int, note: str | None) -> None:
    assert resolve_level(env, config) == (level, note)


def test_off_and_levels_filter(tmp_path: Path) -> None:
    setup = configure(tmp_path, level=logging.WARNING, stderr=False)
    try:
        log = logging.getLogger("dotagent.daemon")
        log.info("hidden")
        log.warning("shown")
        setup.logger.setLevel(daemonlog.OFF)
        log.error("hidden too")
    finally:
        setup.close()
    (path,) = (tmp_path / "logs/daemon").iterdir()
    assert [x["fields"]["message"] for x in json_lines(path)] == ["shown"]  # type: ignore[index]


def test_text_format_writes_the_compact_form_to_the_file(tmp_path: Path) -> None:
    setup = configure(tmp_path, file_format="text", stderr=False)
    try:
        logging.getLogger("dotagent.daemon").info("daemon started", extra=fields(pid=42))
    finally:
        setup.close()
    (path,) = (tmp_path / "logs/daemon").iterdir()
    assert path.read_text().endswith("  INFO dotagent.daemon: daemon started pid=42\n")


def test_version_imports_none_of_the_logging_modules() -> None:
    code = ("import sys; from dotagent.cli import main; main(['--version']); "
            "print(sorted(m for m in ('dotagent.daemonlog', 'dotagent.state.agentlog', "
            "'dotagent.state.logretention', 'logging') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().endswith("[]")
