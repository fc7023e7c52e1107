"""`ping` (beyond upstream): a healthchecks.io-style check URL.

`start` (the agent's process is running) POSTs `url/start`; `success` and `recovered` POST
`url`; `attempt_failed`, `timed_out`, `given_up`, `preflight` and `stale` POST `url/fail`;
every other event is not a check result and sends nothing. The body (capped at 10,000
bytes) is the message, which such services keep as the ping's log. A check that stops
receiving pings is what tells you the box or the daemon is down."""

from __future__ import annotations

import urllib.parse

from dotagent.notify.base import Message, NotifyError, SendContext, cut_bytes
from dotagent.notify.http import check_status

BODY_LIMIT = 10_000
SUCCESS = frozenset({"success", "recovered"})
FAILURE = frozenset({"attempt_failed", "timed_out", "given_up", "preflight", "stale"})


def path_for(event: str) -> str | None:
    if event in SUCCESS:
        return ""
    if event in FAILURE:
        return "/fail"
    if event == "start":
        return "/start"
    return None


class PingDriver:
    name = "ping"

    def send(self, message: Message, ctx: SendContext) -> None:
        suffix = path_for(message.event)
        if suffix is None:
            return
        url = ctx.text("url") or ""
        if not url.startswith(("http://", "https://")):
            raise NotifyError("url is not an http(s) URL")
        body = cut_bytes(message.body, BODY_LIMIT).encode("utf-8")
        # The suffix goes on the path: after a query (`?create=1`) the service would read
        # `/fail` as part of the query and count a failure as a success.
        parts = urllib.parse.urlsplit(url)
        target = urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix,
                                                        fragment=""))
        resp = ctx.transport.request("POST", target, body=body,
                                     headers={"Content-Type": "text/plain; charset=utf-8",
                                              "User-Agent": "dotagent"},
                                     timeout=ctx.timeout)
        check_status("ping", resp)
