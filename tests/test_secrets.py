"""The secrets store (SPEC S6): grammar, precedence, refusals, op:// and what loading audits."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dotagent import redaction
from dotagent.audit import AuditLog
from dotagent.config import Config, SecretsSection
from dotagent.paths import Home
from dotagent.secrets import (
    SecretsError,
    SecretStore,
    load_secrets,
    parse_secrets,
    read_store,
    secrets_path,
)

P = Path("/x/secrets.env")


@pytest.fixture(autouse=True)
def _forget_registered() -> Any:
    yield
    redaction.clear_secrets()


def parse(text: str) -> dict[str, str]:
    return parse_secrets(text.encode(), P)[0]


# ------------------------------------------------------------------------ the grammar
@pytest.mark.parametrize(("text", "expected"), [
    ("A=1", {"A": "1"}),
    ("   A=1", {"A": "1"}),                                # leading space trimmed
    ("\n\n# comment\n   # indented comment\nA=1\n", {"A": "1"}),
    ("export A=1", {"A": "1"}),
    ("export  A=1", {"A": "1"}),                           # key is trimmed after `export `
    ("A = 1", {"A": "1"}),                                 # key trimmed, value's lead trimmed
    ("A=b=c", {"A": "b=c"}),                               # split at the first '='
    ("_a9=x", {"_a9": "x"}),
    ("A=", {"A": ""}),
    ("A=  value with spaces   ", {"A": "value with spaces"}),  # unquoted: trailing trimmed
    ("A=x # not a comment", {"A": "x # not a comment"}),   # no inline comments
    ("A=$HOME/${B}", {"A": "$HOME/${B}"}),                 # no expansion
    ('A="a\\nb\\rc\\td\\\\e\\"f"', {"A": "a\nb\rc\td\\e\"f"}),
    ('A="  padded  "   ', {"A": "  padded  "}),           # whitespace after the quote is fine
    ('A=""', {"A": ""}),
    ("A='lit\\n $X \"q\"'", {"A": 'lit\\n $X "q"'}),       # single quotes: literal
    ("A='#x'  ", {"A": "#x"}),
    ("A=1\r\nB=2\r\n", {"A": "1", "B": "2"}),              # CRLF files
    ("A=1\nA=2", {"A": "2"}),                              # last wins
    ("A=é€", {"A": "é€"}),
])
def test_grammar_accepts(text: str, expected: dict[str, str]) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("JUSTAKEY", 1, "no '='"),
    ("A=1\n\n# c\nnope", 4, "no '='"),
    ("1A=x", 1, "the key is not a valid name"),
    ("A-B=x", 1, "the key is not a valid name"),
    ("=x", 1, "the key is not a valid name"),
    ("export=x", 1, None),                                 # `export` alone is a key: valid
    ('A="a\\qb"', 1, "unsupported escape \\q"),
    ('A="a\\$b"', 1, "unsupported escape \\$"),
    ('A="open', 1, "unterminated double-quoted value"),
    ('A="ends in backslash\\', 1, "unterminated double-quoted value"),
    ("A='open", 1, "unterminated single-quoted value"),
    ('A="x" y', 1, "text after the closing quote"),
    ("B=1\nA='x'y", 2, "text after the closing quote"),
])
def test_grammar_errors_name_the_line(text: str, line: int, reason: str | None) -> None:
    if reason is None:
        assert parse(text) == {"export": "x"}
        return
    with pytest.raises(SecretsError) as caught:
        parse(text)
    assert caught.value.line == line
    assert caught.value.message.startswith(f"invalid line {line} in {P}: ")
    assert reason in caught.value.message


def test_errors_and_warnings_never_show_a_value() -> None:
    for text in ('TOKEN="s3cr3tvalue\\x"', "TOKEN='s3cr3tvalue", 's3cr3tvalue', '9s3cr3tvalue=1',
                 "TOKEN='s3cr3tvalue' trailing"):
        with pytest.raises(SecretsError) as caught:
            parse(text)
        assert "s3cr3tvalue" not in caught.value.message
    values, warnings = parse_secrets(b"TOKEN=s3cr3tvalue1\nTOKEN=s3cr3tvalue2\n", P)
    assert values == {"TOKEN": "s3cr3tvalue2"}
    assert warnings == [f"duplicate key TOKEN in {P} (lines 1 and 2): the last one wins"]


def test_a_nul_byte_is_a_located_error_not_a_failed_exec_later() -> None:
    for data in (b"A=1\nB=abc\0defghij\n", b"A=1\nB='x\0y'\n", b"A=1\nB\0=1\n"):
        with pytest.raises(SecretsError, match=r"invalid line 2 in .*: contains a NUL byte") as c:
            parse_secrets(data, P)
        assert "abc" not in c.value.message and "defghij" not in c.value.message


def test_invalid_utf8_is_a_located_error() -> None:
    with pytest.raises(SecretsError, match=r"invalid line 2 in .*: not valid UTF-8"):
        parse_secrets(b"A=1\nB=\xff\xfe\n", P)


# ------------------------------------------------------------------------ the file
def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o700 | 0o010, 0o777])
def test_group_or_world_bits_are_refused_with_s6s_message(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "secrets.env", "A=1\n", mode)
    with pytest.raises(SecretsError) as caught:
        read_store(path)
    assert caught.value.message == (
        f"insecure permissions on {path}: mode is {mode:04o}, must be owner-only (no "
        f"group/world bits — e.g. 0600). run: chmod 600 {path}")


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700, 0o000])
def test_owner_only_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "secrets.env", "TOKEN=abcd\n", mode)
    assert dict(read_store(path)) == {"TOKEN": "abcd"}  # root reads 0000 too


def test_a_symlink_is_followed_and_its_targets_mode_checked(tmp_path: Path) -> None:
    target = write(tmp_path / "dotfiles-secrets", "TOKEN=abcd\n", 0o600)
    link = tmp_path / "secrets.env"
    link.symlink_to(target)
    assert read_store(link).get("TOKEN") == "abcd"
    target.chmod(0o644)
    with pytest.raises(SecretsError, match="mode is 0644"):
        read_store(link)
    target.unlink()
    with pytest.raises(SecretsError, match="symlink to a file that does not exist"):
        read_store(link)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_store(tmp_path / "secrets.env")
    with pytest.raises(FileNotFoundError):  # a home that is a file: still "no secrets"
        (tmp_path / "plain").write_text("")
        read_store(tmp_path / "plain" / "secrets.env")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    os.mkfifo(path, 0o600)
    started = time.monotonic()
    with pytest.raises(SecretsError, match="it is a named pipe, not a file"):
        read_store(path)
    assert time.monotonic() - started < 5


def test_a_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    path.mkdir(mode=0o700)
    with pytest.raises(SecretsError, match="it is a directory, not a file"):
        read_store(path)


def test_a_huge_file_is_refused_reading_only_a_bounded_prefix(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    with path.open("wb") as f:  # 1 GiB, sparse: costs no disk
        f.truncate(1 << 30)
    path.chmod(0o600)
    with pytest.raises(SecretsError, match="larger than 1 MiB"):
        read_store(path)


def test_dev_zero_behind_a_link_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "secrets.env"
    link.symlink_to("/dev/zero")
    with pytest.raises(SecretsError, match="character device"):
        read_store(link)


# ------------------------------------------------------------------------ precedence
def test_path_precedence(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    default = home.root / "secrets.env"
    assert secrets_path(home, None, {}) == default
    assert secrets_path(home, Config(), {"DOTAGENT_SECRETS_FILE": "/e/s.env"}) == \
        Path("/e/s.env")
    assert secrets_path(home, None, {"DOTAGENT_SECRETS_FILE": "rel/s.env"}) == default
    cfg = Config(secrets=SecretsSection(file="/c/s.env"))
    assert secrets_path(home, cfg, {"DOTAGENT_SECRETS_FILE": "/e/s.env"}) == Path("/c/s.env")
    rel = Config(secrets=SecretsSection(file="c/s.env"))  # config.py blanks it; even if not
    assert secrets_path(home, rel, {"DOTAGENT_SECRETS_FILE": "/e/s.env"}) == Path("/e/s.env")


def test_relative_config_file_is_warned_and_ignored(tmp_path: Path) -> None:
    from dotagent.config import load_config

    (tmp_path / "config.toml").write_text('[secrets]\nfile = "relative/secrets.env"\n')
    result = load_config(tmp_path)
    assert result.config is not None and result.config.secrets.file == ""
    assert any("not an absolute path; ignored" in str(w) for w in result.warnings)
    write(tmp_path / "secrets.env", "A=from-home\n")
    assert load_secrets(tmp_path, result.config, {}).get("A") == "from-home"


def test_relative_env_override_is_said_and_ignored(tmp_path: Path) -> None:
    write(tmp_path / "secrets.env", "A=from-home\n")
    said: list[str] = []
    store = load_secrets(tmp_path, None, {"DOTAGENT_SECRETS_FILE": "x.env"}, say=said.append)
    assert store.get("A") == "from-home"
    assert any("DOTAGENT_SECRETS_FILE='x.env' is not an absolute path; ignored" in s
               for s in said)


# ------------------------------------------------------------------------ op://
def fake_op(bin_dir: Path, body: str) -> dict[str, str]:
    bin_dir.mkdir(exist_ok=True)
    op = bin_dir / "op"
    op.write_text(f"#!{sys.executable}\nimport sys, time, os\n{body}\n")
    op.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_op_references_are_resolved_through_op_read(tmp_path: Path) -> None:
    env = fake_op(tmp_path / "bin", (
        "log = open(os.path.join(os.path.dirname(sys.argv[0]), 'calls'), 'a')\n"
        "log.write(repr(sys.argv[1:]) + ' ' + repr(sys.stdin.read()) + '\\n')\n"
        "sys.stdout.write('resolved-' + sys.argv[-1].rsplit('/', 1)[-1])\n"))
    path = write(tmp_path / "secrets.env",
                 "A=op://vault/item/field\nB=op://vault/only-one\nC='op://v/i/f2'\n")
    store = read_store(path, env)
    assert dict(store) == {"A": "resolved-field", "B": "op://vault/only-one",
                           "C": "resolved-f2"}
    assert store.unresolved == 0
    calls = (tmp_path / "bin" / "calls").read_text().splitlines()
    assert calls == ["['read', '--no-newline', 'op://vault/item/field'] ''",
                     "['read', '--no-newline', 'op://v/i/f2'] ''"]


def test_an_op_failure_drops_the_key_and_is_counted(tmp_path: Path) -> None:
    env = fake_op(tmp_path / "bin", "print('[ERROR] item not found', file=sys.stderr)\n"
                                    "sys.exit(1)")
    path = write(tmp_path / "secrets.env", "A=op://vault/item/field\nB=plainvalue\n")
    audit = AuditLog(Home(tmp_path))
    said: list[str] = []
    store = load_secrets(tmp_path, None, env, audit=audit, say=said.append)
    assert dict(store) == {"B": "plainvalue"} and store.unresolved == 1
    assert any("secret A in" in s and "op exited 1" in s and "A is left out" in s
               for s in said)
    assert loaded_events(tmp_path) == [
        ("secrets_loaded", {"path": str(path), "key_count": 1, "unresolved_references": 1})]


def test_a_hanging_op_is_bounded_by_the_timeout(tmp_path: Path) -> None:
    env = fake_op(tmp_path / "bin", "import subprocess\n"
                                    "subprocess.Popen(['sleep', '300'])\n"  # a grandchild too
                                    "time.sleep(300)")
    path = write(tmp_path / "secrets.env", "A=op://vault/item/field\n")
    started = time.monotonic()
    store = read_store(path, env, op_timeout=0.5)
    assert time.monotonic() - started < 10
    assert len(store) == 0 and store.unresolved == 1
    assert "did not answer within 0.5 s" in store.warnings[0]


def test_op_missing_from_path(tmp_path: Path) -> None:
    path = write(tmp_path / "secrets.env", "A=op://vault/item/field\n")
    store = read_store(path, {"PATH": str(tmp_path / "empty")})
    assert store.unresolved == 1 and "`op` is not on PATH" in store.warnings[0]


# ------------------------------------------------------------------------ loading
def loaded_events(home: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        lines = (home / "audit.log").read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        event = json.loads(line)["event"]
        kind = event.pop("event_type")
        if kind.startswith("secrets_"):
            event.pop("ts", None)
            out.append((kind, event))
    return out


def test_load_registers_values_and_audits_counts_only(tmp_path: Path) -> None:
    path = write(tmp_path / "secrets.env", "TOKEN=tok-abcdef-123\nSHORT=ab\n")
    store = load_secrets(tmp_path, None, {}, audit=AuditLog(Home(tmp_path)))
    assert store.names() == ["SHORT", "TOKEN"] and len(store) == 2 and store.path == path
    assert store.get("TOKEN") == "tok-abcdef-123" and store.get("NOPE") is None
    assert redaction.redact("x tok-abcdef-123 y") == "x [REDACTED] y"
    assert loaded_events(tmp_path) == [
        ("secrets_loaded", {"path": str(path), "key_count": 2, "unresolved_references": 0})]
    assert "tok-abcdef" not in (tmp_path / "audit.log").read_text()
    assert "tok-abcdef" not in repr(store)


def test_missing_at_start_audits_nothing(tmp_path: Path) -> None:
    store = load_secrets(tmp_path, None, {}, audit=AuditLog(Home(tmp_path)))
    assert len(store) == 0 and store.path is None and store.refused is None
    assert loaded_events(tmp_path) == []


def test_refusal_is_audited_critical_and_the_store_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path / "secrets.env", "A=1\nbroken\n")
    said: list[str] = []
    store = load_secrets(tmp_path, None, {}, audit=AuditLog(Home(tmp_path)), say=said.append)
    assert len(store) == 0 and store.refused == f"invalid line 2 in {path}: no '=' (expected " \
        "KEY=value)"
    assert loaded_events(tmp_path) == [("secrets_refused", {"path": str(path),
                                                            "reason": store.refused})]
    line = json.loads((tmp_path / "audit.log").read_text().splitlines()[-1])
    assert line["severity"] == "critical"
    assert said == [f"[dotagent] error: secrets refused: {store.refused}\n"]


def test_reload_failures_drop_the_previous_store(tmp_path: Path) -> None:
    audit = AuditLog(Home(tmp_path))
    path = write(tmp_path / "secrets.env", "A=first-value\n")
    first = load_secrets(tmp_path, None, {}, audit=audit)
    path.chmod(0o644)
    second = load_secrets(tmp_path, None, {}, audit=audit, previous=first)
    assert len(second) == 0
    assert second.refused is not None and second.refused.endswith("; previous store dropped")
    # A store that was itself refused is not "a loaded store": no second "dropped".
    third = load_secrets(tmp_path, None, {}, audit=audit, previous=second)
    assert third.refused is not None and not third.refused.endswith("dropped")
    path.chmod(0o600)
    fourth = load_secrets(tmp_path, None, {}, audit=audit, previous=third)
    path.unlink()
    fifth = load_secrets(tmp_path, None, {}, audit=audit, previous=fourth)
    assert len(fifth) == 0
    sixth = load_secrets(tmp_path, None, {}, audit=audit, previous=fifth)  # still missing
    assert sixth.refused is None
    kinds = [(k, e.get("reason")) for k, e in loaded_events(tmp_path)]
    assert kinds == [
        ("secrets_loaded", None),
        ("secrets_refused", first_mode_reason(path, 0o644) + "; previous store dropped"),
        ("secrets_refused", first_mode_reason(path, 0o644)),
        ("secrets_loaded", None),
        ("secrets_refused", "file no longer exists; previous store dropped"),
    ]


def first_mode_reason(path: Path, mode: int) -> str:
    return (f"insecure permissions on {path}: mode is {mode:04o}, must be owner-only (no "
            f"group/world bits — e.g. 0600). run: chmod 600 {path}")


def test_empty_store() -> None:
    store = SecretStore.empty()
    assert len(store) == 0 and store.names() == [] and store.get("A") is None
    assert store.path is None and store.unresolved == 0


def test_an_op_answer_with_a_nul_byte_is_left_out(tmp_path: Path) -> None:
    env = fake_op(tmp_path / "bin", "sys.stdout.write('abc\\0defghij')")
    path = write(tmp_path / "secrets.env", "A=op://vault/item/field\nB=plainvalue\n")
    store = read_store(path, env)
    assert dict(store) == {"B": "plainvalue"} and store.unresolved == 1
    assert any("op printed a NUL byte" in w for w in store.warnings)


def test_an_op_whose_helper_leaves_its_group_holding_stdout_is_bounded(tmp_path: Path) -> None:
    # Before: after killing op's group at the deadline, the store waited for EOF on op's
    # stdout, which a helper in a session of its own held open: the load never returned.
    env = fake_op(tmp_path / "bin", "import subprocess\n"
                                    "subprocess.Popen(['setsid', 'sleep', '30'])\n"
                                    "time.sleep(300)")
    path = write(tmp_path / "secrets.env", "A=op://vault/item/field\nB=plainvalue\n")
    started = time.monotonic()
    store = read_store(path, env, op_timeout=0.5)
    assert time.monotonic() - started < 10
    assert dict(store) == {"B": "plainvalue"} and store.unresolved == 1
