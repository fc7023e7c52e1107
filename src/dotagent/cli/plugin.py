"""`dotagent plugin list [--json]` and `dotagent plugin invoke NAME --kind K …`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

__all__ = ["group"]

INFO_TIMEOUT = 10.0
DEFAULT_EVENT = {"preflight": "preflight", "sink": "success", "notify": "attempt_failed"}


@click.group("plugin")
def group() -> None:
    """Inspect and try `dotagent-plugin-*` binaries (SPEC S4)."""


@group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable list.")
def list_command(as_json: bool) -> int:
    """Every plugin the daemon's agents reference, and every dotagent-plugin-* on the search
    path: name, version, kinds, platforms (from its `info`), resolved path, sha256 and its
    status in the plugin registry (known, new, drifted; missing when not found)."""
    from concurrent.futures import ThreadPoolExecutor

    from dotagent.cli.app import invocation_env
    from dotagent.discovery import discover
    from dotagent.display import printable
    from dotagent.filehash import sha256_file
    from dotagent.paths import Home
    from dotagent.plugins.client import invoke
    from dotagent.plugins.resolve import iter_installed, resolve_plugin
    from dotagent.security.plugins import read_registry, referenced_plugins

    env = invocation_env()
    home = Home.from_env(env)
    found = discover(env, include_cwd=False)
    users: dict[str, list[str]] = {}
    for name, loaded in found.agents.items():
        for plugin in referenced_plugins(loaded.manifest):
            users.setdefault(plugin, []).append(name)
    names = list(dict.fromkeys([*sorted(users), *(n for n, _ in iter_installed(env))]))
    entries, problem = read_registry(home)
    if problem is not None:
        sys.stderr.write(f"[dotagent] warning: the plugin registry is unreadable: {problem}\n")

    def describe(name: str) -> dict[str, Any]:
        path = resolve_plugin(name, env)
        row: dict[str, Any] = {"name": name, "version": None, "kinds": [], "platforms": [],
                               "path": str(path) if path else None, "sha256": None,
                               "status": "missing", "referenced_by": users.get(name, []),
                               "error": None}
        if path is None:
            row["error"] = "not found on the plugin search path"
            return row
        try:
            row["sha256"] = sha256_file(path)
        except OSError as exc:
            row["error"] = f"cannot read it: {exc.strerror or exc}"
        known = entries.get(name)
        known_sha = known.get("sha256") if isinstance(known, dict) else None
        row["status"] = ("new" if known_sha is None else
                         "known" if known_sha == row["sha256"] else "drifted")
        info = invoke(name, "info", None, home=home, env=env, timeout=INFO_TIMEOUT)
        if not info.ok:
            row["error"] = info.error
            return row
        data = info.data
        row["version"] = data.get("version") if isinstance(data.get("version"), str) else None
        for key in ("kinds", "platforms"):
            value = data.get(key)
            row[key] = [v for v in value if isinstance(v, str)] if isinstance(value, list) \
                else []
        return row

    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(describe, names))
    if as_json:
        sys.stdout.write(json.dumps({"plugins": rows}, ensure_ascii=False) + "\n")
        return 0
    if not rows:
        sys.stdout.write("no plugins referenced and none on the plugin search path\n")
        return 0
    for row in rows:
        kinds = ",".join(row["kinds"]) or "-"
        version = row["version"] or "-"
        sys.stdout.write(f"{printable(row['name'])}  {version}  {kinds}  {row['status']}  "
                         f"{printable(row['path'] or '-')}\n")
        if row["sha256"]:
            sys.stdout.write(f"    sha256 {row['sha256']}\n")
        if row["referenced_by"]:
            sys.stdout.write(f"    used by {', '.join(map(printable, row['referenced_by']))}\n")
        if row["error"]:
            sys.stdout.write(f"    error: {printable(row['error'])}\n")
    return 0


@group.command("invoke")
@click.argument("name")
@click.option("--kind", type=click.Choice(["preflight", "sink", "notify"]), required=True,
              help="The call site to imitate.")
@click.option("--config", "config_json", default=None, metavar="JSON",
              help="The PluginRef's config, as JSON (default: null).")
@click.option("--message", default=None, help="The message (default: null).")
@click.option("--agent", default="manual", show_default=True)
@click.option("--schedule", default="manual", show_default=True)
@click.option("--event", default=None,
              help="Default: preflight, success or attempt_failed after --kind.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=None,
              help="Seconds (default: the call site's, S4.3).")
def invoke_command(name: str, kind: str, config_json: str | None, message: str | None,
                   agent: str, schedule: str, event: str | None,
                   timeout: float | None) -> int:
    """Call `dotagent-plugin-NAME invoke` with the payload a hook would send and print its
    JSON answer. Exit 0 when it answered ok=true, else 1."""
    from dotagent.cli.app import invocation_env
    from dotagent.paths import Home, unsafe_reason
    from dotagent.plugins.client import invoke

    bad = unsafe_reason(name)  # the manifest's rule for a plugin name
    if bad is not None:
        raise click.BadParameter(f"plugin name {bad}", param_hint="NAME")
    from dotagent.plugins.hooks import DEFAULT_DEADLINES
    from dotagent.plugins.protocol import invoke_payload

    config: Any = None
    if config_json is not None:
        try:
            config = json.loads(config_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--config") from None
    env = invocation_env()
    home = Home.from_env(env)
    # The store is loaded for its values' sake: registered for redaction, so a plugin that
    # prints a secret does not show it here (nothing is audited: this is a manual call).
    from dotagent.cli._config import load_store
    from dotagent.redaction import redact

    load_store(home, env, None)
    payload = invoke_payload(kind, agent, schedule, event or DEFAULT_EVENT[kind], message,
                             config)
    result = invoke(name, "invoke", payload, home=home, env=env,
                    timeout=timeout if timeout is not None else DEFAULT_DEADLINES[kind])
    if result.data:
        sys.stdout.write(redact(json.dumps(result.data, ensure_ascii=False)) + "\n")
    if not result.ok:
        sys.stderr.write(f"[dotagent] error: {result.error or 'the plugin answered ok=false'}"
                         "\n")
        return 1
    return 0
