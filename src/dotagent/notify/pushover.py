"""`pushover`: a form POST to `<base_url>/1/messages.json` (S5); body capped at 1,024
characters, title at 250."""

from __future__ import annotations

import urllib.parse

from dotagent.notify.base import TITLE_NOTICE, Message, SendContext, cut_chars
from dotagent.notify.http import check_status, join_url

BODY_LIMIT = 1024
TITLE_LIMIT = 250


class PushoverDriver:
    name = "pushover"

    def send(self, message: Message, ctx: SendContext) -> None:
        url = join_url(ctx.text("base_url") or "https://api.pushover.net", "/1/messages.json")
        form: list[tuple[str, str]] = [("token", ctx.text("token") or ""),
                                       ("user", ctx.text("user") or ""),
                                       ("message", cut_chars(message.body, BODY_LIMIT))]
        priority = ctx.text("priority")
        if priority is not None:
            form.append(("priority", priority))
        title = message.title or ctx.text("title") or (message.agent or "dotagent")
        form.append(("title", cut_chars(title, TITLE_LIMIT, TITLE_NOTICE)))
        body = urllib.parse.urlencode(form).encode("ascii")
        resp = ctx.transport.request(
            "POST", url, body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=ctx.timeout)
        check_status("pushover", resp)
