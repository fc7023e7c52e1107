"""The `[trust]` gate as the executing commands use it (security/trust.py does the work)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dotagent.cli import _streams
from dotagent.display import quote_name

__all__ = ["gate"]


def gate(home: Any, found: Any, now: datetime, *, audit: Any, agent: str | None = None,
         say: Any = None) -> Any:
    """Check every discovered manifest's signature when config.toml requires it; tell the
    terminal about each refused agent; return `found` without them. With `agent` (run,
    run-now), a refusal of that agent is TrustRefused (exit 77): nothing is run."""
    from dotagent.errors import TrustRefused
    from dotagent.security.trust import check_signatures, trust_settings, without

    settings = trust_settings(home)
    if not settings.require_signed_manifests:
        return found
    report = check_signatures(home, found, settings, now, audit=audit)
    tell = say or _streams.say
    for name, why in report.refused.items():
        if name != agent:
            tell(f"[dotagent] warning: agent {quote_name(name)} is not run: {why} "
                 "(recorded as critical manifest_signature_invalid)\n")
    if agent is not None and agent in report.refused:
        raise TrustRefused(f"agent {quote_name(agent)} is not run: {report.refused[agent]}; "
                           "[trust] require_signed_manifests is on (recorded as critical "
                           "manifest_signature_invalid; `dotagent sign` signs it)")
    return without(found, report.refused)
