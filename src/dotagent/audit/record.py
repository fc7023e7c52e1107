"""One audit line: how it is rendered byte-for-byte like upstream, and how it is hashed.

Upstream serialises with serde_json's compact writer: no spaces, non-ASCII written as UTF-8,
`"` `\\` and the control characters escaped (`\\n` `\\r` `\\t` `\\b` `\\f` short forms, the
rest as lowercase `\\u00XX`), `/` and DEL left alone. `json.dumps(..., ensure_ascii=False,
separators=(",", ":"))` produces exactly those bytes for the value types events use (str,
int, bool, None), so it is used as is; floats are refused because Python and serde print them
differently.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from dotagent.audit.events import Event, Severity
from dotagent.redaction import redact

__all__ = ["GENESIS", "TS_FORMAT", "format_ts", "hash_line", "render_line"]

GENESIS = "GENESIS"
TS_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def format_ts(now: datetime | None = None) -> str:
    """Local time, upstream's ISO shape (`2026-05-19T14:30:01-0300`)."""
    moment = datetime.now() if now is None else now
    # astimezone() reads a naive value as local time and converts an aware one to local.
    return moment.astimezone().strftime(TS_FORMAT)


def hash_line(line: bytes) -> str:
    """The chain hash: sha256 of the exact line bytes, without the newline."""
    return hashlib.sha256(line).hexdigest()


def _clean(value: Any, name: str) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    raise TypeError(f"audit field {name!r} must be str, int, bool or None, "
                    f"not {type(value).__name__}")


def render_line(event: Event, *, ts: str, prev_hash: str,
                severity: Severity | None = None) -> bytes:
    """The line for `event` (no trailing newline), secrets redacted from every string field."""
    body = {name: _clean(value, name) for name, value in event.fields().items()}
    entry = {
        "ts": ts,
        "severity": str(severity or event.severity),
        "event": body,
        "prev_hash": prev_hash,
    }
    text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (e.g. from undecodable agent output) has no UTF-8 form and serde
        # could never have written one; replace it the way a lossy UTF-8 decode would.
        fixed = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return fixed.encode("utf-8")
