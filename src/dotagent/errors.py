"""The one error hierarchy. Every message is written for the person at the terminal.

Two exit conventions (SPEC S15.10):
- commands that pass no agent status through (doctor, audit, calendar, ...) exit 1 for any
  failure of theirs and 2 for a usage mistake;
- commands whose exit status is the agent's (`run`, later `trigger` in the foreground) must
  never let a refusal of dotagent's look like an agent status: usage mistakes still exit 2,
  everything else exits with the error's `sysexits.h` code (64-78).

Each error class carries both; the CLI boundary picks one according to the command.
"""

from __future__ import annotations

__all__ = [
    "EX_CANTCREAT",
    "EX_CONFIG",
    "EX_DATAERR",
    "EX_IOERR",
    "EX_NOINPUT",
    "EX_NOPERM",
    "EX_OSERR",
    "EX_SOFTWARE",
    "EX_TEMPFAIL",
    "EX_UNAVAILABLE",
    "EX_USAGE",
    "ConfigError",
    "DotagentError",
    "ExistsError",
    "LinkRefusedError",
    "NotFoundError",
    "StateError",
    "SymlinkRefused",
    "TrustRefused",
    "UnsafeNameError",
    "UsageError",
]

# sysexits.h
EX_USAGE = 64        # command line usage error (we use 2, click's convention, for usage)
EX_DATAERR = 65      # data format error
EX_NOINPUT = 66      # cannot open input: the named agent / schedule / file does not exist
EX_UNAVAILABLE = 69  # service unavailable
EX_SOFTWARE = 70     # internal software error
EX_OSERR = 71        # system error
EX_CANTCREAT = 73    # can't create (user) output file: state that cannot be written
EX_IOERR = 74        # input/output error
EX_TEMPFAIL = 75     # temporary failure; the user is invited to retry (e.g. a lock is held)
EX_NOPERM = 77       # permission denied: refused for safety
EX_CONFIG = 78       # configuration error: the agent's manifest is broken

USAGE_EXIT = 2


class DotagentError(Exception):
    """An error the CLI reports as `Error: <message>` without a traceback.

    `exit_code` is used by commands that pass no agent status through; `sysexit` by those
    that do (`run`).
    """

    exit_code: int = 1
    sysexit: int = EX_SOFTWARE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(DotagentError):
    """The command line itself is wrong or incomplete (exit 2 everywhere)."""

    exit_code = USAGE_EXIT
    sysexit = USAGE_EXIT


class UnsafeNameError(DotagentError):
    """A user-supplied name would not be a single safe path component, or a path would leave
    the state directory."""

    sysexit = EX_NOPERM


class NotFoundError(DotagentError):
    """An agent, schedule or file the user named does not exist."""

    sysexit = EX_NOINPUT


class ConfigError(DotagentError):
    """A manifest or configuration file exists but cannot be used as written."""

    sysexit = EX_CONFIG


class StateError(DotagentError):
    """dotagent's own state (heartbeat, log, audit file) cannot be read or written."""

    sysexit = EX_CANTCREAT


class ExistsError(DotagentError):
    """A file a command would create is already there, or is not dotagent's to replace
    (`init` over an existing agent, `install` over a unit dotagent did not write). Exit 73
    (EX_CANTCREAT) for every command, so that a script can tell "left alone" from a failure."""

    exit_code = EX_CANTCREAT
    sysexit = EX_CANTCREAT


class TrustRefused(DotagentError):
    """An agent that `[trust]` does not let run (its manifest's signature does not verify):
    refused for safety, exit 77 (EX_NOPERM) for every command."""

    exit_code = EX_NOPERM
    sysexit = EX_NOPERM


class LinkRefusedError(StateError):
    """A file or directory of dotagent's own is a symlink (or lies behind one): refused for
    safety, so that a planted link cannot make dotagent write or chmod a file elsewhere."""

    sysexit = EX_NOPERM


LINK_POLICY = "dotagent does not follow links in its state directory"


class SymlinkRefused(OSError):
    """The OSError the private-file helpers raise for such a link, so that every I/O helper
    names its operation and file as for any OS error; they turn it into LinkRefusedError.

    `link` is the symlink found, `path` the file that was to be used (the same path when the
    file itself is the link); the message names the link.
    """

    def __init__(self, path: object, link: object | None = None) -> None:
        import errno
        import os

        from dotagent.display import printable

        link = path if link is None else link
        try:
            to = f" (to {printable(os.readlink(str(link)))})"
        except OSError:
            to = ""
        self.link = str(link)
        super().__init__(errno.ELOOP, f"{printable(self.link)} is a symlink{to}; {LINK_POLICY}",
                         str(path))
