"""The notifier contract and the helpers every driver shares.

A driver receives a `Message` and the entry's fields with every `${VAR}` already expanded
(`SendContext.fields`); it raises `NotifyError` with a reason that names no secret and no URL
(the outbox audits that reason). Length caps follow upstream 0.3.0 (UPSTREAM-0.6 §8).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dotagent.errors import DotagentError
from dotagent.paths import Home

__all__ = [
    "BODY_NOTICE",
    "TITLE_NOTICE",
    "Driver",
    "HttpResponse",
    "Message",
    "NotifyError",
    "SendContext",
    "Transport",
    "cut_bytes",
    "cut_chars",
    "expand",
    "expand_fields",
]

BODY_NOTICE = "\n[truncated]"
TITLE_NOTICE = "…"


class NotifyError(DotagentError):
    """One notifier could not deliver one message. The message is audited: no secrets, no
    URLs (tokens live in URLs)."""

    exit_code = 1
    sysexit = 69  # EX_UNAVAILABLE


@dataclass(frozen=True)
class Message:
    event: str  # success | attempt_failed | timed_out | preflight | recovered | given_up
    #             | stale | daily_summary | duration_anomaly | <a critical audit event name>
    agent: str  # "" for daemon-wide notices
    schedule: str  # "" for daemon-wide notices
    body: str
    title: str | None = None
    critical: bool = False

    @property
    def label(self) -> str:
        """`agent/schedule`, or `dotagent` for a daemon-wide notice."""
        if not self.agent:
            return "dotagent"
        return f"{self.agent}/{self.schedule}" if self.schedule else self.agent


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes = b""


class Transport(Protocol):
    """The HTTP seam: one request, a timeout, the response (any status). Raises NotifyError
    when no response arrived (refused, timed out, TLS)."""

    def request(self, method: str, url: str, *, body: bytes | None,
                headers: Mapping[str, str], timeout: float) -> HttpResponse: ...


@dataclass(frozen=True)
class SendContext:
    home: Home
    env: Mapping[str, str]
    lookup: Callable[[str], str | None]
    transport: Transport
    fields: Mapping[str, Any] = field(default_factory=dict)  # the entry, ${VAR} expanded
    timeout: float = 10.0
    clock: Callable[[], float] = time.time
    platform: str = sys.platform
    # Where a session bus / Wayland socket is looked for when the environment has none
    # (None: $XDG_RUNTIME_DIR, else /run/user/<uid>). Tests point it at a temp dir.
    runtime_dir: Path | None = None
    x11_dir: Path = Path("/tmp/.X11-unix")

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.fields.get(key)
        if value is None:
            return default
        return value if isinstance(value, str) else str(value)


class Driver(Protocol):
    name: str

    def send(self, message: Message, ctx: SendContext) -> None: ...


# --------------------------------------------------------------------------------------
# ${VAR}
# --------------------------------------------------------------------------------------
def expand(value: str, lookup: Callable[[str], str | None], where: str) -> tuple[str, list[str]]:
    """Replace each `${NAME}`; returns the text and the values used (to be redacted).
    `$` not followed by `{` is literal. Errors name the field, never a value."""
    if "${" not in value:
        return value, []
    out: list[str] = []
    used: list[str] = []
    i = 0
    while True:
        start = value.find("${", i)
        if start < 0:
            out.append(value[i:])
            break
        out.append(value[i:start])
        end = value.find("}", start + 2)
        if end < 0:
            raise NotifyError(f"{where}: unterminated ${{ (no closing }})")
        name = value[start + 2:end]
        if not name:
            raise NotifyError(f"{where}: empty ${{}}")
        resolved = lookup(name)
        if resolved is None:
            raise NotifyError(f"{where}: env var ${{{name}}} is unset")
        out.append(resolved)
        used.append(resolved)
        i = end + 1
    return "".join(out), used


def expand_fields(fields: Mapping[str, Any], lookup: Callable[[str], str | None]
                  ) -> tuple[dict[str, Any], list[str]]:
    """`expand` every string in the entry (nested lists and tables too), except `driver`
    and `events`, which select rather than say."""
    used: list[str] = []

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, str):
            text, got = expand(value, lookup, where)
            used.extend(got)
            return text
        if isinstance(value, list):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: walk(v, f"{where}.{k}") for k, v in value.items()}
        return value

    out = {k: (v if k in ("driver", "events") else walk(v, k)) for k, v in fields.items()}
    return out, used


# --------------------------------------------------------------------------------------
# Length caps (UPSTREAM-0.6 §8)
# --------------------------------------------------------------------------------------
def cut_chars(text: str, limit: int, notice: str = BODY_NOTICE) -> str:
    """At most `limit` characters: keep `limit - len(notice)` and append the notice; if
    the notice itself does not fit, a plain cut."""
    if len(text) <= limit:
        return text
    if len(notice) > limit:
        return text[:limit]
    return text[:limit - len(notice)] + notice


def cut_bytes(text: str, limit: int, notice: str = BODY_NOTICE) -> str:
    """At most `limit` UTF-8 bytes: keep `limit - len(notice)` bytes walked back to a
    character boundary, and append the notice."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    mark = notice.encode("utf-8")
    if len(mark) > limit:
        mark = b""
    keep = raw[:limit - len(mark)]
    return keep.decode("utf-8", errors="ignore") + mark.decode("utf-8")
