"""The hash-chained audit log: event types, the writer (with rotation), verification.

    from dotagent.audit import AuditLog, events
    AuditLog(home).append(events.AgentRun(agent=..., schedule=..., ...))
    AuditLog(home).verify(full=True).status   # upstream 0.6's verdict across segments
"""

from __future__ import annotations

from dotagent.audit import events
from dotagent.audit.chain import AuditLog, VerifyReport, current_head
from dotagent.audit.events import Event, Severity
from dotagent.audit.record import GENESIS, hash_line
from dotagent.audit.rotation import DEFAULT_MAX_BYTES, Seam
from dotagent.audit.scan import Head, Problem
from dotagent.audit.walk import ChainStatus

__all__ = [
    "DEFAULT_MAX_BYTES",
    "GENESIS",
    "AuditLog",
    "ChainStatus",
    "Event",
    "Head",
    "Problem",
    "Seam",
    "Severity",
    "VerifyReport",
    "current_head",
    "events",
    "hash_line",
]
