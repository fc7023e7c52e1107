"""Notifier drivers and the one delivery path (`outbox.Outbox`).

`base` holds the contract (Message, SendContext, Driver, NotifyError) and the helpers every
driver shares (`${VAR}` expansion, length caps); one module per driver; `registry` turns
notifier entries (manifest models or config.toml tables) into drivers; `outbox` delivers.
"""
