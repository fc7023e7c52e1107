"""Colour only for people: a TTY, and NO_COLOR unset (https://no-color.org)."""

from __future__ import annotations

import os
import sys
from typing import TextIO

import click

__all__ = ["paint", "use_color"]


def use_color(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    return "NO_COLOR" not in os.environ and stream.isatty()


def paint(text: str, color: str, *, bold: bool = False, stream: TextIO | None = None) -> str:
    return click.style(text, fg=color, bold=bold) if use_color(stream) else text
