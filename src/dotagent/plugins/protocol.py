"""The JSON shapes of the plugin protocol (SPEC S4.2), byte-compatible with upstream.

- stdin of `validate`: the PluginRef's `config` value (JSON `null` when omitted);
- stdin of `invoke`: `{"kind", "agent", "schedule", "event", "message", "config"}` in that
  key order;
- both compact (no spaces), non-ASCII written as itself (serde_json's default);
- stdout: exactly one JSON object. `validate`/`invoke` answers carry `ok` (a bool), maybe
  `error` (a string); `invoke` may add `suggest` and anything else. `info` answers
  `{name, version?, kinds[], platforms[], schema}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["KINDS", "Answer", "Kind", "Verb", "encode", "invoke_payload", "parse_answer"]

Verb = Literal["info", "validate", "invoke"]
Kind = Literal["preflight", "sink", "notify"]
KINDS: tuple[str, ...] = ("preflight", "sink", "notify")


def encode(value: Any) -> bytes:
    """Compact JSON, UTF-8, non-ASCII unescaped (what upstream's serde_json writes)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def invoke_payload(kind: str, agent: str, schedule: str, event: str, message: str | None,
                   config: Any) -> dict[str, Any]:
    """The invoke payload, keys in upstream's order (dicts keep insertion order)."""
    return {"kind": kind, "agent": agent, "schedule": schedule, "event": event,
            "message": message, "config": config}


@dataclass(frozen=True)
class Answer:
    data: dict[str, Any]
    problem: str | None  # why the answer is not acceptable (None: it is)


def parse_answer(stdout: bytes, verb: Verb) -> Answer:
    """One JSON object, nothing else but whitespace around it; for `validate` and `invoke`
    an `ok` that is a bool, and an `error` that is a string when present."""
    try:
        text = stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Answer({}, f"stdout is not UTF-8 (byte {exc.start})")
    stripped = text.strip()
    if not stripped:
        return Answer({}, "printed nothing on stdout (one JSON object expected)")
    decoder = json.JSONDecoder()
    try:
        value, end = decoder.raw_decode(stripped)
    except json.JSONDecodeError as exc:
        return Answer({}, f"stdout is not JSON ({exc.msg} at line {exc.lineno} column "
                          f"{exc.colno})")
    if end != len(stripped):
        return Answer({}, "stdout holds more than one JSON document (one object expected)")
    if not isinstance(value, dict):
        return Answer({}, f"stdout is a JSON {_json_type(value)}, not an object")
    if verb != "info":
        if "ok" not in value:
            return Answer(value, 'the answer has no "ok" field')
        if not isinstance(value["ok"], bool):
            return Answer(value, f'"ok" is a JSON {_json_type(value["ok"])}, not a bool')
        if "error" in value and value["error"] is not None and not isinstance(
                value["error"], str):
            return Answer(value, f'"error" is a JSON {_json_type(value["error"])}, '
                                 "not a string")
    return Answer(value, None)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
