"""Examples in docs/ must be true."""

from __future__ import annotations

import re
from pathlib import Path

from dotagent.manifest import parse_manifest

from conftest import REPO


def test_manifest_reference_example_is_valid() -> None:
    text = (REPO / "docs/manifest.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S)
    assert block is not None
    result = parse_manifest(block.group(1).encode(), Path("docs/manifest.md"))
    assert result.errors == [] and result.warnings == []
    m = result.manifest
    assert m is not None
    assert [s.type for s in m.schedules] == ["cron", "interval", "expression"]
    assert m.schedules[0].slug == "period_yesterday"


def test_example_agents_are_clean() -> None:
    for toml in sorted((REPO / "examples/agents").glob("*/agent.toml")):
        result = parse_manifest(toml.read_bytes(), toml)
        assert result.errors == [] and result.warnings == [], toml
