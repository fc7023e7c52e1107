"""docs/audit.md documents every event type, and its example line is what we write."""

from __future__ import annotations

import json
import re

from dotagent.audit import events
from dotagent.audit.record import render_line

from conftest import REPO

DOC = (REPO / "docs" / "audit.md").read_text()


def test_every_event_type_has_a_row() -> None:
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", DOC, re.M))
    assert set(events.EVENT_TYPES) <= rows
    for name, cls in events.EVENT_TYPES.items():
        row = re.search(rf"^\| `{name}` \|(.*)$", DOC, re.M)
        assert row is not None
        origin = row.group(1).rsplit("|", 2)[-2].strip()
        assert origin.startswith("upstream" if cls.upstream else "ours"), name


def test_format_example_is_byte_exact() -> None:
    block = re.search(r"```json\n(\{\"ts\".*?)\n```", DOC, re.S)
    assert block is not None
    example = block.group(1).encode()
    entry = json.loads(example)
    ev = events.EVENT_TYPES[entry["event"].pop("event_type")](**entry["event"])
    assert render_line(ev, ts=entry["ts"], prev_hash=entry["prev_hash"]) == example
