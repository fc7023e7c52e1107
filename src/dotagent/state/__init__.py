"""Persistent state under $DOTAGENT_HOME/state; every write is atomic.

Modules: `heartbeat` (per-schedule heartbeats), `windows` (per-window retry state), `history`
(run history in SQLite), `supervisor` (the daemon's process snapshot and the orphan sweep).
None is imported here, so importing one costs only what it needs.
"""
