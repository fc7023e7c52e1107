"""How names and paths are shown to a person: one quoting style, nothing that moves the cursor.

Every message that names an agent, schedule or plugin quotes it with `quote_name` ('name'),
and any text that may hold a user's string (a directory name with a newline, an escape
sequence, bytes that are not UTF-8) goes through `printable` before it reaches a terminal.
Cheap to import: the CLI uses it before any heavy module is loaded.
"""

from __future__ import annotations

import re

__all__ = ["printable", "quote_name"]

# C0 and C1 controls, DEL, line/paragraph separators, bidirectional overrides and isolates
# (which can make a line read differently from what it is), and the lone surrogates Python
# uses for bytes that are not UTF-8 (os.fsdecode's surrogateescape).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e"
                          "\u2066-\u2069\udc80-\udcff]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte: show the byte itself
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control or invisible formatting character written as an escape
    (`\\n`, `\\x1b`, `\\u202e`; an undecodable byte as `\\xff`). Printable text is unchanged."""
    return _UNPRINTABLE.sub(_escape, text)


def quote_name(name: str) -> str:
    """An agent, schedule or plugin name as every message shows it: `'name'`."""
    return "'" + printable(name).replace("'", "\\'") + "'"
