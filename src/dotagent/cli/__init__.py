"""Command-line entry point.

`main()` answers `--version` before importing click so that the most common probe of an
installed tool costs next to nothing; every command imports its heavy modules lazily.
Before anything else it makes the standard streams failure-proof (`_streams.install`): a
closed, full or abandoned stdout/stderr never crashes a command.
"""

from __future__ import annotations

import sys

from dotagent.cli import _streams

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    _streams.install()
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):
        from dotagent import __version__

        sys.stdout.write(f"dotagent {__version__}\n")
        return _streams.finish(0)
    from dotagent.cli.app import run_app

    return run_app(args)
