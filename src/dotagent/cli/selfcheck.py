"""`dotagent selfcheck [--record] [--json]`."""

from __future__ import annotations

import json
import sys

import click

__all__ = ["command"]


@click.command("selfcheck")
@click.option("--record", "do_record", is_flag=True,
              help="Record the current installation as the trusted one.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable result.")
def command(do_record: bool, as_json: bool) -> int:
    """Verify that the installed dotagent is the one recorded in daemon.sha256.

    The first use records it. A mismatch is recorded in the audit log as critical and exits 1;
    after a deliberate upgrade, accept the new installation with --record.
    """
    from dotagent.audit import AuditLog
    from dotagent.cli.app import invocation_env
    from dotagent.clock import utc_now
    from dotagent.paths import Home
    from dotagent.private import tighten_home
    from dotagent.security import selfhash

    env = invocation_env()
    home = Home.from_env(env)
    tighten_home(home)  # S15.11
    now = utc_now()
    result = selfhash.check(home, AuditLog(home), now, record=do_record)
    if as_json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
    elif result.status == "recorded":
        if result.note:
            sys.stdout.write(f"warning: {result.note}\n")
        sys.stdout.write(f"recorded sha256 {result.actual} over {result.files} files in "
                         f"{home.root / selfhash.HASH_FILE}\n")
    elif result.ok:
        sys.stdout.write(f"ok: {result.files} files match {result.actual}\n")
    else:
        sys.stdout.write(f"MISMATCH: the installed dotagent differs from the recorded one "
                         f"({result.summary()})\n  recorded {result.expected}\n  now      "
                         f"{result.actual}\nrecorded in the audit log as selfcheck_failed; if "
                         "you upgraded on purpose, run `dotagent selfcheck --record`\n")
    return 0 if result.ok else 1
