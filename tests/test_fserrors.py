"""OS errors of the I/O helpers name the operation and the real target (issue 7, item 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dotagent.atomicfile import write_atomic, write_json_atomic
from dotagent.errors import StateError
from dotagent.filelock import locked
from dotagent.runner.output import open_run_log


def test_atomic_write_names_the_target_not_the_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "beat.json"
    target.mkdir()
    with pytest.raises(StateError) as info:
        write_json_atomic(target, {"a": 1})
    assert info.value.message == f"cannot write {target}: Is a directory"
    assert [p.name for p in tmp_path.iterdir()] == ["beat.json"]  # no temp file left


def test_atomic_write_names_a_parent_that_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    target = tmp_path / "state/agents/x.json"
    with pytest.raises(StateError) as info:
        write_atomic(target, b"")
    assert info.value.message == (f"cannot create directory {tmp_path / 'state/agents'} (to "
                                  f"write {target}): {tmp_path / 'state'} is not a directory")


def test_lock_errors_name_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    lock.mkdir()
    with pytest.raises(StateError) as info, locked(lock):
        pass
    assert info.value.message.startswith(f"cannot lock {lock}: ")


def test_errors_inside_a_held_lock_pass_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), locked(tmp_path / "x.lock"):
        (tmp_path / "missing").read_text()


def test_log_open_error_names_the_log(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.mkdir()
    with pytest.raises(StateError) as info:
        open_run_log(log)
    assert info.value.message == f"cannot append to the log {log}: Is a directory"
