"""Colour only for people: a TTY, and NO_COLOR unset (https://no-color.org)."""

from __future__ import annotations

import os
import sys
from typing import TextIO

import click

__all__ = ["paint", "use_color"]


def use_color(stream: TextIO | None = None) -> bool:
    """A terminal that can show colour, and no non-empty NO_COLOR."""
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def paint(text: str, color: str, *, bold: bool = False, stream: TextIO | None = None) -> str:
    return click.style(text, fg=color, bold=bold) if use_color(stream) else text
