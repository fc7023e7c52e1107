"""The one error hierarchy. Every message is written for the person at the terminal."""

from __future__ import annotations

__all__ = [
    "DotagentError",
    "NotFoundError",
    "UnsafeNameError",
]


class DotagentError(Exception):
    """An error the CLI reports as `Error: <message>` (exit 1) without a traceback."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UnsafeNameError(DotagentError):
    """A user-supplied name would not be a single safe path component."""


class NotFoundError(DotagentError):
    """An agent, schedule or file the user named does not exist."""
