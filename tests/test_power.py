"""`[power]`: the power source from a faked /sys/class/power_supply tree or pmset output, and
the defer decision (UPSTREAM-0.6 §6)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from dotagent.manifest import parse_manifest
from dotagent.power import (
    AC,
    PMSET_ARGV,
    UNKNOWN,
    battery,
    parse_pmset,
    probe,
    probe_linux,
    probe_needed,
    run_pmset,
    should_defer,
)


def supply(root: Path, name: str, **attrs: str | None) -> Path:
    """One entry of a fake power_supply tree; an attribute given as None is made unreadable
    (a directory where the file should be: the tests run as root, so modes prove nothing)."""
    d = root / name
    d.mkdir(parents=True)
    for key, value in attrs.items():
        if value is None:
            (d / key).mkdir()
        else:
            (d / key).write_text(value + "\n")
    return d


@pytest.fixture
def sys_root(tmp_path: Path) -> Path:
    root = tmp_path / "power_supply"
    root.mkdir()
    return root


# -- Linux --------------------------------------------------------------------------------
def test_mains_online_is_ac(sys_root: Path) -> None:
    supply(sys_root, "AC", type="Mains", online="1")
    supply(sys_root, "BAT0", type="Battery", scope="System", capacity="40")
    assert probe_linux(sys_root) == AC
    assert probe(sys_root, platform="linux") == AC
    assert not should_defer(AC, "defer", 100)


def test_offline_with_low_battery_defers(sys_root: Path) -> None:
    supply(sys_root, "AC", type="Mains", online="0")
    supply(sys_root, "BAT0", type="Battery", capacity="15")
    source = probe_linux(sys_root)
    assert source == battery(15)
    assert str(source) == "battery 15%"
    assert should_defer(source, "run", 20)
    assert not should_defer(source, "run", 15)  # the floor itself runs
    assert not should_defer(source, "run", 0)
    assert should_defer(source, "defer", 0)


def test_peripheral_batteries_are_ignored(sys_root: Path) -> None:
    supply(sys_root, "AC", type="Mains", online="0")
    supply(sys_root, "0-hidpp_battery_0", type="Battery", scope="Device", capacity="5")
    supply(sys_root, "BAT1", type="Battery", capacity="80")
    assert probe_linux(sys_root) == battery(80)
    (sys_root / "BAT1" / "capacity").unlink()
    # Only the mouse reports a charge: the system battery's is unknown, never the mouse's.
    assert probe_linux(sys_root) == battery(None)
    assert not should_defer(battery(None), "run", 50)


def test_first_readable_capacity_wins(sys_root: Path) -> None:
    supply(sys_root, "ADP1", type="Mains", online="0")
    supply(sys_root, "BAT0", type="Battery", capacity=None)
    supply(sys_root, "BAT1", type="Battery", capacity="not a number")
    supply(sys_root, "BAT2", type="Battery", capacity="33")
    supply(sys_root, "BAT3", type="Battery", capacity="90")
    assert probe_linux(sys_root) == battery(33)


def test_unreadable_online_is_unknown_not_battery(sys_root: Path) -> None:
    supply(sys_root, "AC", type="Mains", online=None)
    supply(sys_root, "BAT0", type="Battery", capacity="10")
    assert probe_linux(sys_root) == UNKNOWN
    assert not should_defer(UNKNOWN, "defer", 100)
    (sys_root / "AC" / "online").rmdir()
    (sys_root / "AC" / "online").write_text("2\n")  # neither 0 nor 1: no information
    assert probe_linux(sys_root) == UNKNOWN


def test_a_true_mains_always_wins(sys_root: Path) -> None:
    supply(sys_root, "AC0", type="Mains", online="1")
    supply(sys_root, "AC1", type="Mains", online="0")
    assert probe_linux(sys_root) == AC
    supply(sys_root, "USB-C", type="Mains", online="1")  # after an offline one in name order
    (sys_root / "AC0" / "online").write_text("0")
    assert probe_linux(sys_root) == AC


def test_no_supplies_is_unknown(sys_root: Path, tmp_path: Path) -> None:
    assert probe_linux(sys_root) == UNKNOWN
    assert probe_linux(tmp_path / "does-not-exist") == UNKNOWN
    supply(sys_root, "BAT0", type="Battery", capacity="12")  # a battery but no mains entry
    supply(sys_root, "ucsi-source-psy-1", type="USB", online="1")
    assert probe_linux(sys_root) == UNKNOWN
    file_root = tmp_path / "a-file"
    file_root.write_text("")
    assert probe_linux(file_root) == UNKNOWN


def test_other_platforms_are_unknown(sys_root: Path) -> None:
    supply(sys_root, "AC", type="Mains", online="1")
    assert probe(sys_root, platform="win32") == UNKNOWN
    assert probe(sys_root, platform="freebsd14") == UNKNOWN


# -- macOS ------------------------------------------------------------------------------
PMSET_BATTERY = (
    "Now drawing from 'Battery Power'\n"
    " -InternalBattery-0 (id=4653155)\t85%; discharging; 4:49 remaining present: true\n"
)
PMSET_AC = (
    "Now drawing from 'AC Power'\n"
    " -InternalBattery-0 (id=4653155)\t100%; charged; 0:00 remaining present: true\n"
)
PMSET_DESKTOP = "Now drawing from 'AC Power'\n"
PMSET_UPS = (
    "Now drawing from 'UPS Power'\n"
    " -CP1500PFCLCD (id=1234)\t97%; AC attached; not charging present: true\n"
)


def test_pmset_output_is_parsed() -> None:
    assert parse_pmset(PMSET_BATTERY) == battery(85)
    assert parse_pmset(PMSET_AC) == AC
    assert parse_pmset(PMSET_DESKTOP) == AC
    assert parse_pmset(PMSET_UPS) == AC
    assert parse_pmset("") == UNKNOWN
    assert parse_pmset("garbage\nno source line 50%\n") == UNKNOWN
    assert parse_pmset("  Now drawing from 'Battery Power'\n") == battery(None)
    # The digits right before the first '%' — not the id, and not a later percentage.
    assert parse_pmset("Now drawing from 'Battery Power'\n -B (id=9)\t7%; 80% later\n") == \
        battery(7)
    assert parse_pmset("Now drawing from 'Battery Power'\n -B (id=9)\t%; x\n") == battery(None)
    assert parse_pmset("Now drawing from 'Battery Power'\n -B\t300%\n") == battery(None)


def test_darwin_runs_pmset_through_the_given_runner() -> None:
    calls: list[Sequence[str]] = []

    def fake(argv: Sequence[str]) -> str | None:
        calls.append(argv)
        return PMSET_BATTERY

    assert probe(platform="darwin", run=fake) == battery(85)
    assert calls == [PMSET_ARGV] and PMSET_ARGV == ("/usr/bin/pmset", "-g", "batt")
    assert probe(platform="darwin", run=lambda argv: None) == UNKNOWN


def test_run_pmset_never_raises(tmp_path: Path) -> None:
    assert run_pmset([sys.executable, "-c", "print('Now drawing from')"]) == \
        "Now drawing from\n"
    assert run_pmset([sys.executable, "-c", "import sys; sys.exit(3)"]) is None
    assert run_pmset([str(tmp_path / "no-such-pmset"), "-g", "batt"]) is None
    assert run_pmset([str(tmp_path)]) is None  # a directory: not executable


# -- the decision -----------------------------------------------------------------------
def test_should_defer_truth_table() -> None:
    assert [should_defer(s, p, m) for s, p, m in (
        (AC, "run", 0), (AC, "defer", 50), (UNKNOWN, "defer", 50),
        (battery(None), "run", 0), (battery(None), "run", 30), (battery(None), "defer", 0),
        (battery(29), "run", 30), (battery(30), "run", 30), (battery(0), "run", 1),
        (battery(99), "defer", 0),
    )] == [False, False, False, False, False, True, True, False, True, True]


def test_probe_is_needed_only_when_something_can_defer() -> None:
    assert not probe_needed("run", 0, [])
    assert not probe_needed("run", 0, [None, "run", None])
    assert probe_needed("defer", 0, [])
    assert probe_needed("run", 1, [])
    assert probe_needed("run", 0, [None, "defer"])
    assert probe_needed("run", 0, iter(["run", "defer"]))


# -- the per-schedule override in agent.toml ------------------------------------------------
MANIFEST = """\
[agent]
name = "sync"
[run]
command = "true"
[[schedules]]
id = "laptop"
type = "interval"
interval_minutes = 10
on_battery = "{value}"
[[schedules]]
id = "always"
type = "cron"
weekdays = []
hours = []
"""


def test_schedules_may_override_on_battery() -> None:
    result = parse_manifest(MANIFEST.format(value="defer").encode(), Path("agent.toml"))
    assert result.errors == [] and result.warnings == []
    assert result.manifest is not None
    assert [s.on_battery for s in result.manifest.schedules] == ["defer", None]
    overrides = [s.on_battery for s in result.manifest.schedules]
    assert probe_needed("run", 0, overrides)
    result = parse_manifest(MANIFEST.format(value="later").encode(), Path("agent.toml"))
    assert [str(e) for e in result.errors] == [
        "agent.toml:9: schedules[0].on_battery: \"later\" is not allowed (expected 'run' or "
        "'defer')"]
