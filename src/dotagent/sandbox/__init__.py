"""Confining an agent's process to what its `[security]` section declares (see base.py)."""

from __future__ import annotations

from collections.abc import Mapping

from dotagent.sandbox.base import Policy, Sandbox
from dotagent.sandbox.bwrap import BWRAP_ENV, BwrapSandbox, find_bwrap
from dotagent.sandbox.none import Unconfined

__all__ = ["BWRAP_ENV", "BwrapSandbox", "Policy", "Sandbox", "Unconfined", "find_bwrap",
           "select_sandbox"]


def select_sandbox(env: Mapping[str, str]) -> Sandbox:
    """The sandbox for this platform: bwrap (the only one so far)."""
    return BwrapSandbox(find_bwrap(env))
