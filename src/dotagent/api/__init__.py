"""What the read commands answer (`status`, `inspect`, `next`, `history`), as report objects
with `to_json()`: `cli/` renders them; the socket API and MCP return the same objects.

Modules: `agents` (the daemon's agents as plain views, through a cache), `judge` (one
schedule's state and health), `service` (the reports), `inspect`, `upcoming` (`next`),
`history` (runs, one run's output, statistics).
Nothing is imported here, so importing one costs only what it needs.
"""
