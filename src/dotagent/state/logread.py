"""Reading an agent's log back (`dotagent logs`, `dotagent history show`; docs/logs.md).

An agent's log is its rotated segments, oldest first (`.gz` ones decompressed), then the
active `<name>.log` (`dotagent.state.agentlog`). Every run in it is a block:

    (a blank line)
    === 2026-05-19T14:30:01-0300 run started · schedule=daily · slug=default ===
    ...the run's stdout and `[stderr] ` lines, in arrival order...
    === 2026-05-19T14:30:03-0300 run finished · exit=0 · 1.9s ===

One agent runs once at a time (the agent lock), so blocks never interleave; a block cut by a
rotation goes on in the next file after a `[dotagent] log rotated; …` line, and a block whose
run was killed with dotagent has no footer (the next header ends it). The log carries no time
per line: a line is placed in time by the header of its block, which is how `logs` interleaves
several agents.

Nothing here writes or reads the clock.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from dotagent.state.agentlog import segments

__all__ = [
    "CHUNK",
    "Header",
    "RunText",
    "Stamped",
    "complete_end",
    "find_run",
    "log_files",
    "merge_tails",
    "parse_footer",
    "parse_header",
    "read_text",
    "tail_agent",
]

CHUNK = 64 * 1024
UNKNOWN = float("-inf")  # the time of a line whose block's header is gone (rotated out)

_HEADER = re.compile(r"=== (\S+) run started · schedule=(.*) · slug=(.*) ===")
_FOOTER = re.compile(r"=== (\S+) run (?:finished|timed out|interrupted by \S+) · "
                     r"exit=(\S+) · \S+s(?: · dry-run)? ===")


@dataclass(frozen=True)
class Header:
    """A run's header line: when it started (epoch seconds), which schedule, which slug."""

    at: float
    schedule: str
    slug: str


def _epoch(text: str) -> float | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return None


def parse_header(line: str) -> Header | None:
    m = _HEADER.fullmatch(line)
    if m is None:
        return None
    at = _epoch(m.group(1))
    return None if at is None else Header(at, m.group(2), m.group(3))


def parse_footer(line: str) -> str | None:
    """The exit code a footer line shows (as written), or None for any other line."""
    m = _FOOTER.fullmatch(line)
    return None if m is None else m.group(2)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def log_files(active: Path) -> list[Path]:
    """The agent's log files, oldest first: its segments, then the active file if it exists."""
    files = [seg.path for seg in segments(active)]
    if active.exists():
        files.append(active)
    return files


def read_text(path: Path) -> bytes:
    """A whole log file (a `.gz` segment decompressed); empty when it vanished meanwhile (a
    rotation pruned it)."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as gz:
                return gz.read()
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _split(data: bytes) -> list[bytes]:
    """Lines of a file's bytes; a last line without its newline is still a line."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


# -- one run's output (`history show`) ------------------------------------------------------
@dataclass(frozen=True)
class RunText:
    """A run's block, as the log holds it: `lines` from its header on, `files` the names of
    the files it was read from (oldest first), `complete` whether its footer was found (not:
    the log is cut, or dotagent was killed during the run)."""

    lines: list[str]
    files: list[str]
    complete: bool


def find_run(active: Path, *, started_at: float, schedule: str, slug: str,
             log_start: int | None = None, exit_code: int | None = None) -> RunText | None:
    """The block of the run that started at `started_at` (epoch seconds, as history has it),
    or None when no file holds its header any more.

    The header's whole-second time is taken a moment before history's start, so a header
    of that schedule and slug up to two seconds earlier matches. When several do (quick
    retries), the one at the byte offset history recorded wins, then the one whose footer
    shows the recorded exit code, then the first."""
    files = log_files(active)
    # A segment stamped before the run started ends before it: it cannot hold the header.
    floor_us = (started_at - 5) * 1_000_000
    stamps = {seg.path: seg.stamp_us for seg in segments(active)}
    order = [f for f in files if stamps.get(f, float("inf")) >= floor_us] + \
        [f for f in files if stamps.get(f, float("inf")) < floor_us]
    best: tuple[int, int, list[bytes], int] | None = None  # (score, file index, lines, line)
    for path in order:
        data = read_text(path)
        lines = _split(data)
        offset = 0
        for number, raw in enumerate(lines):
            at = offset
            offset += len(raw) + 1
            if not raw.startswith(b"=== "):
                continue
            header = parse_header(_decode(raw))
            if header is None or header.schedule != schedule or header.slug != slug:
                continue
            if not started_at - 2 <= header.at <= started_at + 1:
                continue
            score = 1
            if log_start is not None and at in (log_start, log_start + 1):
                score = 3  # where history says it began (in this file or what it became)
            elif exit_code is not None and _footer_exit(lines, number) == str(exit_code):
                score = 2
            if best is None or score > best[0]:
                best = (score, files.index(path), lines, number)
            if score == 3:
                break
        if best is not None and best[0] == 3:
            break
    if best is None:
        return None
    _, index, lines, number = best
    return _collect(files, index, lines, number)


def _footer_exit(lines: list[bytes], header: int) -> str | None:
    for raw in lines[header + 1:]:
        if raw.startswith(b"=== "):
            text = _decode(raw)
            if parse_header(text) is not None:
                return None
            code = parse_footer(text)
            if code is not None:
                return code
    return None


def _collect(files: list[Path], index: int, lines: list[bytes], number: int) -> RunText:
    out = [_decode(lines[number])]
    names = [files[index].name]
    rest = lines[number + 1:]
    while True:
        for raw in rest:
            text = _decode(raw)
            if raw.startswith(b"=== "):
                if parse_header(text) is not None:
                    return RunText(_trim(out), names, False)
                if parse_footer(text) is not None:
                    out.append(text)
                    return RunText(out, names, True)
            out.append(text)
        index += 1
        if index >= len(files):
            return RunText(_trim(out), names, False)
        names.append(files[index].name)
        rest = _split(read_text(files[index]))


def _trim(lines: list[str]) -> list[str]:
    """Without the blank line that belongs to the next block's header."""
    return lines[:-1] if len(lines) > 1 and lines[-1] == "" else lines


# -- the last lines (`logs -n`) -------------------------------------------------------------
@dataclass(frozen=True)
class Stamped:
    """A log line with the start time of its run (`UNKNOWN` when that header is gone) and
    that run's schedule (None when unknown)."""

    at: float
    schedule: str | None
    line: str


def _reverse_lines(fh: BinaryIO, end: int) -> Iterator[bytes]:
    """The lines of `fh` before byte `end`, last first (`end` is just after a newline)."""
    position = end
    rest = b""
    while position > 0:
        size = min(CHUNK, position)
        position -= size
        fh.seek(position)
        chunk = fh.read(size) + rest
        parts = chunk.split(b"\n")
        rest = parts[0]
        yield from reversed(parts[1:])
    yield rest


def _file_lines_reversed(path: Path, fh: BinaryIO | None, end: int | None) -> Iterator[bytes]:
    if fh is not None and end is not None:
        lines = _reverse_lines(fh, end)
        first = next(lines, None)  # the empty piece after the last newline
        if first not in (None, b""):
            yield first
        yield from lines
        return
    if path.name.endswith(".gz"):
        yield from reversed(_split(read_text(path)))
        return
    try:
        with open(path, "rb") as own:
            size = os.fstat(own.fileno()).st_size
            yield from _file_lines_reversed(path, own, size)
    except FileNotFoundError:
        return


def complete_end(fh: BinaryIO) -> int:
    """The offset just after the last newline of `fh` (0 when it holds none): where whole
    lines end, so that a follower starts at a line's beginning."""
    size = os.fstat(fh.fileno()).st_size
    position = size
    while position > 0:
        step = min(CHUNK, position)
        fh.seek(position - step)
        chunk = fh.read(step)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return position - step + cut + 1
        position -= step
    return 0


def tail_agent(active: Path, n: int, *, schedule: str | None = None, stamped: bool = False,
               fh: BinaryIO | None = None, end: int | None = None) -> list[Stamped]:
    """The last `n` lines of the agent's log, oldest first, across its files.

    With `schedule`, only lines of that schedule's runs. With `stamped` (or `schedule`), every
    line carries its run's start: the reading goes back to the header of the oldest line's
    block. `fh`/`end`: read the active file through this open descriptor, up to `end` (a
    follower goes on from there); a segment that is the same file is skipped."""
    if n <= 0:
        return []
    need_header = stamped or schedule is not None
    held = None
    if fh is not None:
        st = os.fstat(fh.fileno())
        held = (st.st_dev, st.st_ino)
    sources: list[tuple[Path, BinaryIO | None, int | None]] = [(active, fh, end)]
    for seg in reversed(segments(active)):
        if held is not None:
            with contextlib.suppress(OSError):
                st = os.stat(seg.path)
                if (st.st_dev, st.st_ino) == held:
                    continue
        sources.append((seg.path, None, None))
    blocks: list[list[Stamped]] = []  # newest first, each oldest first
    pending: list[str] = []  # lines after the newest header seen so far, newest first
    kept = 0
    last_block: list[Stamped] | None = None

    def done() -> bool:
        return kept >= n and (not need_header or not pending)

    after_header = False  # the line just read (backwards) was a header
    for path, handle, stop in sources:
        for raw in _file_lines_reversed(path, handle, stop):
            text = _decode(raw)
            header = parse_header(text) if raw.startswith(b"=== ") else None
            if header is not None:
                lines = [text, *reversed(pending)]
                pending = []
                block = [Stamped(header.at, header.schedule, line) for line in lines]
                after_header = True
                if schedule is None or header.schedule == schedule:
                    kept += len(block)
                    blocks.append(block)
                    last_block = block
                else:
                    last_block = None
                if done():
                    break
                continue
            if text == "" and after_header:
                # The blank line before a header is that header's (shown with it or not).
                after_header = False
                if last_block is not None:
                    last_block.insert(0, Stamped(last_block[0].at, last_block[0].schedule, ""))
                    kept += 1
                continue
            after_header = False
            last_block = None
            if not need_header:
                blocks.append([Stamped(UNKNOWN, None, text)])
                kept += 1
                if done():
                    break
                continue
            if len(pending) < n + 1:  # beyond n lines, only the header is still needed
                pending.append(text)
        else:
            continue
        break
    if pending and schedule is None:
        blocks.append([Stamped(UNKNOWN, None, line) for line in reversed(pending)])
    out = [line for block in reversed(blocks) for line in block]
    return out[-n:]


def merge_tails(tails: dict[str, list[Stamped]], n: int) -> list[tuple[str, Stamped]]:
    """The last `n` lines of several agents' tails in time order (by their runs' starts;
    ties keep each agent's own order, agents by name)."""
    merged = [(name, line) for name in sorted(tails) for line in tails[name]]
    merged.sort(key=lambda item: item[1].at)  # stable
    return merged[-n:] if n > 0 else []
