"""`desktop`: a native notification, app name `dotagent` (S5).

Linux: `notify-send` when it is on PATH, else the `org.freedesktop.Notifications.Notify`
D-Bus call through `gdbus` (or `dbus-send`). A daemon started outside the desktop session
(a systemd user unit, cron) usually has no `DBUS_SESSION_BUS_ADDRESS` and no display in its
environment, which is why notifications from background jobs "never show": when they are
missing, the session bus `$XDG_RUNTIME_DIR/bus` (or `/run/user/<uid>/bus`), a Wayland socket
there and an X11 socket in /tmp/.X11-unix are found and handed to the child.
macOS: `osascript -e 'display notification …'`.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotagent.notify.base import Message, NotifyError, SendContext

__all__ = ["DesktopDriver", "session_env", "tool"]


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


def runtime_dir(env: Mapping[str, str], override: Path | None = None) -> Path:
    if override is not None:
        return override
    xdg = env.get("XDG_RUNTIME_DIR")
    return Path(xdg) if xdg else Path(f"/run/user/{os.getuid()}")


def session_env(env: Mapping[str, str], *, runtime: Path | None = None,
                x11_dir: Path = Path("/tmp/.X11-unix")) -> dict[str, str]:
    """The environment for the notification tool: `env` plus the session bus and display
    when `env` lacks them and they can be found."""
    out = dict(env)
    run = runtime_dir(env, runtime)
    if not out.get("DBUS_SESSION_BUS_ADDRESS") and _is_socket(run / "bus"):
        out["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={run / 'bus'}"
        out.setdefault("XDG_RUNTIME_DIR", str(run))
    if not out.get("WAYLAND_DISPLAY") and not out.get("DISPLAY"):
        wayland = sorted(p.name for p in _glob(run, "wayland-*")
                         if not p.name.endswith(".lock") and _is_socket(p))
        if wayland:
            out["WAYLAND_DISPLAY"] = wayland[0]
            out.setdefault("XDG_RUNTIME_DIR", str(run))
        displays = sorted(int(p.name[1:]) for p in _glob(x11_dir, "X*")
                           if p.name[1:].isdigit() and _is_socket(p))
        if displays:
            out["DISPLAY"] = f":{displays[0]}"
    return out


def _glob(directory: Path, pattern: str) -> list[Path]:
    try:
        return list(directory.glob(pattern))
    except OSError:
        return []


def tool(env: Mapping[str, str], platform: str) -> list[str] | None:
    """The program the driver would use, as [name, path]; None when there is none."""
    path = env.get("PATH", os.defpath)
    names = ("osascript",) if platform == "darwin" else ("notify-send", "gdbus", "dbus-send")
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return [name, found]
    return None


def _gvariant_string(text: str) -> str:
    escaped = (text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
               .replace("\t", "\\t"))
    return f"'{escaped}'"


def _applescript_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _urgency(message: Message, configured: str | None) -> str:
    if configured in ("low", "critical"):
        return configured
    if configured is None and message.critical:
        return "critical"
    return "normal"


class DesktopDriver:
    name = "desktop"

    def send(self, message: Message, ctx: SendContext) -> None:
        found = tool(ctx.env, ctx.platform)
        if found is None:
            raise NotifyError("no notification tool found (notify-send, gdbus, dbus-send)"
                              if ctx.platform != "darwin" else "osascript not found")
        name, path = found
        title = message.title or ctx.text("title") or (message.agent or "dotagent")
        body = message.body
        icon = ctx.text("icon") or ""
        expire = ctx.fields.get("expire_ms")
        urgency = _urgency(message, ctx.text("urgency"))
        if name == "osascript":
            script = f"display notification {_applescript_string(body)} with title " \
                     f"{_applescript_string(title)}"
            subtitle = ctx.text("subtitle")
            if subtitle:
                script += f" subtitle {_applescript_string(subtitle)}"
            script += f" sound name {_applescript_string(ctx.text('sound') or 'Submarine')}"
            argv = [path, "-e", script]
        elif name == "notify-send":
            argv = [path, "--app-name=dotagent", f"--urgency={urgency}"]
            if icon:
                argv.append(f"--icon={icon}")
            if isinstance(expire, int):
                argv.append(f"--expire-time={expire}")
            argv += ["--", title, body]
        elif name == "gdbus":
            level = {"low": 0, "normal": 1, "critical": 2}[urgency]
            argv = [path, "call", "--session", "--dest", "org.freedesktop.Notifications",
                    "--object-path", "/org/freedesktop/Notifications", "--method",
                    # `--`: the default expiry `-1` is otherwise taken for an option (gdbus
                    # printed its usage and every fallback delivery failed). Typed numbers:
                    # without the service's introspection gdbus would guess int32.
                    "org.freedesktop.Notifications.Notify", "--", "'dotagent'", "uint32 0",
                    _gvariant_string(icon), _gvariant_string(title), _gvariant_string(body),
                    "@as []", f"{{'urgency': <byte {level}>}}",
                    f"int32 {expire if isinstance(expire, int) else -1}"]
        else:  # dbus-send
            level = {"low": 0, "normal": 1, "critical": 2}[urgency]
            argv = [path, "--session", "--type=method_call", "--print-reply",
                    "--dest=org.freedesktop.Notifications", "/org/freedesktop/Notifications",
                    "org.freedesktop.Notifications.Notify", "string:dotagent", "uint32:0",
                    f"string:{icon}", f"string:{title}", f"string:{body}", "array:string:",
                    f"dict:string:byte:urgency,{level}",
                    f"int32:{expire if isinstance(expire, int) else -1}"]
        env = (dict(ctx.env) if ctx.platform == "darwin"
               else session_env(ctx.env, runtime=ctx.runtime_dir, x11_dir=ctx.x11_dir))
        run_tool(name, argv, env, ctx.timeout)


def run_tool(name: str, argv: list[str], env: Mapping[str, str], timeout: float) -> None:
    """Run a notification tool through the one supervisor: its own process group, stopped
    whole (TERM, then KILL) at `timeout`, so nothing it started outlives the delivery."""
    from dotagent.runner.process import SpawnError, supervise

    stderr = bytearray()

    def collect(stream: object, chunk: bytes) -> None:
        if stream == "stderr" and len(stderr) < _STDERR_KEEP:
            stderr.extend(chunk[:_STDERR_KEEP - len(stderr)])

    try:
        result = supervise(argv, executable=argv[0], cwd=Path("/"), env=env, timeout=timeout,
                           on_output=collect, grace=_TOOL_GRACE, stdin_devnull=True)
    except SpawnError as exc:
        raise NotifyError(f"cannot run {name}: {exc}") from None
    if result.timed_out:
        raise NotifyError(f"{name} did not finish within {timeout:g}s")
    proc = _Finished(result.exit_code, bytes(stderr))
    if proc.returncode != 0:
        err = [line for line in proc.stderr.decode("utf-8", "replace").splitlines()
               if line.strip()]
        # The line that says what went wrong (gdbus follows an error with its usage text).
        said = next((line for line in err if "error" in line.lower()), err[-1] if err else "")
        raise NotifyError(f"{name} exited {proc.returncode}" + (f": {said.strip()[:300]}"
                                                                if said else ""))


_STDERR_KEEP = 64 * 1024
_TOOL_GRACE = 1.0


@dataclass(frozen=True)
class _Finished:
    returncode: int
    stderr: bytes
