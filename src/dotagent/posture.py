"""`doctor --posture`: best-effort, read-only checks of what the user is expected to handle.

The threat model leaves four things to the host: disk encryption, SSH keys with a passphrase,
an outbound firewall, recent backups. Each check here says `ok` only on positive evidence,
`warning` (with the fix) when it sees the defense missing, and `unknown` (with why) when it
cannot tell. Everything the checks learn about the machine goes through `Host`, so tests feed
the facts; `Host` itself runs commands without a shell, with a timeout and stdin closed.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

__all__ = ["RECENT_BACKUP", "Check", "CommandResult", "Host", "PostureReport", "run_posture"]

Status = Literal["ok", "warning", "unknown"]
RECENT_BACKUP = timedelta(days=7)  # a backup older than this is a warning
COMMAND_TIMEOUT = 5.0
KEY_READ_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Check:
    id: str
    status: Status
    detail: str  # what was seen (paths and names only, never key material)
    fix: str | None  # what to do; None when ok

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass
class PostureReport:
    checks: list[Check]

    def to_json(self) -> dict[str, Any]:
        return {"checks": [c.to_json() for c in self.checks],
                "summary": {s: sum(c.status == s for c in self.checks)
                            for s in ("ok", "warning", "unknown")}}


@dataclass(frozen=True)
class CommandResult:
    returncode: int | None  # None: timed out
    stdout: str
    stderr: str


class Host:
    """The facts about this machine that the checks read. Tests override methods."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = dict(os.environ if env is None else env)

    def system(self) -> str:
        return os.uname().sysname  # "Linux", "Darwin", …

    def now(self) -> datetime:
        from dotagent.clock import utc_now
        return utc_now()

    def user_home(self) -> Path:
        return Path(self.env.get("HOME") or Path.home())

    def run(self, argv: Sequence[str]) -> CommandResult | None:
        """None when the program is not installed (or cannot be started)."""
        import shutil
        exe = shutil.which(argv[0], path=self.env.get("PATH", os.defpath))
        if exe is None:
            return None
        env = {"PATH": self.env.get("PATH", os.defpath), "LC_ALL": "C", "LANG": "C",
               "HOME": str(self.user_home())}
        try:
            p = subprocess.run([exe, *argv[1:]], stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=COMMAND_TIMEOUT, env=env, check=False,
                               start_new_session=True)  # no controlling tty: never prompts
        except subprocess.TimeoutExpired:
            return CommandResult(None, "", "")
        except OSError:
            return None
        return CommandResult(p.returncode, p.stdout.decode("utf-8", "replace"),
                             p.stderr.decode("utf-8", "replace"))

    def read_text(self, path: str) -> str | None:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read(1 << 20)
        except OSError:
            return None

    def read_head(self, path: Path, limit: int = KEY_READ_LIMIT) -> bytes | None:
        """The first `limit` bytes of a regular file (never blocks on a FIFO)."""
        from dotagent.boundedread import open_regular
        try:
            with open_regular(path) as f:
                return f.read(limit)
        except OSError:
            return None

    def listdir(self, path: str | Path) -> list[str] | None:
        try:
            return sorted(os.listdir(path))
        except OSError:
            return None

    def is_file(self, path: Path) -> bool:
        return path.is_file()

    def exists(self, path: Path) -> bool:
        return path.exists()

    def mtime(self, path: Path) -> datetime | None:
        from dotagent.clock import from_epoch
        try:
            return from_epoch(path.stat().st_mtime)
        except OSError:
            return None

    def device_of(self, path: Path) -> tuple[int, int] | None:
        """(major, minor) of the file system holding `path` (its nearest existing parent)."""
        for p in (path, *path.parents):
            try:
                st = os.stat(p)
            except OSError:
                continue
            return os.major(st.st_dev), os.minor(st.st_dev)
        return None

    def block_device(self, node: str) -> tuple[int, int] | None:
        """(major, minor) of a block device node such as /dev/mapper/root."""
        import stat
        try:
            st = os.stat(node)
        except OSError:
            return None
        if not stat.S_ISBLK(st.st_mode):
            return None
        return os.major(st.st_rdev), os.minor(st.st_rdev)

    def process_names(self) -> set[str] | None:
        """Names of running processes (Linux: /proc/*/comm); None when unreadable."""
        pids = self.listdir("/proc")
        if pids is None:
            return None
        names = set()
        for pid in pids:
            if pid.isdigit():
                text = self.read_text(f"/proc/{pid}/comm")
                if text:
                    names.add(text.strip())
        return names


def run_posture(host: Host, state_home: Path) -> PostureReport:
    from dotagent.posture_checks import backups, firewall

    checks: list[Callable[[], Check]] = [
        lambda: disk_encryption(host, state_home), lambda: ssh_keys(host),
        lambda: firewall(host), lambda: backups(host)]
    return PostureReport([c() for c in checks])


# -- disk encryption ----------------------------------------------------------------------

LUKS_FIX = ("encrypt the disk holding it (LUKS, usually chosen at install time); dotagent "
            "cannot see fscrypt or self-encrypting drives, so ignore this if you use one")


def disk_encryption(host: Host, state_home: Path) -> Check:
    system = host.system()
    if system == "Darwin":
        return _filevault(host)
    if system != "Linux":
        return Check("disk_encryption", "unknown", f"no disk-encryption check for {system}",
                     "check that the disk holding the dotagent home is encrypted")
    return _luks(host, state_home)


def _filevault(host: Host) -> Check:
    r = host.run(["fdesetup", "status"])
    fix = "turn FileVault on (System Settings → Privacy & Security → FileVault)"
    if r is None or r.returncode is None:
        why = "fdesetup is not available" if r is None else "fdesetup status timed out"
        return Check("disk_encryption", "unknown", why, fix)
    if "FileVault is On" in r.stdout:
        return Check("disk_encryption", "ok", "FileVault is on", None)
    if "FileVault is Off" in r.stdout:
        return Check("disk_encryption", "warning", "FileVault is off", fix)
    return Check("disk_encryption", "unknown",
                 f"fdesetup status said nothing readable (exit {r.returncode})", fix)


def _mount_of(host: Host, path: Path) -> tuple[str, str, str] | None:
    """(mount point, fstype, source) of the mount holding `path`, from mountinfo."""
    text = host.read_text("/proc/self/mountinfo")
    if text is None:
        return None
    target = os.path.realpath(path) if host.exists(path) else str(path)
    best: tuple[str, str, str] | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        point = fields[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):
            best = (point, tail[0], tail[1])
    return best


def _crypt_below(host: Host, sysdir: str, depth: int = 0) -> str | None:
    """The name of a dm-crypt device at or below this block device, else None."""
    if depth > 8:
        return None
    uuid = host.read_text(f"{sysdir}/dm/uuid")
    if uuid and uuid.strip().startswith("CRYPT-"):
        name = host.read_text(f"{sysdir}/dm/name")
        return (name or "").strip() or sysdir.rsplit("/", 1)[-1]
    for slave in host.listdir(f"{sysdir}/slaves") or []:
        found = _crypt_below(host, f"/sys/class/block/{slave}", depth + 1)
        if found:
            return found
    return None


def _luks(host: Host, state_home: Path) -> Check:
    where = f"the file system holding {state_home}"
    mount = _mount_of(host, state_home)
    if mount and mount[1] == "ecryptfs":
        return Check("disk_encryption", "ok", f"{where} is eCryptfs ({mount[0]})", None)
    dev = host.device_of(state_home)
    if dev is None:
        return Check("disk_encryption", "unknown", f"cannot stat {state_home}", LUKS_FIX)
    if dev[0] == 0:  # no block device of its own: btrfs, overlay, tmpfs, network…
        if mount is None:
            return Check("disk_encryption", "unknown",
                         f"{where} has no block device and /proc/self/mountinfo is "
                         "unreadable", LUKS_FIX)
        point, fstype, source = mount
        dev = host.block_device(source) if source.startswith("/dev/") else None
        if dev is None:
            return Check("disk_encryption", "unknown",
                         f"{where} is {fstype} at {point} (source {source!r}), not a block "
                         "device dotagent can follow", LUKS_FIX)
    sysdir = f"/sys/dev/block/{dev[0]}:{dev[1]}"
    if host.listdir(sysdir) is None:
        return Check("disk_encryption", "unknown", f"{sysdir} is unreadable", LUKS_FIX)
    crypt = _crypt_below(host, sysdir)
    if crypt:
        return Check("disk_encryption", "ok", f"{where} is on dm-crypt device {crypt!r}", None)
    label = f"device {dev[0]}:{dev[1]}" + (f" ({mount[2]})" if mount else "")
    return Check("disk_encryption", "warning",
                 f"{where} is on {label}, which is not dm-crypt/LUKS", LUKS_FIX)


# -- SSH keys -----------------------------------------------------------------------------

SSH_FIX = ("add a passphrase: `ssh-keygen -p -f KEY` (or keep keys in an agent such as "
           "1Password or on a hardware key)")
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----")


def _ssh_string(blob: bytes, at: int) -> tuple[bytes, int]:
    if at + 4 > len(blob):
        raise ValueError("truncated")
    (n,) = struct.unpack(">I", blob[at:at + 4])
    if at + 4 + n > len(blob):
        raise ValueError("truncated")
    return blob[at + 4:at + 4 + n], at + 4 + n


def key_protection(data: bytes) -> str | None:
    """'passphrase', 'none', 'hardware' or 'unreadable' for a private key; None if not a key."""
    m = _PEM.search(data)
    if m is None:
        return None
    kind = m.group(1).strip()
    if kind == b"OPENSSH":
        end = data.find(b"-----END OPENSSH PRIVATE KEY-----", m.end())
        if end < 0:
            return "unreadable"
        try:
            blob = base64.b64decode(b"".join(data[m.end():end].split()), validate=True)
            magic = b"openssh-key-v1\0"
            if not blob.startswith(magic):
                return "unreadable"
            cipher, at = _ssh_string(blob, len(magic))
            _kdf, at = _ssh_string(blob, at)
            _kdfopts, at = _ssh_string(blob, at)
            at += 4  # number of keys
            public, at = _ssh_string(blob, at)
            keytype, _ = _ssh_string(public, 0)
        except (ValueError, binascii.Error):
            return "unreadable"
        if cipher != b"none":
            return "passphrase"
        return "hardware" if keytype.startswith(b"sk-") else "none"
    if kind == b"ENCRYPTED":  # PKCS#8 encrypted
        return "passphrase"
    # PEM (RSA/EC/DSA, PKCS#8): encrypted ones say so in a Proc-Type header.
    return "passphrase" if b"Proc-Type: 4,ENCRYPTED" in data[m.end():m.end() + 200] else "none"


def ssh_keys(host: Host) -> Check:
    ssh = host.user_home() / ".ssh"
    names = host.listdir(ssh)
    if names is None:
        if not host.exists(ssh):
            return Check("ssh_keys", "ok", f"no {ssh} directory, so no key there", None)
        return Check("ssh_keys", "unknown", f"{ssh} cannot be listed", SSH_FIX)
    bare: list[str] = []
    unreadable: list[str] = []
    keys = 0
    for name in names:
        path = ssh / name
        if name.endswith(".pub") or not host.is_file(path):
            continue
        data = host.read_head(path)
        if data is None:
            unreadable.append(name)
            continue
        kind = key_protection(data)
        if kind is None:
            continue
        keys += 1
        if kind == "none":
            bare.append(name)
        elif kind == "unreadable":
            unreadable.append(name)
    if bare:
        return Check("ssh_keys", "warning",
                     f"private key(s) without a passphrase in {ssh}: {', '.join(bare)}", SSH_FIX)
    if unreadable:
        return Check("ssh_keys", "unknown",
                     f"cannot read or parse {', '.join(unreadable)} in {ssh}", SSH_FIX)
    if keys == 0:
        return Check("ssh_keys", "ok", f"no private key in {ssh}", None)
    return Check("ssh_keys", "ok", f"{keys} private key(s) in {ssh}, each with a passphrase "
                 "or on a hardware key", None)
