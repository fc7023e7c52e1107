"""`doctor --posture`: each check fed facts through a fake Host, real SSH keys made by
ssh-keygen, and the real command on this machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dotagent.posture import CommandResult, Host, disk_encryption, key_protection, ssh_keys
from dotagent.posture_checks import (
    backups,
    firewall,
    iptables_filters_output,
    nft_filters_output,
)

from helpers import dotagent, write_agent

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


class FakeHost(Host):
    def __init__(self, system: str = "Linux", files: dict[str, str] | None = None,
                 dirs: dict[str, list[str]] | None = None,
                 commands: dict[str, CommandResult] | None = None,
                 dev: tuple[int, int] | None = (254, 1), procs: set[str] | None = None,
                 paths: set[str] | None = None) -> None:
        super().__init__({"HOME": "/nonexistent-home", "PATH": "/usr/bin"})
        self._system, self.files, self.dirs = system, files or {}, dirs or {}
        self.commands, self.dev, self.procs = commands or {}, dev, procs or set()
        self.paths = paths or set()
        self.ran: list[list[str]] = []

    def system(self) -> str:
        return self._system

    def now(self) -> datetime:
        return NOW

    def run(self, argv: Sequence[str]) -> CommandResult | None:
        self.ran.append(list(argv))
        return self.commands.get(argv[0])

    def read_text(self, path: str) -> str | None:
        return self.files.get(path)

    def listdir(self, path: str | Path) -> list[str] | None:
        return self.dirs.get(str(path))

    def exists(self, path: Path) -> bool:
        return str(path) in self.paths

    def device_of(self, path: Path) -> tuple[int, int] | None:
        return self.dev

    def block_device(self, node: str) -> tuple[int, int] | None:
        return (253, 2) if node == "/dev/mapper/vg-home" else None

    def process_names(self) -> set[str] | None:
        return self.procs


def ok(out: str = "", code: int = 0, err: str = "") -> CommandResult:
    return CommandResult(code, out, err)


# -- disk encryption ------------------------------------------------------------------------

def test_luks_found_below_lvm_is_ok() -> None:
    host = FakeHost(dev=(0, 45), files={
        "/proc/self/mountinfo": "29 1 0:45 / /home rw - btrfs /dev/mapper/vg-home rw\n"
                                "22 1 254:1 / / rw - ext4 /dev/vda1 rw\n",
        "/sys/dev/block/253:2/dm/uuid": "LVM-abc\n",
        "/sys/class/block/dm-0/dm/uuid": "CRYPT-LUKS2-1234-luks\n",
        "/sys/class/block/dm-0/dm/name": "luks-home\n"},
        dirs={"/sys/dev/block/253:2": ["dm", "slaves"], "/sys/dev/block/253:2/slaves": ["dm-0"]})
    c = disk_encryption(host, Path("/home/u/.config/dotagent"))
    assert (c.status, c.fix) == ("ok", None)
    assert "'luks-home'" in c.detail


def test_plain_partition_is_a_warning_with_the_fix() -> None:
    host = FakeHost(files={"/proc/self/mountinfo": "22 1 254:1 / / rw - ext4 /dev/vda1 rw\n"},
                    dirs={"/sys/dev/block/254:1": ["partition"]})
    c = disk_encryption(host, Path("/home/u/.config/dotagent"))
    assert c.status == "warning"
    assert "/dev/vda1" in c.detail and "not dm-crypt/LUKS" in c.detail
    assert c.fix and "LUKS" in c.fix


def test_disk_unknown_when_it_cannot_tell() -> None:
    unreadable = FakeHost(dirs={})  # /sys/dev/block/254:1 cannot be listed
    c = disk_encryption(unreadable, Path("/h"))
    assert c.status == "unknown" and "unreadable" in c.detail
    tmpfs = FakeHost(dev=(0, 30), files={"/proc/self/mountinfo":
                                         "40 1 0:30 / /h rw - tmpfs tmpfs rw\n"})
    c = disk_encryption(tmpfs, Path("/h/state"))
    assert c.status == "unknown" and "tmpfs" in c.detail and c.fix
    assert disk_encryption(FakeHost(system="SunOS"), Path("/h")).status == "unknown"


def test_filevault_status_read_from_fdesetup() -> None:
    on = FakeHost(system="Darwin", commands={"fdesetup": ok("FileVault is On.\n")})
    off = FakeHost(system="Darwin", commands={"fdesetup": ok("FileVault is Off.\n")})
    odd = FakeHost(system="Darwin", commands={"fdesetup": ok("", 1, "denied")})
    assert disk_encryption(on, Path("/h")).status == "ok"
    assert on.ran == [["fdesetup", "status"]]
    assert disk_encryption(off, Path("/h")).status == "warning"
    assert disk_encryption(odd, Path("/h")).status == "unknown"
    assert disk_encryption(FakeHost(system="Darwin"), Path("/h")).status == "unknown"


# -- SSH keys (real keys from ssh-keygen) -----------------------------------------------------

def _keygen(path: Path, passphrase: str, *extra: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-N", passphrase, "-C", "t", "-f", str(path), *extra],
                   check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)


def test_ssh_keys_without_passphrase_are_named_and_never_printed(tmp_path: Path) -> None:
    ssh = tmp_path / ".ssh"
    ssh.mkdir(mode=0o700)
    _keygen(ssh / "id_ed25519", "")
    _keygen(ssh / "id_locked", "correct horse", "-t", "ed25519")
    _keygen(ssh / "legacy_rsa", "", "-t", "rsa", "-b", "1024", "-m", "PEM")
    _keygen(ssh / "legacy_locked", "pw-pw-pw", "-t", "rsa", "-b", "1024", "-m", "PEM")
    (ssh / "known_hosts").write_text("example.org ssh-ed25519 AAAA\n")
    host = Host({"HOME": str(tmp_path), "PATH": os.environ["PATH"]})
    c = ssh_keys(host)
    assert c.status == "warning"
    assert c.detail == f"private key(s) without a passphrase in {ssh}: id_ed25519, legacy_rsa"
    assert c.fix and "ssh-keygen -p" in c.fix
    for name in ("id_ed25519", "legacy_rsa"):
        body = "".join((ssh / name).read_text().splitlines()[1:-1])
        assert body[:40] not in json.dumps(c.to_json())
    assert key_protection((ssh / "id_locked").read_bytes()) == "passphrase"
    assert key_protection((ssh / "legacy_locked").read_bytes()) == "passphrase"
    assert key_protection((ssh / "id_ed25519.pub").read_bytes()) is None

    for name in ("id_ed25519", "legacy_rsa"):
        (ssh / name).unlink()
    c = ssh_keys(host)
    assert c.status == "ok" and c.fix is None
    assert "2 private key(s)" in c.detail


def test_ssh_keys_no_dir_and_broken_key(tmp_path: Path) -> None:
    host = Host({"HOME": str(tmp_path), "PATH": os.environ["PATH"]})
    assert ssh_keys(host).status == "ok"  # nothing there to protect
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    (ssh / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot base64!\n"
                                "-----END OPENSSH PRIVATE KEY-----\n")
    c = ssh_keys(host)
    assert c.status == "unknown" and "id_rsa" in c.detail


# -- outbound firewall ------------------------------------------------------------------------

NFT_DROP = """table inet filter {
	chain output {
		type filter hook output priority filter; policy accept;
		jump egress
	}
	chain egress {
		ip daddr 10.0.0.0/8 drop
	}
}
"""
NFT_INPUT_ONLY = """table inet filter {
	chain input {
		type filter hook input priority filter; policy drop;
	}
	chain output {
		type filter hook output priority filter; policy accept;
	}
}
"""


def test_nft_and_iptables_rules_are_read() -> None:
    assert nft_filters_output(NFT_DROP)
    assert not nft_filters_output(NFT_INPUT_ONLY)
    assert not nft_filters_output("")
    assert iptables_filters_output("-P INPUT ACCEPT\n-P OUTPUT DROP\n")
    assert iptables_filters_output("-P OUTPUT ACCEPT\n-N ufw-out\n-A OUTPUT -j ufw-out\n"
                                   "-A ufw-out -p tcp --dport 25 -j REJECT\n")
    assert not iptables_filters_output("-P INPUT DROP\n-P OUTPUT ACCEPT\n"
                                       "-A INPUT -p tcp -j DROP\n")


def test_firewall_statuses() -> None:
    assert firewall(FakeHost(commands={"nft": ok(NFT_DROP)})).status == "ok"
    c = firewall(FakeHost(commands={"nft": ok(NFT_INPUT_ONLY)}))
    assert c.status == "warning" and c.fix
    denied = FakeHost(commands={"nft": ok("", 1, "Error: Operation not permitted\n"),
                                "iptables": ok("", 4, "Permission denied (you must be root)")})
    c = firewall(denied)
    assert c.status == "unknown" and "Operation not permitted" in c.detail
    assert denied.ran == [["nft", "list", "ruleset"], ["iptables", "-S"]]
    c = firewall(FakeHost())
    assert c.status == "unknown" and "nft is not installed" in c.detail
    assert firewall(FakeHost(procs={"opensnitchd"})).status == "ok"
    timeout = firewall(FakeHost(commands={"nft": CommandResult(None, "", "")}))
    assert timeout.status == "unknown" and "timed out" in timeout.detail


def test_mac_firewall_little_snitch() -> None:
    snitch = FakeHost(system="Darwin", paths={"/Applications/Little Snitch.app"})
    assert firewall(snitch).status == "ok"
    none = FakeHost(system="Darwin", commands={"ps": ok("launchd\nFinder\n")})
    assert firewall(none).status == "warning"
    assert firewall(FakeHost(system="Darwin")).status == "unknown"


# -- backups ----------------------------------------------------------------------------------

def test_backups() -> None:
    recent = FakeHost(dirs={"/timeshift/snapshots": ["2026-03-01_10-00-00",
                                                     "2026-03-08_02-00-00", "junk"]})
    c = backups(recent)
    assert c.status == "ok" and "2026-03-08" in c.detail and c.fix is None
    old = FakeHost(dirs={"/timeshift/snapshots": ["2026-01-01_10-00-00"]})
    c = backups(old)
    assert c.status == "warning" and "2026-01-01" in c.detail and c.fix
    restic = FakeHost(commands={"restic": ok("restic 0.16\n")})
    c = backups(restic)
    assert c.status == "unknown" and "restic is installed" in c.detail
    assert backups(FakeHost()).status == "warning"
    tm = FakeHost(system="Darwin", commands={
        "tmutil": ok("/Volumes/TM/Backups.backupdb/mac/2026-03-09-101500\n")})
    assert backups(tm).status == "ok"
    tm_old = FakeHost(system="Darwin", commands={
        "tmutil": ok("/Volumes/.timemachine/x/2026-02-01-101500.backup\n")})
    assert backups(tm_old).status == "warning"
    tm_none = FakeHost(system="Darwin", commands={"tmutil": ok("", 1, "No backups")})
    assert backups(tm_none).status == "unknown"


# -- the real command on this machine ---------------------------------------------------------

def test_real_doctor_posture_json_on_this_box(tmp_path: Path, cli_env: dict[str, str]) -> None:
    ssh = Path(cli_env["HOME"]) / ".ssh"
    ssh.mkdir(mode=0o700)
    _keygen(ssh / "id_ed25519", "")
    p = dotagent("doctor", "--posture", "--json", env=cli_env)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["ok"] is True
    posture = data["posture"]
    assert list(posture) == ["checks", "summary"]
    ids = [c["id"] for c in posture["checks"]]
    assert ids == ["disk_encryption", "ssh_keys", "outbound_firewall", "backup"]
    for c in posture["checks"]:
        assert list(c) == ["id", "status", "detail", "fix"]
        assert c["status"] in ("ok", "warning", "unknown")
        assert (c["fix"] is None) == (c["status"] == "ok")
    counts = {s: sum(c["status"] == s for c in posture["checks"])
              for s in ("ok", "warning", "unknown")}
    assert posture["summary"] == counts
    by_id = {c["id"]: c for c in posture["checks"]}
    assert by_id["ssh_keys"]["status"] == "warning"
    assert "id_ed25519" in by_id["ssh_keys"]["detail"]
    if shutil.which("lsblk"):  # an independent witness: no crypt device at all → never ok
        types = subprocess.run(["lsblk", "-rno", "TYPE"], capture_output=True, text=True,
                               check=False).stdout.split()
        if "crypt" not in types:
            assert by_id["disk_encryption"]["status"] != "ok"
    if not shutil.which("nft") and not shutil.which("iptables"):
        assert by_id["outbound_firewall"]["status"] == "unknown"
    plain = dotagent("doctor", "--json", env=cli_env)
    assert "posture" not in json.loads(plain.stdout)


def test_real_doctor_posture_text_and_exit_status(tmp_path: Path,
                                                  cli_env: dict[str, str]) -> None:
    env = {**cli_env, "NO_COLOR": "1"}
    p = dotagent("doctor", "--posture", env=env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    start = lines.index("posture (best-effort advice about this host, not enforced):")
    marks = [ln for ln in lines[start + 1:] if ln[:2] in ("✓ ", "! ", "? ")]
    assert [m.split(":")[0][2:] for m in marks] == ["disk_encryption", "ssh_keys",
                                                    "outbound_firewall", "backup"]
    assert "\x1b[" not in p.stdout
    # A broken manifest still fails doctor; posture does not change that.
    root = tmp_path / "agents"
    write_agent(root, "bad", "[agent]\nname = 'bad'\ntimeout_seconds = 'x'\n")
    p = dotagent("doctor", "--posture", "--json", env={**env, "DOTAGENT_ROOT": str(root)})
    assert p.returncode == 1
    assert json.loads(p.stdout)["posture"]["checks"]


@pytest.mark.parametrize("flag", ["--posture"])
def test_posture_help_is_listed(flag: str, cli_env: dict[str, str]) -> None:
    assert flag in dotagent("doctor", "--help", env=cli_env).stdout


def test_ssh_fifo_is_skipped_not_waited_on(tmp_path: Path) -> None:
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    os.mkfifo(ssh / "id_fifo")
    host = Host({"HOME": str(tmp_path), "PATH": os.environ["PATH"]})
    assert host.read_head(ssh / "id_fifo") is None  # refused at once, not blocked on
    c = ssh_keys(host)
    assert (c.status, c.detail) == ("ok", f"no private key in {ssh}")
