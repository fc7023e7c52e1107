"""The hash-chained audit log: event types, the writer, verification.

    from dotagent.audit import AuditLog, events
    AuditLog(home).append(events.AgentRun(agent=..., schedule=..., ...))
"""

from __future__ import annotations

from dotagent.audit import events
from dotagent.audit.chain import AuditLog, VerifyReport, current_head
from dotagent.audit.events import Event, Severity
from dotagent.audit.record import GENESIS, hash_line
from dotagent.audit.scan import Head, Problem

__all__ = [
    "GENESIS",
    "AuditLog",
    "Event",
    "Head",
    "Problem",
    "Severity",
    "VerifyReport",
    "current_head",
    "events",
    "hash_line",
]
