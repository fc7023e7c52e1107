"""The salt that makes `jitter_seconds` delays differ between machines and homes.

systemd's `FixedRandomDelay=true` derives a timer's delay from the machine id, the user and the
unit name, so that a fleet of machines with the same timer spreads out while each machine keeps
its own delay across reboots. Ours is the same idea: the machine id (`/etc/machine-id`, else
`/var/lib/dbus/machine-id`, else the host name — macOS and some containers have no machine
id) and the home's resolved path (which differs per user, and per home of one user), hashed
together. The machine id itself never leaves this module: only a sha256 over it does.

Reading never raises; the pure scheduler receives the salt (`schedule.windows.fixed_delay`).
"""

from __future__ import annotations

import functools
import hashlib
import re
import socket
from pathlib import Path

from dotagent.paths import Home

__all__ = ["MACHINE_ID_FILES", "jitter_salt", "machine_id"]

MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
_ID = re.compile(r"[0-9a-fA-F]{32}")


@functools.cache
def machine_id() -> str:
    """This machine's id (32 hex digits), or `host:<hostname>` when there is none."""
    for path in MACHINE_ID_FILES:
        try:
            text = path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            continue
        if _ID.fullmatch(text):
            return text.lower()
    return f"host:{socket.gethostname()}"


def jitter_salt(home: Home) -> bytes:
    """The salt for `fixed_delay`: sha256 of the machine id and the home's resolved path."""
    return hashlib.sha256(b"\0".join((b"dotagent-jitter-salt-v1", machine_id().encode(),
                                      str(home.root.resolve()).encode(errors="surrogateescape")
                                      ))).digest()
