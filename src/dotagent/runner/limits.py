"""`[limits]` at run time (threat model V7, docs/manifest.md "[limits]").

The rlimits and the niceness are set by a tiny exec wrapper (`_limitexec.py`, run with the
same Python as dotagent) that the agent's own process group starts: nothing runs between
fork and exec in dotagent's process, which may be the multi-threaded daemon, and the limits
are in place before the agent's first instruction (docs/decisions.md). `max_output_mb` is
enforced by the output collector, and the reasons a run ended are worked out here.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dotagent.manifest import Limits

__all__ = ["MEMORY_RLIMIT", "LimitVerdict", "describe", "limit_reason", "wrap"]

WRAPPER = Path(__file__).with_name("_limitexec.py")
MIB = 1024 * 1024
# RLIMIT_DATA on Linux (≥ 4.7 it counts every private writable mapping: the heap, anonymous
# mmap, thread stacks) rather than RLIMIT_AS, which also counts the address space that Go,
# Java or a JIT reserve without using and would stop them at any useful setting. Elsewhere
# RLIMIT_AS (macOS enforces neither well; documented).
MEMORY_RLIMIT = "data" if sys.platform.startswith("linux") else "as"

# What an allocation failure usually prints, by runtime: Python, C (perror/strerror), glibc,
# C++, Go, Rust, Node/V8, Java.
_OOM_TEXT = re.compile(
    r"MemoryError|Cannot allocate memory|out of memory|std::bad_alloc|"
    r"memory allocation of \d+ bytes failed|failed to allocate|"
    r"JavaScript heap out of memory|OutOfMemoryError", re.IGNORECASE)
_OOM_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS}


def wrap(argv: Sequence[str], executable: str, limits: Limits | None
         ) -> tuple[list[str], str]:
    """The argv and executable that start `argv` under `limits` (unchanged without rlimits
    or nice to set: `max_output_mb` alone needs no wrapper)."""
    spec = _spec(limits)
    if not spec:
        return list(argv), executable
    return [sys.executable, "-I", "-S", str(WRAPPER), spec, executable, *argv], sys.executable


def _spec(limits: Limits | None) -> str:
    if limits is None:
        return ""
    parts: list[str] = []
    if limits.memory_mb is not None:
        parts.append(f"{MEMORY_RLIMIT}={limits.memory_mb * MIB}")
    if limits.cpu_seconds is not None:
        parts.append(f"cpu={limits.cpu_seconds}")
    if limits.nofile is not None:
        parts.append(f"nofile={limits.nofile}")
    if limits.nice is not None:
        parts.append(f"nice={limits.nice}")
    return ",".join(parts)


@dataclass(frozen=True)
class LimitVerdict:
    reason: str  # one line, for the log, the stderr tail, the audit event
    certain: bool  # False: "may have" (the memory heuristic)


def limit_reason(limits: Limits | None, *, returncode: int, exit_ok: bool,
                 stopped_by_dotagent: bool, stderr_tail: str) -> LimitVerdict | None:
    """Which limit most likely ended a run, if one did.

    - killed by SIGXCPU with `cpu_seconds` set: the CPU limit, certainly (the kernel sends
      it at the soft limit);
    - killed by SIGKILL with `cpu_seconds` set and dotagent did not send it (no timeout,
      stop or output cap): the hard CPU limit, one second later, for an agent that ignores
      SIGXCPU — or the kernel's OOM killer, hence "likely";
    - failed with `memory_mb` set, and either killed by SIGSEGV/SIGABRT/SIGBUS or its stderr
      tail shows a runtime's allocation-failure message: "may have hit memory_mb". A program
      that handles the failure silently, or fails for another reason with such a message,
      fools it; it is a hint, never more.
    """
    if limits is None or exit_ok or stopped_by_dotagent:
        return None
    sig = -returncode if returncode < 0 else None
    if limits.cpu_seconds is not None:
        if sig == signal.SIGXCPU:
            return LimitVerdict(f"cpu_seconds limit ({limits.cpu_seconds} s) reached "
                                "(SIGXCPU)", True)
        if sig == signal.SIGKILL:
            return LimitVerdict(f"cpu_seconds limit ({limits.cpu_seconds} s) likely reached "
                                "(SIGKILL at the hard limit; or the kernel's OOM killer)",
                                False)
    if limits.memory_mb is not None and (
            (sig is not None and sig in _OOM_SIGNALS) or _OOM_TEXT.search(stderr_tail)):
        how = f"killed by {signal.Signals(sig).name}" if sig in _OOM_SIGNALS else \
            "an allocation failure in its output"
        return LimitVerdict(f"may have hit memory_mb ({limits.memory_mb} MB): {how}", False)
    return None


def describe(limits: Limits | None) -> str:
    """One line for `doctor`: `memory_mb=512 cpu_seconds=60 …`, or `none`."""
    declared = limits.declared() if limits is not None else {}
    return " ".join(f"{k}={v}" for k, v in declared.items()) or "none"
