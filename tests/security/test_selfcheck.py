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


def test_tampered_bytecode_with_a_matching_header_is_caught(tmp_path: Path,
                                                            dotagent_home: Path) -> None:
    """Python trusts a .pyc whose header matches the source's mtime and size: forge one."""
    import importlib.util
    import marshal
    import os

    site = copy_package(tmp_path)
    assert selfcheck(site).returncode == 0
    source = site / "dotagent/cli/selfcheck.py"
    evil = source.read_text().replace('"""Verify that', '"""PWNED. Verify that', 1)
    st = source.stat()
    header = (importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little")
              + (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
              + (st.st_size & 0xFFFFFFFF).to_bytes(4, "little"))
    cache = site / "dotagent/cli/__pycache__"
    cache.mkdir(exist_ok=True)
    tag = sys.implementation.cache_tag
    pyc = cache / f"selfcheck.{tag}.pyc"
    pyc.write_bytes(header + marshal.dumps(compile(evil, str(source), "exec")))
    os.utime(source, (st.st_atime, st.st_mtime))
    p = selfcheck(site)
    assert p.returncode == 1, p.stdout
    assert f"bytecode differs from its source: dotagent/cli/__pycache__/selfcheck.{tag}.pyc" \
        in p.stdout


def test_genuine_and_stale_bytecode_is_not_an_alarm(tmp_path: Path,
                                                     dotagent_home: Path) -> None:
    import compileall

    site = copy_package(tmp_path)
    assert compileall.compile_dir(str(site / "dotagent"), quiet=1)
    assert list((site / "dotagent").rglob("*.pyc"))  # the check has real caches to look at
    assert selfcheck(site).returncode == 0
    assert selfcheck(site).returncode == 0
    # A cache whose source moved on is stale: Python recompiles it, so it is no threat.
    source = site / "dotagent/timefmt.py"
    source.write_text(source.read_text() + "\n")
    assert selfcheck(site, "--record").returncode == 0
    p = selfcheck(site)
    assert p.returncode == 0, p.stdout


def test_deleting_the_hash_file_does_not_launder_a_swap(tmp_path: Path,
                                                        dotagent_home: Path) -> None:
    site = copy_package(tmp_path)
    assert selfcheck(site).returncode == 0
    (dotagent_home / "daemon.sha256").unlink()
    assert selfcheck(site).returncode == 0  # unchanged install: restored, with a warning
    assert (dotagent_home / "daemon.sha256").exists()
    target = site / "dotagent/runner/spawn.py"
    target.write_text(target.read_text() + "\n# trojan\n")
    (dotagent_home / "daemon.sha256").unlink()
    p = selfcheck(site)
    assert p.returncode == 1
    assert "daemon.sha256 was missing" in p.stdout and "dotagent/runner/spawn.py" in p.stdout
