"""Heartbeat files (SPEC S3.3 / S7): `state/agents/<name>/<slug>.heartbeat.json`.

Shape and key order are upstream's. A run writes the file before it spawns (finished fields
null: a crash leaves that marker) and again after it exits; `last_success_at` survives
failures. Writers hold an exclusive flock on a sibling `.lock` file that is never deleted, so
two writers (daemon and CLI) always lock the same inode.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotagent.atomicfile import write_json_atomic
from dotagent.boundedread import read_bounded
from dotagent.filelock import locked
from dotagent.paths import Home, safe_component
from dotagent.timefmt import iso_local

__all__ = ["Heartbeat", "HeartbeatStore"]

_MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z: the last instant datetime can show


@dataclass(frozen=True)
class Heartbeat:
    name: str
    slug: str
    args: tuple[str, ...]
    started_at: int
    finished_at: int | None = None
    exit_code: int | None = None
    duration_seconds: int | None = None
    last_success_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        def iso(v: int | None) -> str | None:
            return None if v is None else iso_local(v)

        return {
            "name": self.name,
            "slug": self.slug,
            "args": list(self.args),
            "started_at": self.started_at,
            "started_at_iso": iso_local(self.started_at),
            "finished_at": self.finished_at,
            "finished_at_iso": iso(self.finished_at),
            "exit_code": self.exit_code,
            "duration_seconds": self.duration_seconds,
            "last_success_at": self.last_success_at,
            "last_success_at_iso": iso(self.last_success_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Heartbeat:
        """Tolerates missing optional keys (older files written by other tools)."""

        def opt_int(key: str, lo: int, hi: int) -> int | None:
            # A value no clock or process could have produced (hand-edited, corrupted) is
            # treated as absent rather than allowed to crash date arithmetic later.
            v = data.get(key)
            if isinstance(v, bool) or not isinstance(v, int | float):
                return None
            if v != v or not lo <= v <= hi:  # NaN, or out of range
                return None
            return int(v)

        args = data.get("args")
        return cls(
            name=str(data.get("name", "")),
            slug=str(data.get("slug", "")),
            args=tuple(str(a) for a in args) if isinstance(args, list) else (),
            started_at=opt_int("started_at", 0, _MAX_EPOCH) or 0,
            finished_at=opt_int("finished_at", 0, _MAX_EPOCH),
            exit_code=opt_int("exit_code", -(2**31), 2**31 - 1),
            duration_seconds=opt_int("duration_seconds", 0, _MAX_EPOCH),
            last_success_at=opt_int("last_success_at", 0, _MAX_EPOCH),
        )


class HeartbeatStore:
    def __init__(self, home: Home) -> None:
        self.home = home

    def path(self, agent: str, slug: str) -> Path:
        return self.home.heartbeat_file(agent, slug)

    def read(self, agent: str, slug: str) -> Heartbeat | None:
        """The current heartbeat, or None if there is none or it is unreadable."""
        return _read_file(self.path(agent, slug))

    def read_many(self, keys: Iterable[tuple[str, str]]
                  ) -> dict[tuple[str, str], Heartbeat | None]:
        """`read` of many (agent, slug) pairs, for the read commands (`status` judges every
        schedule): `state/agents` is resolved once (it must lie inside the home, as `join`
        checks), each agent's directory is taken only when it is a real directory (not a
        link), and each file is read without following a link — what resolving every path
        would guarantee, without resolving a thousand paths."""
        base = self.home.join("state", "agents")
        dirs: dict[str, Path | None] = {}
        out: dict[tuple[str, str], Heartbeat | None] = {}
        for agent, slug in keys:
            if agent not in dirs:
                cand = base / safe_component(agent, "agent name")
                try:
                    real_dir = stat.S_ISDIR(os.lstat(cand).st_mode)
                except OSError:
                    real_dir = False
                dirs[agent] = cand if real_dir else None
            where = dirs[agent]
            out[(agent, slug)] = None if where is None else _read_file(
                where / safe_component(f"{slug}.heartbeat.json", "slug"))
        return out

    def start(self, agent: str, slug: str, args: Sequence[str], started_at: int) -> Heartbeat:
        with self._locked(agent, slug):
            previous = self.read(agent, slug)
            beat = Heartbeat(
                name=agent, slug=slug, args=tuple(args), started_at=started_at,
                last_success_at=previous.last_success_at if previous else None,
            )
            write_json_atomic(self.path(agent, slug), beat.to_json())
            return beat

    def finish(self, agent: str, slug: str, args: Sequence[str], started_at: int,
               finished_at: int, exit_code: int, duration_seconds: int, *,
               succeeded: bool) -> Heartbeat:
        """The finish heartbeat. `succeeded` is the caller's verdict on `exit_code` (the
        agent's `ExitPolicy.succeeded`, so `success_exit_codes` count); a success moves
        `last_success_at` to `finished_at`, a failure keeps the previous one."""
        with self._locked(agent, slug):
            current = self.read(agent, slug)
            last_success = current.last_success_at if current else None
            if succeeded:
                last_success = finished_at
            beat = Heartbeat(
                name=agent, slug=slug, args=tuple(args), started_at=started_at,
                finished_at=finished_at, exit_code=exit_code,
                duration_seconds=duration_seconds,
                last_success_at=last_success,
            )
            write_json_atomic(self.path(agent, slug), beat.to_json())
            return beat

    def _locked(self, agent: str, slug: str) -> AbstractContextManager[None]:
        target = self.path(agent, slug)
        return locked(target.with_name(target.name.removesuffix(".json") + ".lock"))


def _read_file(path: Path) -> Heartbeat | None:
    try:
        # Bounded, non-blocking, a regular file only: a FIFO in its place is "none".
        data = json.loads(read_bounded(path, follow_links=False))
    except (OSError, ValueError):
        return None
    return Heartbeat.from_json(data) if isinstance(data, dict) else None
