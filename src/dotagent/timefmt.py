"""Timestamp formats shared with upstream's files."""

from __future__ import annotations

from datetime import datetime

__all__ = ["iso_local"]


def iso_local(epoch: float) -> str:
    """Upstream's ISO form in local time: `2026-05-19T14:30:01-0300` (no fraction, no colon)."""
    return datetime.fromtimestamp(int(epoch)).astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")
