"""Command-line entry point.

`main()` answers `--version` before importing click so that the most common probe of an
installed tool costs next to nothing; every command imports its heavy modules lazily.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):
        from dotagent import __version__

        sys.stdout.write(f"dotagent {__version__}\n")
        return 0
    from dotagent.cli.app import run_app

    return run_app(args)
