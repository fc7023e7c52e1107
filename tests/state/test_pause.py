"""The pause store (`state/paused.json`): what `pause`/`resume`, the daemon and `status` read."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from dotagent.paths import Home
from dotagent.state.pause import Pauses


def test_agent_and_schedule_pauses_cover_what_they_name(dotagent_home: Path) -> None:
    store = Pauses(Home(dotagent_home))
    assert store.active("a", "s", 100.0) is None
    store.pause("a", "s", None, 100.0)
    assert store.active("a", "s", 200.0) is not None
    assert store.active("a", "other", 200.0) is None
    store.pause("b", None, 500, 100.0)
    assert store.active("b", "any", 499.0) is not None
    assert store.active("b", "any", 500.0) is None  # it ends at `until`


def test_longest_pause_wins_and_resume_lifts_all_of_an_agent(dotagent_home: Path) -> None:
    store = Pauses(Home(dotagent_home))
    store.pause("a", None, 300, 100.0)
    store.pause("a", "s", None, 100.0)
    found = store.active("a", "s", 150.0)
    assert found is not None and found.until is None and found.schedule == "s"
    lifted = store.resume("a", None, 150.0)
    assert sorted(p.key for p in lifted) == ["a", "a/s"]
    assert store.active("a", "s", 150.0) is None


def test_file_is_private_and_expired_entries_are_dropped(dotagent_home: Path) -> None:
    home = Home(dotagent_home)
    store = Pauses(home)
    store.pause("old", None, 150, 100.0)
    store.pause("new", None, None, 200.0)
    data = json.loads(store.path.read_text())
    assert data == {"paused": {"new": {"since": 200, "until": None}}}
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_corrupt_or_wrong_shaped_file_means_nothing_paused(dotagent_home: Path) -> None:
    store = Pauses(Home(dotagent_home))
    store.path.parent.mkdir(parents=True, exist_ok=True)
    for text in ("{not json", "[]", '{"paused": []}',
                 '{"paused": {"a": {"since": true, "until": null}}}'):
        store.path.write_text(text)
        assert store.active("a", None, 1.0) is None
    store.path.write_text('{"paused": {"a": {"since": 1, "until": null}, "b": 7}}')
    assert store.active("a", None, 1.0) is not None and store.active("b", None, 1.0) is None
