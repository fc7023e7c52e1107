"""A process-wide registry of secret values, and the one function that scrubs them from text.

Whoever loads a secret (the secrets store, a notifier reading a token) registers its value here;
every writer of durable or shared text (the audit log, per-agent logs) passes that text through
`redact()` before it leaves the process. Registering is cheap and idempotent, so callers need
not coordinate.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

__all__ = ["MIN_SECRET_LENGTH", "REDACTED", "clear_secrets", "redact", "register_secret",
           "register_secrets"]

REDACTED = "[REDACTED]"
# Shorter values ("1", "yes", "true") occur everywhere in ordinary text; scrubbing them would
# mangle logs without protecting anything worth protecting.
MIN_SECRET_LENGTH = 4

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def _rebuild() -> None:
    global _pattern
    if not _secrets:
        _pattern = None
        return
    # Longest first: regex alternation takes the first alternative that matches at a position,
    # so a secret that contains another one is replaced whole rather than leaving a tail.
    ordered = sorted(_secrets, key=lambda s: (-len(s), s))
    _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def register_secret(value: str) -> None:
    """Remember `value` so that `redact()` replaces it from now on (ignored if too short)."""
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        _rebuild()


def register_secrets(values: Iterable[str]) -> None:
    with _lock:
        before = len(_secrets)
        _secrets.update(v for v in values if len(v) >= MIN_SECRET_LENGTH)
        if len(_secrets) != before:
            _rebuild()


def clear_secrets() -> None:
    """Forget every registered value (a reloaded secrets store starts from scratch)."""
    with _lock:
        _secrets.clear()
        _rebuild()


def redact(text: str) -> str:
    """`text` with every registered secret value replaced by `[REDACTED]`."""
    pattern = _pattern  # one read: a concurrent register swaps the object, never mutates it
    if pattern is None or not text:
        return text
    return pattern.sub(REDACTED, text)
