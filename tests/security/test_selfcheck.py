"""Self-hash (V3): record on first use, verify, and catch a swapped file — played on a copy
of the package so the real source tree is never touched."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def copy_package(tmp_path: Path) -> Path:
    dest = tmp_path / "site"
    shutil.copytree(REPO / "src/dotagent", dest / "dotagent",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def selfcheck(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from dotagent.cli import main; "
            "raise SystemExit(main(sys.argv[2:]))")
    return subprocess.run([sys.executable, "-c", code, str(site), "selfcheck", *args],
                          capture_output=True, text=True, check=False, timeout=60)


def test_first_use_records_then_verifies(tmp_path: Path, dotagent_home: Path) -> None:
    site = copy_package(tmp_path)
    p = selfcheck(site)
    assert p.returncode == 0 and p.stdout.startswith("recorded sha256 ")
    recorded = (dotagent_home / "daemon.sha256").read_text().strip()
    assert len(recorded) == 64
    listing = json.loads((dotagent_home / "state/selfcheck.json").read_text())
    assert listing["aggregate_sha256"] == recorded
    assert "dotagent/cli/app.py" in listing["files"]
    p = selfcheck(site, "--json")
    assert p.returncode == 0
    assert json.loads(p.stdout)["status"] == "ok"


def test_swapped_file_is_a_critical_mismatch(tmp_path: Path, dotagent_home: Path) -> None:
    site = copy_package(tmp_path)
    assert selfcheck(site).returncode == 0
    target = site / "dotagent/runner/spawn.py"
    target.write_text(target.read_text() + "\n# trojan\n")
    (site / "dotagent/extra_payload.py").write_text("x = 1\n")
    p = selfcheck(site)
    assert p.returncode == 1
    assert "MISMATCH" in p.stdout
    assert "changed: dotagent/runner/spawn.py" in p.stdout
    assert "added: dotagent/extra_payload.py" in p.stdout
    events = [json.loads(x) for x in (dotagent_home / "audit.log").read_text().splitlines()]
    [failed] = [e for e in events if e["event"]["event_type"] == "selfcheck_failed"]
    assert failed["severity"] == "critical"
    assert "dotagent/runner/spawn.py" in failed["event"]["reason"]
    # Accepting the new installation deliberately leaves a trace.
    assert selfcheck(site, "--record").returncode == 0
    assert selfcheck(site).returncode == 0
    events = [json.loads(x) for x in (dotagent_home / "audit.log").read_text().splitlines()]
    recorded = [e["event"] for e in events if e["event"]["event_type"] == "selfcheck_recorded"]
    assert len(recorded) == 2
    assert recorded[0]["previous_sha256"] is None
    assert recorded[1]["previous_sha256"] == failed["event"]["expected_sha256"]
    assert recorded[1]["sha256"] == failed["event"]["actual_sha256"]
