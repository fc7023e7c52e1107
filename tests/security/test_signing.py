"""Signed manifests (issue 11 item 4) through the real CLI: `dotagent key generate`,
`dotagent sign`, and `[trust] require_signed_manifests` refusing what does not verify in
`run-now`, `run`, `tick` and `doctor`. Interop is checked with the real `minisign` CLI
(Debian package `minisign`, installed by .ci/run) both ways; a missing tool fails."""

from __future__ import annotations

import hashlib
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from dotagent.config import parse_config
from plugin_kit import audit_events

from helpers import dotagent, sh_agent

MINISIGN = shutil.which("minisign")


def _minisign() -> str:
    assert MINISIGN is not None, "the minisign CLI is required (apt-get install minisign)"
    return MINISIGN


def _generate(env: dict[str, str]) -> str:
    made = dotagent("key", "generate", "--no-password", env=env)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def _require(home: Path, *keys: str) -> None:
    listed = ", ".join(f'"{k}"' for k in keys)
    (home / "config.toml").write_text(
        f"[trust]\nrequire_signed_manifests = true\ntrusted_public_keys = [{listed}]\n")


def _agent(home: Path, name: str = "job") -> Path:
    d = sh_agent(home / "agents", name, f"echo ran > {home / (name + '.ran')}")
    return d / "agent.toml"


def _minisign_key(tmp_path: Path) -> tuple[Path, str]:
    """A key pair made by `minisign -G -W` (no password); (secret key path, public line)."""
    sk, pk = tmp_path / "m.key", tmp_path / "m.pub"
    made = subprocess.run([_minisign(), "-G", "-W", "-s", str(sk), "-p", str(pk)],
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    return sk, pk.read_text().splitlines()[1]


def test_key_generate_prints_the_public_key_and_keeps_the_secret_private(
        dotagent_home: Path, cli_env: dict[str, str]) -> None:
    line = _generate(cli_env)
    keys = dotagent_home / "keys"
    public = (keys / "dotagent.pub").read_text().splitlines()
    assert line == public[1] and line.startswith("RW")
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE((keys / "dotagent.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((keys / "dotagent.pub").stat().st_mode) == 0o600
    secret_b64 = (keys / "dotagent.key").read_text().splitlines()[1]
    again = dotagent("key", "generate", "--no-password", env=cli_env)
    assert again.returncode == 73
    assert "already exists" in again.stderr and "--force" in again.stderr
    assert secret_b64 not in again.stdout + again.stderr
    assert (keys / "dotagent.key").read_text().splitlines()[1] == secret_b64
    forced = dotagent("key", "generate", "--no-password", "--force", env=cli_env)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() != line
    assert (keys / "dotagent.key").read_text().splitlines()[1] not in forced.stdout


def test_a_password_protected_key_signs_only_with_its_password(
        dotagent_home: Path, cli_env: dict[str, str]) -> None:
    made = subprocess.run(["dotagent", "key", "generate"], input="s3cret-pass\n",
                          capture_output=True, text=True, env=cli_env, check=False)
    assert made.returncode == 0, made.stderr
    assert "password-protected" in made.stderr and "NOT" not in made.stderr
    assert "s3cret-pass" not in made.stdout + made.stderr
    manifest = _agent(dotagent_home)
    wrong = subprocess.run(["dotagent", "sign", "job"], input="nope\n", capture_output=True,
                           text=True, env=cli_env, check=False)
    assert wrong.returncode == 2 and "wrong password" in wrong.stderr
    assert not (manifest.parent / "agent.toml.minisig").exists()
    right = subprocess.run(["dotagent", "sign", "job"], input="s3cret-pass\n",
                           capture_output=True, text=True, env=cli_env, check=False)
    assert right.returncode == 0, right.stderr
    verified = subprocess.run([_minisign(), "-Vm", str(manifest), "-P", made.stdout.strip()],
                              capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stderr


def test_our_signature_verifies_with_the_minisign_cli(dotagent_home: Path,
                                                      cli_env: dict[str, str]) -> None:
    line = _generate(cli_env)
    manifest = _agent(dotagent_home)
    signed = dotagent("sign", "job", env=cli_env)
    assert signed.returncode == 0, signed.stderr
    sig = manifest.parent / "agent.toml.minisig"
    sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert signed.stdout == f"signed 'job': {sig} (manifest sha256 {sha[:12]})\n"
    ok = subprocess.run([_minisign(), "-Vm", str(manifest), "-P", line],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "agent:job" in ok.stdout and f"sha256:{sha}" in ok.stdout
    # Editing the signed manifest invalidates the signature, for minisign too.
    manifest.write_text(manifest.read_text() + "# edited\n")
    bad = subprocess.run([_minisign(), "-Vm", str(manifest), "-P", line],
                         capture_output=True, text=True, check=False)
    assert bad.returncode != 0


@pytest.mark.parametrize("legacy", [False, True], ids=["prehashed", "legacy"])
def test_a_minisign_cli_signature_is_accepted(dotagent_home: Path, cli_env: dict[str, str],
                                              tmp_path: Path, legacy: bool) -> None:
    sk, line = _minisign_key(tmp_path)
    manifest = _agent(dotagent_home)
    _require(dotagent_home, line)
    signed = subprocess.run([_minisign(), "-S", *(["-l"] if legacy else []), "-s", str(sk),
                             "-m", str(manifest)], capture_output=True, text=True, check=False)
    assert signed.returncode == 0, signed.stderr
    ran = dotagent("run-now", "job", env=cli_env)
    assert ran.returncode == 0, ran.stderr
    assert (dotagent_home / "job.ran").read_text() == "ran\n"
    assert audit_events(dotagent_home, "manifest_signature_invalid") == []
    assert len(audit_events(dotagent_home, "agent_run")) == 1


def test_required_signatures_refuse_unsigned_agents_in_every_command(
        dotagent_home: Path, cli_env: dict[str, str]) -> None:
    line = _generate(cli_env)
    _require(dotagent_home, line)
    manifest = _agent(dotagent_home)
    sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
    for argv in (["run-now", "job"], ["run", "job"]):
        refused = dotagent(*argv, env=cli_env)
        assert refused.returncode == 77, (argv, refused.stderr)
        assert refused.stderr.startswith(
            "Error: agent 'job' is not run: unsigned (agent.toml.minisig does not exist)")
    for _ in range(2):
        tick = dotagent("tick", env=cli_env)
        assert tick.returncode == 0, tick.stderr
        assert "agent 'job' is not run: unsigned" in tick.stderr
    assert not (dotagent_home / "job.ran").exists()
    assert audit_events(dotagent_home, "agent_run") == []
    # Reported once per distinct content and reason, however many commands refused it.
    (event,) = audit_events(dotagent_home, "manifest_signature_invalid")
    assert event == {"severity": "critical", "event_type": "manifest_signature_invalid",
                     "agent": "job", "path": str(manifest.resolve()), "sha256": sha,
                     "reason": "unsigned (agent.toml.minisig does not exist)"}
    doctor = dotagent("doctor", env=cli_env)
    assert doctor.returncode != 0
    assert ("unsigned (agent.toml.minisig does not exist): [trust] require_signed_manifests "
            "is on, so this agent does not run") in doctor.stdout
    # Signed, it runs; doctor is content.
    assert dotagent("sign", "job", env=cli_env).returncode == 0
    assert dotagent("run-now", "job", env=cli_env).returncode == 0
    assert (dotagent_home / "job.ran").read_text() == "ran\n"
    assert "require_signed_manifests" not in dotagent("doctor", env=cli_env).stdout


def test_an_edited_signed_manifest_is_refused(dotagent_home: Path,
                                              cli_env: dict[str, str]) -> None:
    _require(dotagent_home, _generate(cli_env))
    manifest = _agent(dotagent_home)
    assert dotagent("sign", "job", env=cli_env).returncode == 0
    manifest.write_text(manifest.read_text().replace("echo ran", "echo owned"))
    refused = dotagent("run-now", "job", env=cli_env)
    assert refused.returncode == 77
    assert "bad signature: agent.toml.minisig does not match the manifest's content" in \
        refused.stderr
    assert not (dotagent_home / "job.ran").exists()
    (event,) = audit_events(dotagent_home, "manifest_signature_invalid")
    assert event["sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert str(event["reason"]).startswith("bad signature: ")


def test_a_signature_by_an_untrusted_key_or_garbage_is_refused(
        dotagent_home: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    _generate(cli_env)
    _sk, other = _minisign_key(tmp_path)
    _require(dotagent_home, other)  # trusts only the minisign key, not ours
    manifest = _agent(dotagent_home)
    assert dotagent("sign", "job", env=cli_env).returncode == 0
    ours = (dotagent_home / "keys" / "dotagent.pub").read_text().splitlines()[0].split()[-1]
    refused = dotagent("run-now", "job", env=cli_env)
    assert refused.returncode == 77
    assert f"signed by key {ours}, which is not in [trust].trusted_public_keys" in \
        refused.stderr
    (manifest.parent / "agent.toml.minisig").write_text("not a signature\n")
    garbage = dotagent("run-now", "job", env=cli_env)
    assert garbage.returncode == 77
    assert "agent.toml.minisig is not a minisign signature" in garbage.stderr
    reasons = [e["reason"] for e in audit_events(dotagent_home, "manifest_signature_invalid")]
    assert len(reasons) == 2 and "not in [trust]" in str(reasons[0])
    assert not (dotagent_home / "job.ran").exists()


def test_unsigned_agents_run_when_signatures_are_not_required(
        dotagent_home: Path, cli_env: dict[str, str]) -> None:
    _agent(dotagent_home)
    assert dotagent("run-now", "job", env=cli_env).returncode == 0
    assert (dotagent_home / "job.ran").read_text() == "ran\n"
    assert audit_events(dotagent_home, "manifest_signature_invalid") == []


def test_sign_without_a_key_says_how_to_make_one(dotagent_home: Path,
                                                 cli_env: dict[str, str]) -> None:
    _agent(dotagent_home)
    out = dotagent("sign", "job", env=cli_env)
    assert out.returncode == 1  # a StateError, as every command without an agent status
    assert "keys/dotagent.key does not exist; run `dotagent key generate` first" in out.stderr
    assert "Traceback" not in out.stderr


def test_trust_settings_are_validated_with_locations(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    bad = parse_config(b'[trust]\nrequire_signed_manifests = true\n'
                       b'trusted_public_keys = ["RWnotakey"]\n', path)
    assert [str(p) for p in bad.errors] == [
        f"{path}:3: trust.trusted_public_keys[0]: \"RWnotakey\" is not base64 (expected the "
        "second line of a minisign .pub file, \"RW…\")"]
    empty = parse_config(b"[trust]\nrequire_signed_manifests = true\n", path)
    assert len(empty.errors) == 1
    assert "`trusted_public_keys` is empty: no manifest could run" in str(empty.errors[0])
    typo = parse_config(b"[trust]\nrequire_signed = true\n", path)
    assert typo.errors == [] and "did you mean 'require_signed_manifests'" in \
        str(typo.warnings[0])
