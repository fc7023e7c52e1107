"""Map TOML field paths back to line numbers.

`tomllib` keeps no positions, so validation errors would otherwise point at a whole file. This
scanner walks the text once, understands strings, comments, multi-line arrays/inline tables and
`[table]` / `[[array.of.tables]]` headers, and records the line where each key (or table) is
declared. It does not validate: tomllib has already accepted the text when this runs.
"""

from __future__ import annotations

import re
import tomllib

__all__ = ["LineIndex"]

Path = tuple[str | int, ...]
_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _unquote(quoted: str) -> str:
    """A quoted key as tomllib decodes it (escapes included)."""
    if quoted[0] == "'" or "\\" not in quoted:
        return quoted[1:-1]
    try:
        return next(iter(tomllib.loads(f"{quoted} = 0")))
    except (tomllib.TOMLDecodeError, StopIteration):
        return quoted[1:-1]


def _split_key(text: str) -> list[str] | None:
    """Split a (possibly dotted, possibly quoted) TOML key; None if it is not a key."""
    parts: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return None
        ch = text[i]
        if ch in "\"'":
            end = i + 1
            while end < n and text[end] != ch:
                end += 2 if (ch == '"' and text[end] == "\\") else 1
            if end >= n:
                return None
            parts.append(_unquote(text[i : end + 1]))
            i = end + 1
        else:
            m = _BARE.match(text, i)
            if not m:
                return None
            parts.append(m.group())
            i = m.end()
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return parts
        if text[i] != ".":
            return None
        i += 1


class LineIndex:
    """Line numbers (1-based) of the keys and tables declared in a TOML document."""

    def __init__(self, text: str) -> None:
        self._lines: dict[Path, int] = {}
        self._scan(text)

    def line_of(self, path: Path) -> int | None:
        """The line declaring `path`, or of its nearest declared ancestor."""
        probe = tuple(path)
        while probe:
            line = self._lines.get(probe)
            if line is not None:
                return line
            probe = probe[:-1]
        return None

    # -- scanning ---------------------------------------------------------------------
    def _scan(self, text: str) -> None:
        arrays: dict[tuple[str, ...], int] = {}  # array-of-tables key path -> last index
        table: Path = ()
        for lineno, logical in self._logical_lines(text):
            stripped = logical.strip()
            if not stripped:
                continue
            if stripped.startswith("[["):
                keys = _split_key(stripped[2 : stripped.find("]]")])
                if keys is None:
                    continue
                key_path = tuple(keys)
                arrays[key_path] = arrays.get(key_path, -1) + 1
                table = self._resolve(key_path, arrays)
                self._lines.setdefault(table, lineno)
                self._lines.setdefault(table[:-1], lineno)
            elif stripped.startswith("["):
                keys = _split_key(stripped[1 : stripped.find("]")])
                if keys is None:
                    continue
                table = self._resolve(tuple(keys), arrays)
                self._lines.setdefault(table, lineno)
            else:
                eq = self._find_equals(stripped)
                if eq < 0:
                    continue
                keys = _split_key(stripped[:eq])
                if keys is None:
                    continue
                full = table + tuple(keys)
                for depth in range(len(table) + 1, len(full) + 1):
                    self._lines.setdefault(full[:depth], lineno)

    @staticmethod
    def _resolve(keys: tuple[str, ...], arrays: dict[tuple[str, ...], int]) -> Path:
        """Insert the current element index after every prefix that is an array of tables."""
        out: list[str | int] = []
        for depth in range(1, len(keys) + 1):
            out.append(keys[depth - 1])
            idx = arrays.get(keys[:depth])
            if idx is not None:
                out.append(idx)
        return tuple(out)

    @staticmethod
    def _find_equals(line: str) -> int:
        quote = ""
        for i, ch in enumerate(line):
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch == "=":
                return i
        return -1

    @staticmethod
    def _logical_lines(text: str) -> list[tuple[int, str]]:
        """Yield (first line number, text) for each statement, with strings, comments and
        bracketed continuations folded so that only depth-0 statement starts remain."""
        out: list[tuple[int, str]] = []
        buf: list[str] = []
        start = 1
        line = 1
        depth = 0
        i, n = 0, len(text)
        in_header = False
        while i < n:
            ch = text[i]
            if ch == "\n":
                if depth == 0:
                    out.append((start, "".join(buf)))
                    buf = []
                    start = line + 1
                    in_header = False
                line += 1
                i += 1
                continue
            if ch == "#":
                while i < n and text[i] != "\n":
                    i += 1
                continue
            if ch in "\"'":
                triple = text.startswith(ch * 3, i)
                delim = ch * 3 if triple else ch
                j = i + len(delim)
                while j < n:
                    if ch == '"' and text[j] == "\\":
                        j += 2
                        continue
                    if text.startswith(delim, j):
                        break
                    j += 1
                j = min(n, j + len(delim))
                # Keep a string token only when it forms a key on this statement.
                chunk = text[i:j]
                line += chunk.count("\n")
                buf.append(chunk.replace("\n", " ") if depth == 0 else "")
                i = j
                continue
            if ch == "[" and depth == 0 and not "".join(buf).strip():
                in_header = True
            if not in_header:
                if ch in "[{":
                    depth += 1
                elif ch in "]}":
                    depth = max(0, depth - 1)
            if depth == 0 or (ch in "[{" and depth == 1):
                buf.append(ch)
            i += 1
        if buf:
            out.append((start, "".join(buf)))
        return out
