"""A reader of the systemd unit syntax the install tests need, written from systemd.syntax(7)
and systemd.exec(5) — independent of dotagent's writer, so that a test compares the value
systemd would see with the value that was meant.

- Specifiers are resolved first, on the whole value: `%%` is `%`; any other `%x` is refused
  here (a real one would be replaced by something else, which is the bug to catch).
- `Environment=` and `ExecStart=` are then split into words: double or single quotes wrap a
  word, C escapes (`\\\\`, `\\"`, `\\'`, `\\n`, `\\t`, `\\s`, `\\xHH`, ...) are decoded.
- `StandardOutput=append:PATH` takes the rest of the line as it is (no unquoting).
"""

from __future__ import annotations

_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", '"': '"', "'": "'", "s": " "}


def resolve_specifiers(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "%":
            if value[i + 1: i + 2] != "%":
                raise ValueError(f"unescaped specifier {value[i:i + 2]!r} in {value!r}")
            out.append("%")
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def split_words(value: str) -> list[str]:
    words: list[str] = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in " \t\n":
            i += 1
        if i >= n:
            return words
        word: list[str] = []
        quote: str | None = None
        if value[i] in "\"'":
            quote = value[i]
            i += 1
        while i < n:
            ch = value[i]
            if quote is not None and ch == quote:
                i += 1
                if i < n and value[i] not in " \t\n":
                    raise ValueError(f"closing quote not followed by a space in {value!r}")
                quote = None
                break
            if quote is None and ch in " \t\n":
                break
            if ch == "\\":
                nxt = value[i + 1: i + 2]
                if nxt == "x":
                    word.append(chr(int(value[i + 2: i + 4], 16)))
                    i += 4
                    continue
                if nxt not in _ESCAPES:
                    raise ValueError(f"unknown escape \\{nxt} in {value!r}")
                word.append(_ESCAPES[nxt])
                i += 2
                continue
            word.append(ch)
            i += 1
        if quote is not None:
            raise ValueError(f"unterminated quote in {value!r}")
        words.append("".join(word))


def settings(unit_text: str) -> dict[str, list[str]]:
    """Every `Key=value` of the unit (comments and section headers skipped), in order."""
    out: dict[str, list[str]] = {}
    for line in unit_text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def environment(unit_text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in settings(unit_text).get("Environment", []):
        for word in split_words(resolve_specifiers(value)):
            name, _, val = word.partition("=")
            env[name] = val
    return env


def exec_start(unit_text: str) -> list[str]:
    [value] = settings(unit_text)["ExecStart"]
    return split_words(resolve_specifiers(value))


def append_path(unit_text: str, key: str) -> str:
    [value] = settings(unit_text)[key]
    assert value.startswith("append:"), value
    return resolve_specifiers(value.removeprefix("append:"))
