"""Alerts that do not nag: the re-notification ladder, quiet hours, snoozes, duration
anomalies, the daily summary and the daemon-wide notices (issue 9, items 5-8).

The decisions here are pure functions of what is on disk and an injected clock; delivery goes
through a `Sender` (`alerts.seam`), which is the notify package's outbox in production.
"""
