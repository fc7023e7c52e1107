"""Persistent state under $DOTAGENT_HOME/state, where every write is atomic, and the log files
under $DOTAGENT_HOME/logs.

Modules: `heartbeat` (per-schedule heartbeats), `windows` (per-window retry state), `history`
(run history in SQLite), `supervisor` (the daemon's process snapshot and the orphan sweep),
`agentlog` (per-agent logs rotated by size) and `logretention` (the daily sweep of `logs/`).
None is imported here, so importing one costs only what it needs.
"""
