"""Audit log benchmarks: append cost independent of log size, verify throughput and memory.

* audit_append_ratio_1m_1k — mean append cost with a 1,000,000-entry log ÷ with a 1,000-entry
  log, measured in interleaved batches (so machine drift hits both sides alike), medians of
  the batch means. Reported twice: fsync excluded (the value: it measures our algorithm,
  not the disk) and fsync included (in detail).
* audit_verify_per_s — `dotagent audit verify --json` as a subprocess on the 1,000,000-line
  log (one unrotated file, as a log from before rotation existed): lines ÷ wall time
  (interpreter start-up included), peak RSS of the child beside the same figure for a
  1,000-line log.
* audit_verify_full_per_s — `dotagent audit verify --full --json` on a *rotated* log of
  1,000,000 lines (32 MiB segments linked by `audit_log_rotated` seams, as the writer leaves
  them): lines ÷ wall time across every segment, peak RSS (flat: one file is streamed at a
  time), and the wall time of plain `verify` (the live file, plus the recorded breaks of every
  segment) on the same log. The append ratio above is measured on this rotated log: an
  append to the unrotated one would rotate it first.

The big logs are written directly (chained lines, no lock, no fsync): building them through
`append` would cost minutes of fsyncs and measure nothing new.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from dotagent.atomicfile import write_json_atomic  # noqa: E402
from dotagent.audit import AuditLog, events  # noqa: E402
from dotagent.audit.chain import HEAD_FILE  # noqa: E402
from dotagent.audit.record import GENESIS, render_line  # noqa: E402
from dotagent.audit.rotation import DEFAULT_MAX_BYTES, render_seam  # noqa: E402
from dotagent.audit.scan import Head  # noqa: E402
from dotagent.paths import Home  # noqa: E402

METRICS = [("audit_append_ratio_1m_1k", "<= 1.2"), ("audit_verify_per_s", ">= 200000"),
           ("audit_verify_full_per_s", ">= 200000")]

BIG = 1_000_000
SMALL = 1_000
TS = "2026-05-19T14:30:01-0300"
MANIFEST_SHA = hashlib.sha256(b"agent.toml").hexdigest()


def _event(i: int) -> events.AgentRun:
    return events.AgentRun(agent=f"agent-{i % 500}", schedule="hourly", slug="default",
                           manifest_sha256=MANIFEST_SHA, exit_code=0,
                           duration_seconds=i % 3600, timed_out=False)


_TEMPLATE = (
    '{"ts":"%s","severity":"notice","event":{"event_type":"agent_run","agent":"agent-%d",'
    '"schedule":"hourly","slug":"default","manifest_sha256":"%s","exit_code":0,'
    '"duration_seconds":%d,"timed_out":false},"prev_hash":"%s"}'
)


def build_log(root: Path, n: int) -> Path:
    """A home whose audit.log holds `n` chained agent_run lines, with a matching head."""
    template = _TEMPLATE
    # The template must be exactly what the writer produces, or the bench measures a fiction.
    assert (template % (TS, 7, MANIFEST_SHA, 7, GENESIS)).encode() == render_line(
        _event(7), ts=TS, prev_hash=GENESIS)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "audit.log"
    prev = GENESIS
    size = 0
    sha = hashlib.sha256
    with open(path, "wb", buffering=1 << 20) as fh:
        for i in range(n):
            line = (template % (TS, i % 500, MANIFEST_SHA, i % 3600, prev)).encode()
            fh.write(line + b"\n")
            size += len(line) + 1
            prev = sha(line).hexdigest()
    write_json_atomic(root / "state" / HEAD_FILE, Head(n, prev, size).to_json())
    return root


def build_rotated_log(root: Path, n: int, *, live_bytes: int = 8 << 20) -> Path:
    """A home holding `n` agent_run lines rotated as the writer rotates them: 32 MiB
    segments, each new file starting with the seam for the one before, the live audit.log
    holding about `live_bytes`, and a head record for it. Returns the home."""
    root.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256
    sample = len((_TEMPLATE % (TS, 0, MANIFEST_SHA, 0, "0" * 64)).encode()) + 1
    live_lines = max(1, live_bytes // sample)
    prev = GENESIS
    k = 0
    path = root / "audit.log"
    fh = open(path, "wb", buffering=1 << 20)  # noqa: SIM115
    size = count = 0
    for i in range(n):
        # Rotate as the writer would, except that the last `live_lines` stay in the live file.
        if size >= DEFAULT_MAX_BYTES and n - i > live_lines:
            fh.close()
            name = f"audit.log.20260519T{10 + k // 60:02d}{k % 60:02d}00"
            os.replace(path, root / name)
            seam = render_seam(name, entries=count, first_ts=TS, tail=prev, ts=TS)
            fh = open(path, "wb", buffering=1 << 20)  # noqa: SIM115
            fh.write(seam + b"\n")
            prev, size, count = sha(seam).hexdigest(), len(seam) + 1, 1
            k += 1
        line = (_TEMPLATE % (TS, i % 500, MANIFEST_SHA, i % 3600, prev)).encode()
        fh.write(line + b"\n")
        size += len(line) + 1
        count += 1
        prev = sha(line).hexdigest()
    fh.close()
    write_json_atomic(root / "state" / HEAD_FILE, Head(count, prev, size).to_json())
    return root


@contextmanager
def _no_fsync(enabled: bool) -> Iterator[None]:
    # The head goes through the project's one atomic-write helper, which always fsyncs;
    # for the "fsync excluded" figure those calls are stubbed too, in this process only.
    if not enabled:
        yield
        return
    with mock.patch.object(os, "fsync", lambda fd: None):
        yield


def append_ratio(small: Path, big: Path, *, fsync: bool, rounds: int,
                 batch: int) -> dict[str, Any]:
    logs = {"small": AuditLog(Home(small), fsync=fsync), "big": AuditLog(Home(big), fsync=fsync)}
    samples: dict[str, list[float]] = {"small": [], "big": []}
    counter = 0
    with _no_fsync(not fsync):
        for log in logs.values():  # warm caches and imports on both sides
            for _ in range(20):
                counter += 1
                log.append(_event(counter))
        for r in range(rounds):
            order = ("small", "big") if r % 2 == 0 else ("big", "small")
            for name in order:
                log = logs[name]
                started = time.perf_counter()
                for _ in range(batch):
                    counter += 1
                    log.append(_event(counter))
                samples[name].append((time.perf_counter() - started) / batch)
    small_us = statistics.median(samples["small"]) * 1e6
    big_us = statistics.median(samples["big"]) * 1e6
    return {"ratio": round(big_us / small_us, 3), "small_us": round(small_us, 1),
            "big_us": round(big_us, 1), "appends_per_side": rounds * batch + 20}


def run_verify(home: Path, runs: int, *args: str) -> dict[str, Any]:
    exe = REPO / ".venv" / "bin" / "dotagent"
    env = dict(os.environ, DOTAGENT_HOME=str(home), NO_COLOR="1")
    walls: list[float] = []
    rss: list[int] = []
    report: dict[str, Any] = {}
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.Popen([str(exe), "audit", "verify", *args, "--json"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # wait4 gives this child's own rusage (peak RSS); its output is a few hundred bytes,
        # so the pipes cannot fill up before it exits.
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - started)
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        rss.append(usage.ru_maxrss)  # KiB on Linux
        if proc.returncode != 0:
            raise RuntimeError(f"verify failed: {err.decode()[:300]} {out.decode()[:300]}")
        report = json.loads(out)
    wall = statistics.median(walls)
    return {"lines": report["lines"], "ok": report["ok"], "status": report.get("status"),
            "files": 1 + len(report.get("walked", [])), "wall_s": round(wall, 3),
            "walls_s": [round(w, 3) for w in walls], "peak_rss_mb": round(max(rss) / 1024, 1)}


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        t0 = time.perf_counter()
        small = build_log(Path(tmp) / "small", SMALL)
        big = build_log(Path(tmp) / "big", BIG)
        rotated = build_rotated_log(Path(tmp) / "rotated", BIG)
        build_s = time.perf_counter() - t0
        size_mb = (big / "audit.log").stat().st_size / 1e6
        segments = sorted(p.name for p in rotated.glob("audit.log.2*"))

        verify_big = run_verify(big, 3)
        verify_small = run_verify(small, 3)
        verify_full = run_verify(rotated, 3, "--full")
        verify_plain = run_verify(rotated, 3)

        # Appends go to the live file of the rotated 1M-line log: what a big log looks like.
        no_sync = append_ratio(small, rotated, fsync=False, rounds=21, batch=100)
        with_sync = append_ratio(small, rotated, fsync=True, rounds=11, batch=20)

    per_s = verify_big["lines"] / verify_big["wall_s"] if verify_big["ok"] else None
    full_ok = verify_full["ok"] and verify_full["status"] == "intact_from_genesis"
    full_per_s = verify_full["lines"] / verify_full["wall_s"] if full_ok else None
    return [
        {"metric": "audit_append_ratio_1m_1k", "value": no_sync["ratio"],
         "unit": "x (1M ÷ 1k entries)", "target": "<= 1.2",
         "detail": {"value_is": "fsync-excluded ratio (log and head fsyncs stubbed)",
                    "big_log": f"{BIG:,} lines rotated into {len(segments)} segments + live",
                    "fsync_excluded": no_sync, "fsync_included": with_sync,
                    "worse_ratio": max(no_sync["ratio"], with_sync["ratio"]),
                    "big_log_mb": round(size_mb, 1), "build_s": round(build_s, 1)}},
        {"metric": "audit_verify_per_s", "value": round(per_s) if per_s else None,
         "unit": "lines/s", "target": ">= 200000",
         "detail": {"how": ".venv/bin/dotagent audit verify --json, wall time incl. start-up, "
                           "median of 3", "big": verify_big, "small_1k": verify_small,
                    "peak_rss_mb_1m": verify_big["peak_rss_mb"],
                    "peak_rss_mb_1k": verify_small["peak_rss_mb"]}},
        {"metric": "audit_verify_full_per_s", "value": round(full_per_s) if full_per_s else None,
         "unit": "lines/s", "target": ">= 200000",
         "detail": {"how": ".venv/bin/dotagent audit verify --full --json over a rotated log "
                           "(32 MiB segments + live file), wall time incl. start-up, median "
                           "of 3",
                    "segments": len(segments), "full": verify_full,
                    "peak_rss_mb": verify_full["peak_rss_mb"],
                    "plain_verify_same_log": verify_plain}},
    ]


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
