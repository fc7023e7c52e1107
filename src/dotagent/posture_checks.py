"""`doctor --posture`, second half: the outbound firewall and backups (see `posture`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dotagent.posture import RECENT_BACKUP, Check

if TYPE_CHECKING:
    from dotagent.posture import Host

__all__ = ["backups", "firewall", "iptables_filters_output", "nft_filters_output"]

FIREWALL_FIX_LINUX = ("add outbound rules (nftables: a chain with `hook output` that drops "
                      "what is not allowed; or OpenSnitch)")
FIREWALL_FIX_MAC = "install an outbound firewall such as Little Snitch or LuLu"
BACKUP_FIX = ("back up regularly (restic, borg, timeshift, Time Machine) and check the last "
              "run yourself")


# -- outbound firewall --------------------------------------------------------------------

def _reaches_drop(bodies: dict[str, list[str]], start: list[str],
                  target: re.Pattern[str], jump: re.Pattern[str]) -> bool:
    seen, todo = set(), list(start)
    while todo:
        chain = todo.pop()
        if chain in seen:
            continue
        seen.add(chain)
        for rule in bodies.get(chain, []):
            if target.search(rule):
                return True
            todo += jump.findall(rule)
    return False


def nft_filters_output(ruleset: str) -> bool:
    """True when a chain hooked on output (or one it jumps to) drops or rejects something."""
    bodies: dict[str, list[str]] = {}
    starts: list[str] = []
    table, chain = "", ""
    for raw in ruleset.splitlines():
        line = raw.strip()
        if m := re.match(r"table (\S+ \S+) \{", line):
            table = m.group(1).replace(" ", ":")
        elif m := re.match(r"chain (\S+) \{", line):
            chain = f"{table}/{m.group(1)}"
            bodies[chain] = []
        elif line == "}":
            chain = "" if chain else chain
        elif chain:
            if re.search(r"\bhook output\b", line):
                starts.append(chain)
            bodies[chain].append(line.replace("jump ", f"jump {table}/")
                                 .replace("goto ", f"goto {table}/"))
    return _reaches_drop(bodies, starts, re.compile(r"\b(drop|reject)\b"),
                         re.compile(r"\b(?:jump|goto) (\S+)"))


def iptables_filters_output(rules: str) -> bool:
    """True when OUTPUT's policy is DROP or a rule reachable from OUTPUT drops/rejects."""
    bodies: dict[str, list[str]] = {}
    for line in rules.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "-P" and parts[1] == "OUTPUT" and \
                parts[2] in ("DROP", "REJECT"):
            return True
        if len(parts) >= 2 and parts[0] == "-A":
            bodies.setdefault(parts[1], []).append(line)
    return _reaches_drop(bodies, ["OUTPUT"], re.compile(r"-j (DROP|REJECT)\b"),
                         re.compile(r"-[jg] (\S+)"))


def firewall(host: Host) -> Check:
    system = host.system()
    if system == "Darwin":
        return _mac_firewall(host)
    if system != "Linux":
        return Check("outbound_firewall", "unknown", f"no firewall check for {system}",
                     FIREWALL_FIX_LINUX)
    procs = host.process_names() or set()
    if "opensnitchd" in procs:
        return Check("outbound_firewall", "ok", "OpenSnitch (opensnitchd) is running", None)
    why: list[str] = []
    for argv, judge in ((["nft", "list", "ruleset"], nft_filters_output),
                        (["iptables", "-S"], iptables_filters_output)):
        r = host.run(argv)
        name = " ".join(argv)
        if r is None:
            why.append(f"{argv[0]} is not installed")
        elif r.returncode is None:
            why.append(f"`{name}` timed out")
        elif r.returncode != 0:
            first = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[0]
            why.append(f"`{name}` failed ({first[:120]}; it usually needs root)")
        elif judge(r.stdout):
            return Check("outbound_firewall", "ok", f"`{name}` shows outbound rules that "
                         "drop or reject", None)
        else:
            return Check("outbound_firewall", "warning", f"`{name}` shows no rule that "
                         "drops or rejects outbound traffic", FIREWALL_FIX_LINUX)
    return Check("outbound_firewall", "unknown", "; ".join(why) +
                 " (run `sudo nft list ruleset` to look yourself)", FIREWALL_FIX_LINUX)


def _mac_firewall(host: Host) -> Check:
    apps = [Path("/Applications/Little Snitch.app"), Path("/Applications/LuLu.app")]
    found = [a.stem for a in apps if host.exists(a)]
    if found:
        return Check("outbound_firewall", "ok", f"{' and '.join(found)} installed", None)
    r = host.run(["ps", "-axco", "comm"])
    if r is None or r.returncode != 0:
        return Check("outbound_firewall", "unknown", "no Little Snitch or LuLu app found and "
                     "the process list is unreadable", FIREWALL_FIX_MAC)
    if any("Little Snitch" in line or line.strip() == "LuLu" for line in r.stdout.splitlines()):
        return Check("outbound_firewall", "ok", "Little Snitch or LuLu is running", None)
    return Check("outbound_firewall", "warning", "neither Little Snitch nor LuLu is installed "
                 "or running (the macOS firewall filters inbound only)", FIREWALL_FIX_MAC)


# -- backups ------------------------------------------------------------------------------

_TM = re.compile(r"(\d{4})-(\d{2})-(\d{2})-(\d{2})(\d{2})(\d{2})")
_TS = re.compile(r"^(\d{4})-(\d{2})-(\d{2})_(\d{2})-(\d{2})-(\d{2})$")


def _stamp(m: re.Match[str]) -> datetime:
    # Snapshot names are local time; read them as UTC (a few hours do not matter at 7 days).
    y, mo, d, h, mi, s = (int(g) for g in m.groups())
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def _judged(tool: str, last: datetime, now: datetime) -> Check:
    age = now - last
    when = last.strftime("%Y-%m-%d")
    if age <= RECENT_BACKUP:
        return Check("backup", "ok", f"{tool}: last backup {when} ({age.days} day(s) ago)", None)
    return Check("backup", "warning", f"{tool}: last backup {when}, {age.days} days ago "
                 f"(older than {RECENT_BACKUP.days} days)", BACKUP_FIX)


def backups(host: Host) -> Check:
    now, unknown = host.now(), []
    if host.system() == "Darwin":
        r = host.run(["tmutil", "latestbackup"])
        if r is not None:
            m = _TM.search(r.stdout) if r.returncode == 0 else None
            if m:
                return _judged("Time Machine", _stamp(m), now)
            unknown.append("Time Machine: `tmutil latestbackup` gave no date (none yet, no "
                           "disk attached, or Full Disk Access missing)")
    snaps = host.listdir("/timeshift/snapshots")
    stamps = [_stamp(m) for name in snaps or [] if (m := _TS.match(name))]
    if stamps:
        return _judged("timeshift", max(stamps), now)
    if host.run(["timeshift", "--version"]) is not None:
        unknown.append("timeshift is installed but /timeshift/snapshots has no snapshot "
                       "dotagent can read")
    for tool, how in (("restic", "`restic snapshots --latest 1`"),
                      ("borg", "`borg list --last 1 REPO`")):
        if host.run([tool, "version" if tool == "restic" else "--version"]) is not None:
            unknown.append(f"{tool} is installed; its last run needs the repository "
                           f"password ({how} shows it)")
    if unknown:
        return Check("backup", "unknown", "; ".join(unknown), BACKUP_FIX)
    return Check("backup", "warning", "no known backup tool found (restic, borg, timeshift"
                 + (", Time Machine" if host.system() == "Darwin" else "") + ")", BACKUP_FIX)
