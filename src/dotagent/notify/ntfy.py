"""`ntfy`: POST the raw body to `<base_url>/<topic>` (S5). Body capped at 4,096 bytes, title
at 250 bytes on the raw text; a non-ASCII title or tag list is sent RFC 2047 Q-encoded."""

from __future__ import annotations

from dotagent.notify.base import TITLE_NOTICE, Message, NotifyError, SendContext, cut_bytes
from dotagent.notify.http import check_status, join_url

BODY_LIMIT = 4096
TITLE_LIMIT = 250
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


def header_text(text: str) -> str:
    """Control characters become spaces; non-ASCII text becomes one `=?UTF-8?Q?…?=` word."""
    clean = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text)
    if clean.isascii():
        return clean
    out = []
    for byte in clean.encode("utf-8"):
        if byte == 0x20:
            out.append("_")
        elif byte in _Q_SAFE:
            out.append(chr(byte))
        else:
            out.append(f"={byte:02X}")
    return "=?UTF-8?Q?" + "".join(out) + "?="


class NtfyDriver:
    name = "ntfy"

    def send(self, message: Message, ctx: SendContext) -> None:
        topic = ctx.text("topic") or ""
        if not topic.strip() or "/" in topic:
            raise NotifyError("topic must be a non-empty name without '/'")
        url = join_url(ctx.text("base_url") or "https://ntfy.sh", "/" + topic)
        title = message.title or ctx.text("title") or (message.agent or "dotagent")
        clean_title = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in title)
        headers = {"X-Title": header_text(cut_bytes(clean_title, TITLE_LIMIT, TITLE_NOTICE))}
        token = ctx.text("token")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        priority = ctx.text("priority")
        if priority:
            headers["X-Priority"] = priority
        tags = ctx.fields.get("tags") or []
        if tags:
            headers["X-Tags"] = header_text(",".join(str(t) for t in tags))
        body = cut_bytes(message.body, BODY_LIMIT).encode("utf-8")
        resp = ctx.transport.request("POST", url, body=body, headers=headers,
                                     timeout=ctx.timeout)
        check_status("ntfy", resp)
