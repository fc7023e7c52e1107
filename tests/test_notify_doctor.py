"""doctor on notifier entries: imessage off macOS is an error; an unresolvable ${VAR} and a
desktop entry with no tool are warnings, each located."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from helpers import dotagent, write_agent


def test_doctor_reports_notifier_problems(dotagent_home: Path, cli_env: dict[str, str],
                                          tmp_path: Path) -> None:
    write_agent(dotagent_home / "agents", "nightly", """
        [agent]
        name = "nightly"
        [run]
        command = "/bin/true"
        [[schedules]]
        id = "main"
        type = "interval"
        interval_minutes = 60
        [[notifiers]]
        driver = "imessage"
        to = "+15550001"
        [[notifiers]]
        driver = "slack"
        webhook_url = "${DOCTOR_UNSET_HOOK}"
        [[notifiers]]
        driver = "desktop"
        """)
    cli_env.pop("DOCTOR_UNSET_HOOK", None)
    cli_env["PATH"] = str(Path(sys.executable).parent)  # no notify-send, gdbus, dbus-send
    cli_env["DOTAGENT_ROOT"] = str(dotagent_home / "agents")
    p = dotagent("doctor", "--json", env=cli_env, cwd=tmp_path)
    report = json.loads(p.stdout)
    [m] = [m for m in report["manifests"] if m["name"] == "nightly"]
    errors = {(e["field"], e["message"]) for e in m["errors"]}
    warnings = {(w["field"], w["message"]) for w in m["warnings"]}
    if sys.platform != "darwin":
        assert ("notifiers[0].driver", "imessage needs macOS (Messages.app); it cannot send "
                f"from {sys.platform}") in errors
    assert any(f == "notifiers[1].webhook_url" and "${DOCTOR_UNSET_HOOK} is unset" in msg
               for f, msg in warnings), warnings
    assert any(f == "notifiers[2].driver" and "no notification tool" in msg
               for f, msg in warnings), warnings
    lines = {e["field"]: e["line"] for e in m["errors"]}
    assert lines["notifiers[0].driver"] == 10
