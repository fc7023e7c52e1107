"""`slack`: an incoming-webhook POST (S5), body capped at 40,000 characters."""

from __future__ import annotations

import json

from dotagent.notify.base import Message, NotifyError, SendContext, cut_chars
from dotagent.notify.http import check_status

BODY_LIMIT = 40_000


class SlackDriver:
    name = "slack"

    def send(self, message: Message, ctx: SendContext) -> None:
        url = ctx.text("webhook_url") or ""
        if not url.startswith(("http://", "https://")):
            raise NotifyError("webhook_url is not an http(s) URL")
        payload: dict[str, object] = {"text": cut_chars(message.body, BODY_LIMIT)}
        for key in ("channel", "username", "icon_emoji"):
            value = ctx.text(key)
            if value is not None:
                payload[key] = value
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        resp = ctx.transport.request("POST", url, body=body,
                                     headers={"Content-Type": "application/json"},
                                     timeout=ctx.timeout)
        check_status("slack webhook", resp)
