"""Colour only for people: a TTY, and NO_COLOR unset (https://no-color.org)."""

from __future__ import annotations

import os
import re
import sys
from typing import TextIO

import click

__all__ = ["paint", "terminal_safe", "use_color"]


def use_color(stream: TextIO | None = None) -> bool:
    """A terminal that can show colour, and no non-empty NO_COLOR."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def paint(text: str, color: str, *, bold: bool = False, stream: TextIO | None = None) -> str:
    return click.style(text, fg=color, bold=bold) if use_color(stream) else text


_NOT_TAB = re.compile("[^\t]+")


def terminal_safe(text: str, stream: TextIO | None = None) -> str:
    """Text an agent printed, for a terminal: control characters (an escape sequence, a
    carriage return) shown as escapes, tabs and newlines kept. Unchanged when the output is
    not a terminal (a pipe gets the bytes as logged)."""
    stream = stream or sys.stdout
    if not stream.isatty():
        return text
    from dotagent.display import printable

    return "\n".join(_NOT_TAB.sub(lambda m: printable(m.group()), line)
                     for line in text.split("\n"))
