"""bubblewrap (`bwrap`, Debian `bubblewrap`), run as a plain subprocess — never setuid,
never a shell.

The command runs as `bwrap <options> -- <absolute executable> <args…>`:
- always a new pid namespace (`--unshare-pid`) and `--die-with-parent`: when bwrap dies, its
  init dies, and the kernel kills everything left in the namespace — even a process that
  left the supervisor's process group with setsid. No `--new-session`: the command stays in
  the process group dotagent made, so the supervisor's TERM reaches it first;
- `--cap-drop ALL` (as root bwrap would otherwise keep the capabilities that undo mounts);
- `network = "deny"` → `--unshare-net` (only a loopback of its own);
- `filesystem_writable` → `--ro-bind / /`, then `--bind-try` for each listed directory (one
  that does not exist is skipped: nothing can be written there anyway) and for the run's
  own paths (AGENT_TMPDIR, the heartbeat file); `/tmp` is not masked. Without it, `/` is
  bound writable and only the namespaces apply;
- a fresh `/dev` and `/proc` in every case.

bwrap 0.8 has no `--argv0`: the command sees its absolute path as argv[0].
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from dotagent.sandbox.base import Policy

__all__ = ["BWRAP_ENV", "BwrapSandbox", "find_bwrap"]

# Tests (and users with bwrap outside PATH) name the binary here; an empty or missing file
# makes the sandbox unavailable, which is how the fail-closed path is tested.
BWRAP_ENV = "DOTAGENT_BWRAP"
# bwrap path → (None when it works, else the reason it does not; when that was found). A
# working bwrap is probed once per process; a failing one again after RETRY_FAILED_AFTER
# seconds, so installing bubblewrap (or allowing user namespaces) needs no daemon restart.
_PROBES: dict[str, tuple[str | None, float]] = {}
RETRY_FAILED_AFTER = 60.0
_clock = time.monotonic


def find_bwrap(env: Mapping[str, str]) -> str | None:
    named = env.get(BWRAP_ENV)
    if named is not None:
        return named or None
    found = shutil.which("bwrap", path=env.get("PATH") or os.defpath)
    return os.path.abspath(found) if found else None


class BwrapSandbox:
    name = "bwrap"

    def __init__(self, path: str | None) -> None:
        self.path = path

    def unavailable(self) -> str | None:
        if self.path is None:
            return ("bubblewrap (bwrap) is not installed or not on PATH "
                    "(Debian/Ubuntu: apt install bubblewrap)")
        known = _PROBES.get(self.path)
        now = _clock()
        if known is None or (known[0] is not None and now - known[1] >= RETRY_FAILED_AFTER):
            known = _PROBES[self.path] = (_probe(self.path), now)
        return known[0]

    def options(self, policy: Policy, *, cwd: Path,
                writable_extra: Sequence[Path]) -> list[str]:
        opts = ["--die-with-parent", "--unshare-pid", "--cap-drop", "ALL"]
        if policy.network != "allow" or policy.hosts:
            opts.append("--unshare-net")
        if policy.writable is None:
            opts += ["--bind", "/", "/"]
        else:
            opts += ["--ro-bind", "/", "/"]
        opts += ["--dev", "/dev", "--proc", "/proc"]
        if policy.writable is not None:
            for path in (*policy.writable, *writable_extra):
                opts += ["--bind-try", str(path), str(path)]
        opts += ["--chdir", str(cwd)]
        return opts

    def wrap(self, policy: Policy, argv: Sequence[str], executable: str, *, cwd: Path,
             writable_extra: Sequence[Path]) -> tuple[list[str], str]:
        assert self.path is not None, "wrap() after unavailable() said why not"
        opts = self.options(policy, cwd=cwd, writable_extra=writable_extra)
        return [self.path, *opts, "--", executable, *argv[1:]], self.path


def _probe(path: str) -> str | None:
    """Run the options a real run uses on `true`: a missing binary, blocked user namespaces
    (`kernel.unprivileged_userns_clone = 0`, an AppArmor restriction) or a seccomp filter
    all show up here."""
    target = shutil.which("true") or "/bin/true"
    argv = [path, "--die-with-parent", "--unshare-pid", "--cap-drop", "ALL", "--unshare-net",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--", target]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run {path}: {getattr(exc, 'strerror', None) or exc}"
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = detail[-1] if detail else f"exit {done.returncode}"
        return f"{path} cannot create namespaces here ({why}; are user namespaces blocked?)"
    return None
