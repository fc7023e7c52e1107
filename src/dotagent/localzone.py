"""The local time zone, as the C library would pick it: `$TZ`, else /etc/localtime, else UTC.

Schedules without a zone of their own run in this zone. Only commands call this; the pure
scheduling code receives the zone as an argument.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = ["local_zone"]


def local_zone(environ: Mapping[str, str] | None = None) -> ZoneInfo:
    """`$TZ` (a zoneinfo name or file, optionally with glibc's leading ':'), else
    /etc/localtime, else UTC. An unusable `$TZ` falls back to UTC, as glibc does."""
    env = os.environ if environ is None else environ
    tz = env.get("TZ")
    if tz is not None:
        name = tz[1:] if tz.startswith(":") else tz
        if name.startswith("/"):
            try:
                with open(name, "rb") as fh:
                    return ZoneInfo.from_file(fh, key=_zone_key(Path(name)))
            except (OSError, ValueError):
                return ZoneInfo("UTC")
        try:
            return ZoneInfo(name or "UTC")
        except Exception:  # ZoneInfoNotFoundError, ValueError for odd strings
            return ZoneInfo("UTC")
    localtime = Path("/etc/localtime")
    key = _zone_key(localtime)
    if key is not None:
        with contextlib.suppress(Exception):
            return ZoneInfo(key)
    try:
        with localtime.open("rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError):
        return ZoneInfo("UTC")


def _zone_key(path: Path) -> str | None:
    """'Europe/Berlin' for a path that resolves into a zoneinfo tree, else None."""
    try:
        target = str(path.resolve())
    except OSError:
        return None
    marker = "/zoneinfo/"
    if marker in target:
        return target.split(marker, 1)[1]
    return None
