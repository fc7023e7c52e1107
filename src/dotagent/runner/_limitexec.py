"""Apply an agent's `[limits]` to this process, then exec the agent (docs/decisions.md).

Run as `python -I -S _limitexec.py SPEC EXECUTABLE ARGV0 [ARG...]` by `supervise`, in the
child's own process group, so nothing runs between fork and exec in the (multi-threaded)
daemon. SPEC is `name=value` pairs joined by commas: `data` / `as` (bytes), `cpu` (seconds),
`nofile`, `nice`. It imports nothing of dotagent: it must start fast and stand alone.

A limit that cannot be set stops the run here (exit 126, one line on stderr): an agent is
never run with less confinement than its manifest declares.
"""

import os
import resource
import sys

EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127


def _fail(message: str, code: int = EXIT_CANNOT_EXECUTE) -> None:
    os.write(2, f"[dotagent] {message}\n".encode("utf-8", "replace"))
    os._exit(code)


def _apply(spec: str) -> None:
    for item in filter(None, spec.split(",")):
        name, _, text = item.partition("=")
        try:
            value = int(text)
            if name in ("data", "as"):
                which = resource.RLIMIT_DATA if name == "data" else resource.RLIMIT_AS
                resource.setrlimit(which, (value, value))
            elif name == "cpu":
                # SIGXCPU at the soft limit; SIGKILL one second later for an agent that
                # ignores it.
                resource.setrlimit(resource.RLIMIT_CPU, (value, value + 1))
            elif name == "nofile":
                _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                if hard != resource.RLIM_INFINITY:
                    value = min(value, hard)  # an unprivileged process cannot raise it
                resource.setrlimit(resource.RLIMIT_NOFILE, (value, value))
            elif name == "nice":
                current = os.getpriority(os.PRIO_PROCESS, 0)
                if value > current:  # lowering the niceness would need privilege
                    os.setpriority(os.PRIO_PROCESS, 0, value)
            else:
                _fail(f"unknown limit {name!r}")
        except (OSError, ValueError) as exc:
            _fail(f"cannot apply [limits] {name} = {text}: {exc}")


def main(argv: list[str]) -> None:
    if len(argv) < 4:
        _fail("usage: _limitexec.py SPEC EXECUTABLE ARGV0 [ARG...]", 2)
    _apply(argv[1])
    executable = argv[2]
    try:
        os.execv(executable, argv[3:])
    except FileNotFoundError as exc:
        _fail(f"cannot execute {executable}: {exc.strerror}", EXIT_NOT_FOUND)
    except OSError as exc:
        _fail(f"cannot execute {executable}: {exc.strerror or exc}")


if __name__ == "__main__":
    main(sys.argv)
