"""Timestamp formats shared with upstream's files."""

from __future__ import annotations

from datetime import datetime

__all__ = ["ISO_FORMAT", "iso", "iso_local"]

ISO_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def iso(moment: datetime) -> str:
    """Upstream's ISO form in local time: `2026-05-19T14:30:01-0300` (no fraction, no colon)."""
    return moment.astimezone().strftime(ISO_FORMAT)


def iso_local(epoch: float) -> str:
    """`iso` of an epoch timestamp (whole seconds)."""
    return iso(datetime.fromtimestamp(int(epoch)))
