"""Property test: any single attack on any log is classified with the documented kind and line."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dotagent.atomicfile import write_json_atomic
from dotagent.audit import GENESIS, events, hash_line
from dotagent.audit.chain import HEAD_FILE, AuditLog
from dotagent.audit.record import render_line
from dotagent.audit.scan import Head
from dotagent.paths import Home


def build(root: Path, n: int) -> list[bytes]:
    """n chained lines plus a matching head, written directly (fast, no fsync)."""
    lines: list[bytes] = []
    prev = GENESIS
    for i in range(n):
        line = render_line(events.TickStarted(agents_scanned=i), ts="2026-05-19T14:30:01-0300",
                           prev_hash=prev)
        lines.append(line)
        prev = hash_line(line)
    size = sum(len(x) + 1 for x in lines)
    write_json_atomic(root / "state" / HEAD_FILE, Head(n, prev, size).to_json())
    return lines


@st.composite
def attacks(draw: st.DrawFn) -> tuple[int, str, tuple[int, ...]]:
    n = draw(st.integers(min_value=2, max_value=40))
    kind = draw(st.sampled_from(["edit", "delete", "swap", "cut", "tear", "dup", "garbage",
                                 "forge"]))
    if kind == "swap":
        i = draw(st.integers(0, n - 2))
        j = draw(st.integers(i + 1, n - 1))
        return n, kind, (i, j)
    if kind == "cut":
        return n, kind, (draw(st.integers(1, n)),)
    if kind == "forge":
        return n, kind, ()
    return n, kind, (draw(st.integers(0, n - 1)),)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attacks())
def test_single_attack_classified(attack: tuple[int, str, tuple[int, ...]]) -> None:
    n, kind, args = attack
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lines = build(root, n)
        expected: tuple[int, str]
        if kind == "edit":
            (i,) = args
            lines[i] = lines[i].replace(b'"agents_scanned":%d' % i,
                                        b'"agents_scanned":%d' % (i + 1000))
            expected = (i + 1, "edit")
        elif kind == "delete":
            (i,) = args
            del lines[i]
            # Deleting the last line is cutting the tail.
            expected = (i + 1, "truncation" if i == n - 1 else "deletion")
        elif kind == "swap":
            i, j = args
            lines[i], lines[j] = lines[j], lines[i]
            expected = (i + 1, "reorder")
        elif kind == "cut":
            (k,) = args
            del lines[n - k:]
            expected = (n - k + 1, "truncation")
        elif kind == "dup":  # line i written twice
            (i,) = args
            lines.insert(i, lines[i])
            expected = (i + 2, "reorder")
        elif kind == "garbage":  # a line that is not an entry inserted before line i
            (i,) = args
            lines.insert(i, b"garbage")
            expected = (i + 1, "torn")
        elif kind == "forge":  # an entry after the last one that does not chain on it
            forged = render_line(events.TickStarted(agents_scanned=-1),
                                 ts="2026-05-19T14:30:01-0300", prev_hash="a" * 64)
            lines.append(forged)
            expected = (n + 1, "edit")
        else:  # tear: cut line i in half and drop everything after it
            (i,) = args
            lines = [*lines[:i], lines[i][: len(lines[i]) // 2]]
            expected = (i + 1, "torn")
        data = b"".join(x + b"\n" for x in lines)
        if kind == "tear":
            data = data[:-1]
        (root / "audit.log").write_bytes(data)

        report = AuditLog(Home(root)).verify(record=False)
        assert not report.ok
        first = report.problems[0]
        assert (first.line, first.kind) == expected, report.problems
        # One attack, one kind: every problem reported agrees.
        kinds = {p.kind for p in report.problems}
        if kind == "tear" and i < n - 1:
            assert kinds == {"torn", "truncation"}
        else:
            assert kinds == {expected[1]}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attacks())
def test_after_any_attack_appends_chain_on_and_breaks_are_recorded_once(
        attack: tuple[int, str, tuple[int, ...]]) -> None:
    n, kind, args = attack
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lines = build(root, n)
        if kind in ("edit", "delete", "tear"):
            (i,) = args
            lines[i] = lines[i][: len(lines[i]) // 2] if kind == "tear" else b""
            lines = [x for x in lines if x] if kind == "delete" else lines
            if kind == "edit":
                lines[i] = b'{"ts":"x","severity":"info","event":{},"prev_hash":"GENESIS"}'
        elif kind == "swap":
            i, j = args
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "dup":
            lines.insert(args[0], lines[args[0]])
        elif kind == "garbage":
            lines.insert(args[0], b"garbage")
        elif kind == "forge":
            lines.append(lines[0][:-9] + b"a" * 64 + b'"}')
        else:
            del lines[n - args[0]:]
        (root / "audit.log").write_bytes(b"".join(x + b"\n" for x in lines))
        log = AuditLog(Home(root), fsync=False)

        first = log.verify()
        line = log.append(events.TickStarted(agents_scanned=-1))
        data = (root / "audit.log").read_bytes().splitlines()
        assert data[-1] == line.encode()
        assert line.endswith(f'"prev_hash":"{hash_line(data[-2])}"}}')
        second = log.verify()
        assert second.recorded == 0
        assert first.recorded == len(first.problems)
        # What remains wrong is damage inside the log, told the way it was first recorded;
        # the tail is whole again.
        assert all(p.line < len(data) for p in second.problems)
        before = {(p.line, p.kind) for p in first.problems}
        assert {(p.line, p.kind) for p in second.problems} <= before
