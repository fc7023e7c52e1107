"""`dotagent key generate`, `dotagent sign NAME` (minisign-compatible manifest signing) and
`dotagent pending`, `dotagent approve NAME` (approval of new and changed agents);
docs/security.md."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from dotagent.cli._agents import complete_agent, find_agent

__all__ = ["approve_command", "key_group", "pending_command", "sign_command"]


def _password(*, confirm: bool) -> Callable[[], str]:
    """Asks at the terminal (twice when `confirm`); with stdin not a terminal, its first
    line is the password (for scripts: `dotagent sign x < passfile`)."""

    def ask() -> str:
        from dotagent.errors import UsageError

        if not sys.stdin.isatty():
            line = sys.stdin.readline().rstrip("\r\n")
            if not line:
                raise UsageError("no password on standard input (use --no-password for a "
                                 "key without one)")
            return line
        import getpass

        first = getpass.getpass("Password for the signing key: ")
        if not first:
            raise UsageError("an empty password is not a password (use --no-password)")
        if confirm and getpass.getpass("Password again: ") != first:
            raise UsageError("the two passwords differ; nothing was written")
        return first

    return ask


@click.group("key")
def key_group() -> None:
    """The key pair that signs manifests ($DOTAGENT_HOME/keys/)."""


@key_group.command("generate")
@click.option("--force", is_flag=True, help="Replace an existing key pair.")
@click.option("--no-password", is_flag=True,
              help="Leave the secret key unencrypted (unattended signing; see "
                   "docs/security.md).")
def generate_command(force: bool, no_password: bool) -> int:
    """Make a minisign key pair and print its public key line.

    Standard output is only the public key ("RW…"), to put in config.toml's
    [trust].trusted_public_keys; where the files are goes to standard error. The secret key
    is password-protected unless --no-password: the password is asked at the terminal, or
    read as the first line of standard input when that is not a terminal.
    """
    from dotagent.cli.app import invocation_env
    from dotagent.paths import Home
    from dotagent.security.signing import generate_key

    home = Home.from_env(invocation_env())
    password = None if no_password else _password(confirm=True)()
    made = generate_key(home, password=password, force=force)
    sys.stdout.write(made.public_key + "\n")
    sys.stdout.flush()
    state = "password-protected" if made.encrypted else "NOT password-protected"
    sys.stderr.write(f"secret key: {made.secret} ({state}, mode 0600; never share it)\n"
                     f"public key: {made.public} (key id {made.key_id})\n"
                     "to require signatures, add to config.toml:\n"
                     "  [trust]\n  require_signed_manifests = true\n"
                     f"  trusted_public_keys = [\"{made.public_key}\"]\n")
    return 0


@click.command("sign")
@click.argument("name", shell_complete=complete_agent)
def sign_command(name: str) -> int:
    """Sign an agent's manifest: writes agent.toml.minisig beside it.

    Signs the manifest's bytes as they are now; editing the manifest afterwards invalidates
    the signature (sign it again). The password of an encrypted key is asked at the
    terminal, or read as the first line of standard input when that is not a terminal.
    """
    import hashlib

    from dotagent.atomicfile import write_atomic
    from dotagent.boundedread import read_bounded
    from dotagent.cli.app import invocation_env
    from dotagent.discovery import discover
    from dotagent.display import printable, quote_name
    from dotagent.errors import StateError
    from dotagent.paths import Home
    from dotagent.security.signing import load_secret_key, sign_bytes, signature_path

    env = invocation_env()
    home = Home.from_env(env)
    loaded = find_agent(name, discover(env, include_cwd=True))
    sk = load_secret_key(home, _password(confirm=False))
    try:
        data = read_bounded(loaded.path, 1024 * 1024, follow_links=True)
    except OSError as exc:
        raise StateError(f"cannot read {loaded.path}: {exc.strerror or exc}") from None
    sha = hashlib.sha256(data).hexdigest()
    if sha != loaded.sha256:
        raise StateError(f"{loaded.path} changed while it was being signed; nothing was "
                         "written (try again)")
    out = signature_path(loaded.path)
    try:
        write_atomic(out, sign_bytes(sk, data, agent=loaded.name, sha256=sha))
    except OSError as exc:
        raise StateError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        sk.wipe()
    sys.stdout.write(f"signed {quote_name(loaded.name)}: {printable(str(out))} (manifest "
                     f"sha256 {sha[:12]})\n")
    return 0


def _waiting(home: Any, found: Any) -> Any:
    """What waits for approval, as the next executing command would judge it (read-only)."""
    from dotagent.clock import utc_now
    from dotagent.security.approval import check_approvals
    from dotagent.security.manifests import check_manifests

    now = utc_now()

    def fresh() -> list[str]:
        cache = check_manifests(home, found, now, update=False)
        return [*cache.phantoms, *(d.agent for d in cache.drifts)]

    return check_approvals(home, found, now, unapproved=fresh, update=False)


@click.command("pending")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def pending_command(as_json: bool) -> int:
    """List the agents that wait for approval ([trust] approve_new_agents).

    A new agent (never approved) or one whose manifest changed since it was approved does
    not run until `dotagent approve NAME`. Read-only: records nothing.
    """
    import json

    from dotagent.cli.app import invocation_env
    from dotagent.discovery import discover
    from dotagent.display import printable, quote_name
    from dotagent.paths import Home
    from dotagent.security.trust import trust_settings

    env = invocation_env()
    home = Home.from_env(env)
    found = discover(env, include_cwd=True)
    enabled = bool(trust_settings(home).approve_new_agents)
    report = _waiting(home, found)
    waiting = list(report.waiting.values())
    if as_json:
        sys.stdout.write(json.dumps({"approve_new_agents": enabled,
                                     "pending": [w.to_json() for w in waiting]},
                                    ensure_ascii=False) + "\n")
        return 0
    if not enabled:
        sys.stdout.write("note: [trust] approve_new_agents is off: nothing waits, every agent "
                         "runs (this lists what would wait)\n")
    if not waiting:
        sys.stdout.write("nothing waits for approval\n")
        return 0
    for w in waiting:
        sys.stdout.write(f"{quote_name(w.agent)}  {w.reason}  sha256 {w.sha256[:12]}  "
                         f"{printable(w.path)}\n")
    sys.stdout.write("review each manifest, then `dotagent approve NAME`\n")
    return 0


@click.command("approve")
@click.argument("name", shell_complete=complete_agent)
@click.option("--sha256", "expect", metavar="HEX",
              help="Approve only if the manifest still has this sha256 (or a prefix of at "
                   "least 8 hex digits), as `dotagent pending` showed it.")
def approve_command(name: str, expect: str | None) -> int:
    """Approve an agent's manifest as it is now, so that it may run.

    Records its sha256 in state/approved_manifests.json and audits `agent_approved` with
    your user name; a running daemon is told (SIGHUP) so that it runs the agent without
    waiting for a rescan. Any later edit to the manifest needs approving again.
    """
    import os
    import signal

    from dotagent.cli.app import invocation_env
    from dotagent.clock import utc_now
    from dotagent.daemon.pidfile import running_daemon
    from dotagent.discovery import discover
    from dotagent.display import quote_name
    from dotagent.paths import Home
    from dotagent.private import tighten_home
    from dotagent.security.approval import approve
    from dotagent.security.trust import trust_settings

    env = invocation_env()
    home = Home.from_env(env)
    loaded = find_agent(name, discover(env, include_cwd=True))
    tighten_home(home)
    done = approve(home, loaded, utc_now(), expect=expect)
    sha = loaded.sha256[:12]
    if not done:
        sys.stdout.write(f"{quote_name(loaded.name)} is already approved at sha256 {sha}\n")
        return 0
    sys.stdout.write(f"approved {quote_name(loaded.name)} at sha256 {sha}\n")
    if not trust_settings(home).approve_new_agents:
        sys.stdout.write("note: [trust] approve_new_agents is off, so approval is not "
                         "required yet\n")
    pid = running_daemon(home)
    if pid:
        try:
            os.kill(pid, signal.SIGHUP)
            sys.stdout.write(f"told the running daemon (pid {pid})\n")
        except OSError:
            pass  # it re-reads at its next scan anyway
    return 0
