"""Command-line entry point.

`main()` answers `--version` before importing click so that the most common probe of an
installed tool costs next to nothing; every command imports its heavy modules lazily. Every
other command line first makes the standard streams failure-proof (`_streams.install`): a
closed, full or abandoned stdout/stderr never crashes a command.
"""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):
        return _version()
    from dotagent.cli import _streams

    _streams.install()
    from dotagent.cli.app import run_app

    return run_app(args)


def _version() -> int:
    """`dotagent --version`, written straight to the descriptor, under the same rules as
    every other command (docs/cli.md): a closed stdout or a reader that went away is not an
    error; a stdout that cannot be written (full, I/O error) is one line and exit 1."""
    from dotagent import __version__

    if sys.stdout is not None and sys.stdout is not sys.__stdout__:
        sys.stdout.write(f"dotagent {__version__}\n")  # someone else's stream (a test's)
        return 0
    try:
        os.write(1, f"dotagent {__version__}\n".encode())
    except OSError as exc:
        if exc.errno in (32, 9):  # EPIPE: the reader went away; EBADF: stdout is closed
            return 0
        try:  # noqa: SIM105 - contextlib is not loaded yet, and need not be
            os.write(2, f"Error: cannot write to standard output: {exc.strerror}\n".encode())
        except OSError:
            pass
        return 1
    return 0
