"""`webhook` (beyond upstream): a JSON POST of the message to `url`.

Body keys, in this order: `event`, `agent`, `schedule`, `title`, `body`, `critical`,
`sent_at` (epoch seconds). With `secret`, the request carries `X-Dotagent-Timestamp` (the
same `sent_at`) and `X-Dotagent-Signature: sha256=<hex HMAC-SHA256 of the exact body>`."""

from __future__ import annotations

import hashlib
import hmac
import json

from dotagent.notify.base import Message, NotifyError, SendContext
from dotagent.notify.http import check_status


def payload(message: Message, sent_at: int) -> bytes:
    data = {"event": message.event, "agent": message.agent, "schedule": message.schedule,
            "title": message.title, "body": message.body, "critical": message.critical,
            "sent_at": sent_at}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class WebhookDriver:
    name = "webhook"

    def send(self, message: Message, ctx: SendContext) -> None:
        url = ctx.text("url") or ""
        if not url.startswith(("http://", "https://")):
            raise NotifyError("url is not an http(s) URL")
        sent_at = int(ctx.clock())
        body = payload(message, sent_at)
        headers = {"Content-Type": "application/json", "User-Agent": "dotagent"}
        secret = ctx.text("secret")
        if secret:
            headers["X-Dotagent-Timestamp"] = str(sent_at)
            headers["X-Dotagent-Signature"] = signature(secret, body)
        resp = ctx.transport.request("POST", url, body=body, headers=headers,
                                     timeout=ctx.timeout)
        check_status("webhook", resp)
