"""`dotagent key generate` and `dotagent sign NAME`: minisign-compatible manifest signing
(docs/security.md, "Signed manifests")."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from dotagent.cli._agents import complete_agent, find_agent

__all__ = ["key_group", "sign_command"]


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
