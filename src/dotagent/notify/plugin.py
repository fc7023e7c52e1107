"""`plugin`: the plugin's `invoke` verb, kind notify, 15 s by default (S4, S5)."""

from __future__ import annotations

from typing import Any

from dotagent.notify.base import Message, NotifyError, SendContext

DEFAULT_TIMEOUT = 15.0


class PluginDriver:
    name = "plugin"

    def send(self, message: Message, ctx: SendContext) -> None:
        try:
            from dotagent.plugins import client  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise NotifyError("the plugin driver needs dotagent.plugins, which this build "
                              "does not have yet") from None
        name = ctx.text("name") or ""
        payload: dict[str, Any] = {"kind": "notify", "agent": message.agent,
                                   "schedule": message.schedule, "event": message.event,
                                   "message": message.body, "config": ctx.fields.get("config")}
        result = client.invoke(name, "invoke", payload, home=ctx.home, env=ctx.env,
                               timeout=ctx.timeout)
        if not result.ok:
            raise NotifyError(result.error or f"plugin {name} answered ok=false")
