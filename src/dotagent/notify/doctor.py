"""What `doctor` says about notifier entries: `${VAR}` it cannot resolve now, imessage off
macOS, a desktop entry with no notification tool or no session bus to reach."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from dotagent.notify.base import NotifyError, expand
from dotagent.notify.imessage import UNSUPPORTED

__all__ = ["Finding", "check_entry"]

Finding = tuple[Literal["error", "warning"], str, str]  # level, field, message


def check_entry(item: BaseModel | Mapping[str, Any], env: Mapping[str, str], *,
                lookup: Callable[[str], str | None] | None = None,
                platform: str = sys.platform,
                runtime_dir: Path | None = None) -> list[Finding]:
    fields = item.model_dump(by_alias=True) if isinstance(item, BaseModel) else dict(item)
    look = lookup or (lambda name: env.get(name))
    found: list[Finding] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, str):
            try:
                expand(value, look, where)
            except NotifyError as exc:
                unset = "is unset" in exc.message
                found.append(("warning" if unset else "error", where,
                              exc.message.removeprefix(f"{where}: ") + (
                                  " here: this notifier will fail unless the daemon's "
                                  "secrets store or environment has it" if unset else "")))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}")

    for key, value in fields.items():
        if key not in ("driver", "events"):
            walk(value, key)
    driver = fields.get("driver")
    if driver == "imessage" and platform != "darwin":
        found.append(("error", "driver", UNSUPPORTED.format(platform=platform)))
    if driver == "desktop":
        from dotagent.notify.desktop import session_env, tool
        if tool(env, platform) is None:
            found.append(("warning", "driver", "no notification tool found on PATH "
                          "(notify-send, gdbus or dbus-send)" if platform != "darwin"
                          else "osascript not found on PATH"))
        elif platform != "darwin" and not session_env(env, runtime=runtime_dir).get(
                "DBUS_SESSION_BUS_ADDRESS"):
            found.append(("warning", "driver", "no D-Bus session bus found (no "
                          "DBUS_SESSION_BUS_ADDRESS, no $XDG_RUNTIME_DIR/bus): desktop "
                          "notifications cannot be shown from here"))
    return found
