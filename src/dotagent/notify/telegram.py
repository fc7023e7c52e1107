"""`telegram`: the Bot API's sendMessage (S5). Text capped at 4,096 characters after
MarkdownV2 escaping; a backslash the cut leaves dangling is dropped. Errors never carry the
URL (it holds the bot token)."""

from __future__ import annotations

import json

from dotagent.notify.base import BODY_NOTICE, Message, NotifyError, SendContext, cut_chars
from dotagent.notify.http import check_status, join_url

BODY_LIMIT = 4096
MARKDOWN_V2_SPECIAL = frozenset("_*[]()~`>#+-=|{}.!\\")


def escape_markdown_v2(text: str) -> str:
    return "".join("\\" + c if c in MARKDOWN_V2_SPECIAL else c for c in text)


def fit(text: str, markdown_v2: bool) -> str:
    if not markdown_v2:
        return cut_chars(text, BODY_LIMIT)
    escaped = escape_markdown_v2(text)
    if len(escaped) <= BODY_LIMIT:
        return escaped
    # The mark itself is escaped too: MarkdownV2 rejects a bare '[' (docs/decisions.md).
    notice = escape_markdown_v2(BODY_NOTICE)
    kept = escaped[:BODY_LIMIT - len(notice)]
    trailing = len(kept) - len(kept.rstrip("\\"))
    if trailing % 2:
        kept = kept[:-1]
    return kept + notice


class TelegramDriver:
    name = "telegram"

    def send(self, message: Message, ctx: SendContext) -> None:
        token = ctx.text("bot_token") or ""
        if not token or "/" in token or any(c.isspace() for c in token):
            raise NotifyError("bot_token is empty or not a token")
        url = join_url(ctx.text("base_url") or "https://api.telegram.org",
                       f"/bot{token}/sendMessage")
        parse_mode = ctx.text("parse_mode")
        chat_id = ctx.fields.get("chat_id")
        payload: dict[str, object] = {"chat_id": chat_id,
                                      "text": fit(message.body, parse_mode == "MarkdownV2")}
        if parse_mode:
            payload["parse_mode"] = parse_mode
        if ctx.fields.get("disable_notification") is True:
            payload["disable_notification"] = True
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        resp = ctx.transport.request("POST", url, body=body,
                                     headers={"Content-Type": "application/json"},
                                     timeout=ctx.timeout)
        check_status("telegram", resp)
