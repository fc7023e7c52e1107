"""`imessage` (macOS only): `osascript -e` sending through the Messages iMessage account to
the participant `to` (S5). Its rate limit is the outbox's, with upstream's state file."""

from __future__ import annotations

import os
import shutil

from dotagent.notify.base import Message, NotifyError, SendContext
from dotagent.notify.desktop import run_tool

UNSUPPORTED = "imessage needs macOS (Messages.app); it cannot send from {platform}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def script(to: str, body: str) -> str:
    return ('tell application "Messages"\n'
            '  set targetService to 1st account whose service type = iMessage\n'
            f'  set targetBuddy to participant {_quote(to)} of targetService\n'
            f'  send {_quote(body)} to targetBuddy\n'
            'end tell')


class IMessageDriver:
    name = "imessage"

    def send(self, message: Message, ctx: SendContext) -> None:
        if ctx.platform != "darwin":
            raise NotifyError(UNSUPPORTED.format(platform=ctx.platform))
        osascript = shutil.which("osascript", path=ctx.env.get("PATH", os.defpath))
        if osascript is None:
            raise NotifyError("osascript not found")
        run_tool("osascript", [osascript, "-e", script(ctx.text("to") or "", message.body)],
                 ctx.env, ctx.timeout)
