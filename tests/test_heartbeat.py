from __future__ import annotations

import json
from pathlib import Path

import pytest

from dotagent.paths import Home
from dotagent.state.heartbeat import Heartbeat, HeartbeatStore


@pytest.mark.parametrize("bad", [1e300, 99999999999999, -5, True, "12", None, float("nan")])
def test_corrupt_values_are_ignored_not_fatal(tmp_path: Path, bad: object) -> None:
    store = HeartbeatStore(Home(tmp_path))
    path = store.path("q", "default")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"started_at": bad, "last_success_at": bad, "exit_code": bad,
                                "args": "not-a-list"}))
    beat = store.read("q", "default")
    assert beat is not None
    assert beat.last_success_at is None and beat.started_at == 0 and beat.args == ()
    started = store.start("q", "default", [], 1795574091)
    assert started.last_success_at is None
    json.loads(path.read_text())


def test_legacy_file_with_missing_keys_is_read(tmp_path: Path) -> None:
    beat = Heartbeat.from_json({"name": "x", "started_at": 100, "last_success_at": 90})
    assert (beat.name, beat.started_at, beat.finished_at, beat.last_success_at) == (
        "x", 100, None, 90)
