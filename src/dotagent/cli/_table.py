"""Tables for the read commands: rich when colour is wanted (a TTY, no NO_COLOR), plain
aligned columns otherwise; both fit the terminal width (`COLUMNS` or the terminal's), the
last column giving way first. Every cell goes through `printable`."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence

from dotagent.cli._style import use_color
from dotagent.display import printable

__all__ = ["render_table", "width"]

STYLES = {"ok": "green", "degraded": "yellow", "failing": "bold red", "stale": "magenta",
          "paused": "cyan"}


def width() -> int:
    return max(40, shutil.get_terminal_size((100, 24)).columns)


def _cut(text: str, room: int) -> str:
    return text if len(text) <= room else (text[: max(0, room - 1)] + "…" if room > 0 else "")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
                 style_column: int | None = None) -> None:
    """Print `rows` under `headers`. `style_column`: a column of health states, coloured."""
    cells = [[printable(c) for c in row] for row in rows]
    if use_color():
        _rich(headers, cells, style_column)
        return
    total = width()
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    fixed = sum(widths[:-1]) + 2 * (len(widths) - 1)
    widths[-1] = max(8, min(widths[-1], total - fixed))
    for row in [list(headers), *cells]:
        parts = [c.ljust(widths[i]) for i, c in enumerate(row[:-1])]
        parts.append(_cut(row[-1], widths[-1]))
        sys.stdout.write(_cut("  ".join(parts).rstrip(), total) + "\n")


def _rich(headers: Sequence[str], cells: list[list[str]], style_column: int | None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(width=width(), highlight=False)
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for i, h in enumerate(headers):
        table.add_column(h, overflow="ellipsis", no_wrap=i < len(headers) - 1)
    for row in cells:
        texts = [Text(c) for c in row]
        if style_column is not None:
            texts[style_column].stylize(STYLES.get(row[style_column], ""))
        table.add_row(*texts)
    console.print(table)
