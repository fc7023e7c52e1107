"""The `[trust]` gate as the executing commands use it (security/trust.py: signatures,
security/approval.py: approval of new and changed agents)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dotagent.cli import _streams
from dotagent.display import quote_name

__all__ = ["gate", "unapproved"]


def unapproved(cache: Any) -> list[str]:
    """The agents a manifest check found new or changed (its CacheReport)."""
    return [*cache.phantoms, *(d.agent for d in cache.drifts)]


def gate(home: Any, found: Any, now: datetime, *, audit: Any, cache: Any,
         agent: str | None = None, say: Any = None) -> Any:
    """Apply config.toml's `[trust]`: leave out every agent whose manifest's signature does
    not verify (when required) or that waits for approval (when `approve_new_agents`); tell
    the terminal about each; return `found` without them. With `agent` (run, run-now), its
    refusal is TrustRefused (exit 77): nothing is run."""
    from dotagent.errors import TrustRefused
    from dotagent.security.trust import check_signatures, trust_settings, without

    settings = trust_settings(home)
    refused: dict[str, str] = {}
    if settings.require_signed_manifests:
        report = check_signatures(home, found, settings, now, audit=audit)
        refused.update(report.refused)
        why_sig = "(recorded as critical manifest_signature_invalid; `dotagent sign` signs it)"
        if agent in report.refused:
            raise TrustRefused(f"agent {quote_name(agent)} is not run: {refused[agent]}; "
                               f"[trust] require_signed_manifests is on {why_sig}")
    waiting: dict[str, str] = {}
    if settings.approve_new_agents:
        from dotagent.security.approval import check_approvals

        approvals = check_approvals(home, found, now, unapproved=lambda: unapproved(cache),
                                    audit=audit)
        waiting = {n: w.reason for n, w in approvals.waiting.items() if n not in refused}
        if agent in waiting:
            raise TrustRefused(f"agent {quote_name(agent)} waits for approval: "
                               f"{waiting[agent]} ([trust] approve_new_agents is on; review "
                               f"it, then `dotagent approve {agent}`)")
    tell = say or _streams.say
    for name, why in refused.items():
        tell(f"[dotagent] warning: agent {quote_name(name)} is not run: {why} "
             "(recorded as critical manifest_signature_invalid)\n")
    for name, why in waiting.items():
        tell(f"[dotagent] warning: agent {quote_name(name)} is not run: it waits for "
             f"approval ({why}; `dotagent pending`, `dotagent approve NAME`)\n")
    return without(found, {**refused, **waiting})
