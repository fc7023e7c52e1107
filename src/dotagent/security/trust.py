"""The `[trust]` gate: signed manifests (issue 11 item 4; docs/security.md).

With `require_signed_manifests = true`, every command that executes agents (the daemon,
`tick`, `run-now`, `run`) checks each discovered manifest's `agent.toml.minisig` against
`trusted_public_keys` before running anything, and leaves out every agent whose manifest is
unsigned, badly signed, or signed by a key that is not trusted. Each refusal is audited as
`manifest_signature_invalid` (critical; daemon-wide notifiers), once per distinct
(manifest content, reason): `state/signature_refusals.json` remembers what was reported, so a
daemon rescanning every few minutes or a `tick` from cron every minute does not repeat it;
a manifest that verifies again is forgotten there, and a later failure is reported anew.

What is verified is the bytes that were loaded: the manifest is read again, its sha256 must
be the loaded one (else it changed while being checked, and is refused), and the signature
must cover exactly those bytes.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from dotagent.atomicfile import write_json_atomic
from dotagent.audit import AuditLog, events
from dotagent.boundedread import read_bounded
from dotagent.discovery import Discovery
from dotagent.errors import ConfigError
from dotagent.filelock import locked
from dotagent.paths import Home

__all__ = ["REFUSALS_FILE", "TrustReport", "check_signatures", "trust_settings", "without"]

REFUSALS_FILE = "signature_refusals.json"
_MAX_MANIFEST = 1024 * 1024


@dataclass
class TrustReport:
    required: bool = False
    refused: dict[str, str] = field(default_factory=dict)  # agent -> why, as a phrase
    verified: list[str] = field(default_factory=list)
    newly: list[str] = field(default_factory=list)  # refusals audited by this check


def trust_settings(home: Home) -> Any:
    """config.toml's `[trust]` section for the CLI commands. A broken config.toml fails
    closed when it mentions a `trust` table (whether signatures are required cannot be told)
    and otherwise gives the defaults, as every other command reading it does."""
    from dotagent.config import TrustSection, load_config

    result = load_config(home)
    if result.config is not None:
        return result.config.trust
    try:
        raw = tomllib.loads(result.path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        raw = None
    if raw is not None and "trust" not in raw:
        return TrustSection()
    lines = [str(p) for p in result.errors] or [f"{result.path}: cannot be used"]
    raise ConfigError("cannot tell whether [trust] requires signed manifests; nothing was "
                      "run:\n" + "\n".join(f"  {ln}" for ln in lines))


def without(found: Discovery, names: dict[str, str] | list[str]) -> Discovery:
    """`found` minus the named agents (a copy; `found` is left alone)."""
    if not names:
        return found
    return replace(found, agents={n: a for n, a in found.agents.items() if n not in names})


def check_signatures(home: Home, found: Discovery, trust: Any, now: datetime, *,
                     audit: AuditLog | None = None, update: bool = True) -> TrustReport:
    """Verify every discovered manifest when `trust.require_signed_manifests`; audit new
    refusals (if `update`; doctor passes False and nothing is written)."""
    report = TrustReport(required=bool(trust.require_signed_manifests))
    if not report.required:
        return report
    from dotagent.security.manifests import recorded_path
    from dotagent.security.signing import signature_path, verify_bytes

    keys = list(trust.trusted_public_keys)
    for name, loaded in found.agents.items():
        try:
            data = read_bounded(loaded.path, _MAX_MANIFEST, follow_links=True)
        except OSError as exc:
            report.refused[name] = f"cannot read the manifest again: {exc.strerror or exc}"
            continue
        if hashlib.sha256(data).hexdigest() != loaded.sha256:
            report.refused[name] = "the manifest changed while it was being checked"
            continue
        problem = verify_bytes(data, signature_path(loaded.path), keys) if keys else \
            "[trust].trusted_public_keys is empty: no signature can be trusted"
        if problem is None:
            report.verified.append(name)
        else:
            report.refused[name] = problem
    if not update:
        return report
    log = audit or AuditLog(home)
    path = home.state_dir / REFUSALS_FILE
    with locked(home.state_dir / "signature_refusals.lock"):
        seen = _load(path)
        remembered = dict(seen)
        for name in report.verified:
            remembered.pop(name, None)
        for name, why in report.refused.items():
            loaded = found.agents[name]
            key = f"{loaded.sha256}:{why}"
            if remembered.get(name) == key:
                continue
            log.append(events.ManifestSignatureInvalid(
                agent=name, path=recorded_path(loaded.path), sha256=loaded.sha256,
                reason=why), now=now)
            remembered[name] = key
            report.newly.append(name)
        if remembered != seen:
            write_json_atomic(path, dict(sorted(remembered.items())))
    return report


def _load(path: Any) -> dict[str, str]:
    import json

    try:
        data = json.loads(read_bounded(path, 16 * 1024 * 1024, follow_links=False))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}  # gone or garbage: refusals are reported again (noise, never silence)
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}
