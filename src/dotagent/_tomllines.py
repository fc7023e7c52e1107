"""Map TOML field paths back to line numbers.

`tomllib` keeps no positions, so validation errors would otherwise point at a whole file. This
scanner walks the text once with a small recursive-descent reader that understands strings,
comments, `[table]` / `[[array.of.tables]]` headers, dotted and quoted keys, and values that
span lines: the elements of multi-line arrays and the keys of inline tables get their own
lines too (`schedules[1].minute` inside `schedules = [{…},\\n {…}]`). It does not validate:
tomllib has already accepted the text when this runs.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import tomllib

__all__ = ["LineIndex", "deepest_nesting"]

Path = tuple[str | int, ...]
_BARE = re.compile(r"[A-Za-z0-9_-]+")
_NEWLINE = re.compile("\n")
_BLANK = re.compile(r"(?:[ \t\r]+|#[^\n]*)*")
_BLANK_NL = re.compile(r"(?:[ \t\r\n]+|#[^\n]*)*")
_SCALAR = re.compile(r"[^,\]}\n#]*")


def _unquote(quoted: str) -> str:
    """A quoted key as tomllib decodes it (escapes included)."""
    if quoted[0] == "'" or "\\" not in quoted:
        return quoted[1:-1]
    try:
        return next(iter(tomllib.loads(f"{quoted} = 0")))
    except (tomllib.TOMLDecodeError, StopIteration):
        return quoted[1:-1]


class LineIndex:
    """Line numbers (1-based) of the keys, tables and array elements of a TOML document."""

    def __init__(self, text: str) -> None:
        self._lines: dict[Path, int] = {}
        self._text = text
        self._n = len(text)
        self._i = 0
        self._newlines = [m.start() for m in _NEWLINE.finditer(text)]
        # Never expected after tomllib accepted the text; positions are a help, not a need.
        with contextlib.suppress(IndexError, ValueError, RecursionError):
            self._document()

    def line_of(self, path: Path) -> int | None:
        """The line declaring `path`, or of its nearest declared ancestor."""
        probe = tuple(path)
        while probe:
            line = self._lines.get(probe)
            if line is not None:
                return line
            probe = probe[:-1]
        return None

    # -- low-level reading ------------------------------------------------------------------
    @property
    def _line(self) -> int:
        return bisect.bisect_left(self._newlines, self._i) + 1

    def _peek(self) -> str:
        return self._text[self._i] if self._i < self._n else ""

    def _skip_blank(self, newlines: bool) -> None:
        """Spaces, tabs, comments and (inside arrays, between statements) newlines."""
        pattern = _BLANK_NL if newlines else _BLANK
        m = pattern.match(self._text, self._i)
        if m:
            self._i = m.end()

    def _skip_string(self) -> str:
        """Skip a string starting at the cursor; return its source text."""
        text, start = self._text, self._i
        quote = text[start]
        delim = quote * 3 if text.startswith(quote * 3, start) else quote
        j = start + len(delim)
        while True:
            k = text.find(delim, j)
            if k < 0:
                self._i = self._n
                break
            if quote == '"':
                backslashes = 0
                while k - backslashes - 1 >= j and text[k - backslashes - 1] == "\\":
                    backslashes += 1
                if backslashes % 2:
                    j = k + 1
                    continue
            end = k + len(delim)
            # A multi-line string may end with up to two extra quotes ("""a"""" is legal).
            extra = 0
            while len(delim) == 3 and extra < 2 and end < self._n and text[end] == quote:
                end, extra = end + 1, extra + 1
            self._i = end
            break
        return text[start : self._i]

    def _key(self) -> list[str]:
        """A possibly dotted, possibly quoted key."""
        parts: list[str] = []
        while True:
            self._skip_blank(False)
            if self._peek() in ("'", '"'):
                parts.append(_unquote(self._skip_string()))
            else:
                m = _BARE.match(self._text, self._i)
                if not m:
                    raise ValueError("key expected")
                parts.append(m.group())
                self._i = m.end()
            self._skip_blank(False)
            if self._peek() != ".":
                return parts
            self._i += 1

    # -- grammar -------------------------------------------------------------------------------
    def _document(self) -> None:
        arrays: dict[tuple[str, ...], int] = {}  # array-of-tables key path -> last index
        table: Path = ()
        while self._i < self._n:
            self._skip_blank(True)
            if self._i >= self._n:
                return
            line = self._line
            if self._text.startswith("[[", self._i):
                self._i += 2
                keys = tuple(self._key())
                self._i += 2
                arrays[keys] = arrays.get(keys, -1) + 1
                table = self._resolve(keys, arrays)
                self._lines.setdefault(table, line)
                self._lines.setdefault(table[:-1], line)
            elif self._peek() == "[":
                self._i += 1
                table = self._resolve(tuple(self._key()), arrays)
                self._i += 1
                self._lines.setdefault(table, line)
            else:
                before = self._i
                self._keyvalue(table)
                if self._i == before:
                    raise ValueError("stuck")

    def _keyvalue(self, base: Path) -> None:
        line = self._line
        full = base + tuple(self._key())
        for depth in range(len(base) + 1, len(full) + 1):
            self._lines.setdefault(full[:depth], line)
        self._skip_blank(False)
        self._i += 1  # '='
        self._value(full)

    def _value(self, path: Path) -> None:
        self._skip_blank(True)
        self._lines.setdefault(path, self._line)
        ch = self._peek()
        if ch in ("'", '"'):
            self._skip_string()
        elif ch == "[":
            self._i += 1
            index = 0
            while True:
                self._skip_blank(True)
                if self._peek() in ("]", ""):
                    self._i += 1
                    return
                before = self._i
                self._value((*path, index))
                if self._i == before:  # no progress: not TOML we understand; stop safely
                    raise ValueError("stuck")
                index += 1
                self._skip_blank(True)
                if self._peek() == ",":
                    self._i += 1
        elif ch == "{":
            self._i += 1
            while True:
                self._skip_blank(False)
                if self._peek() in ("}", ""):
                    self._i += 1
                    return
                before = self._i
                self._keyvalue(path)
                if self._i == before:
                    raise ValueError("stuck")
                self._skip_blank(False)
                if self._peek() == ",":
                    self._i += 1
        else:  # a number, boolean or date-time: up to the next delimiter
            m = _SCALAR.match(self._text, self._i)
            self._i = m.end() if m else self._i + 1

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


# Strings and comments (whose brackets do not count), or one bracket.
_NESTING_TOKEN = re.compile(r'"{3}(?:\\.|[^\\])*?"{3}|\'{3}.*?\'{3}|"(?:\\.|[^"\\\n])*"'
                            r"|'[^'\n]*'|#[^\n]*|[\[\]{}]", re.S)

def deepest_nesting(text: str) -> tuple[int, int] | None:
    """(line, depth): where the most deeply nested value begins (the line of its outermost
    `[` or `{`) and how deep it goes. For a document tomllib gave up on as too deep, which
    keeps no position of its own; None when nothing is nested."""
    depth = best = 0
    start = best_start = 0
    for m in _NESTING_TOKEN.finditer(text):
        token = m.group()
        if token in ("[", "{"):
            if depth == 0:
                start = m.start()
            depth += 1
            if depth > best:
                best, best_start = depth, start
        elif token in ("]", "}"):
            depth = max(depth - 1, 0)
    if best == 0:
        return None
    return text.count("\n", 0, best_start) + 1, best
