"""Minisign-compatible signing of manifests (issue 11 item 4; docs/security.md).

The key pair lives in `$DOTAGENT_HOME/keys/` (`dotagent.key`, `dotagent.pub`, both 0600): the
secret key is minisign's own format, encrypted with a password (scrypt, as `minisign -G`)
unless it was made with `--no-password`. A signature is `agent.toml.minisig` beside the
manifest, in minisign's format (pre-hashed Ed25519, as `minisign -S` makes by default), so
`minisign -Vm agent.toml -P KEY` verifies it and a signature made by `minisign -S` verifies
here. The trusted comment names the agent and the manifest's sha256 for a reader; what is
checked is the signature over the manifest's exact bytes, by a key in `trusted_public_keys`.

`minisign` (the py-minisign distribution) is imported inside the functions: start-up of every
other command must not pay for cryptography.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotagent.atomicfile import write_atomic
from dotagent.boundedread import read_bounded
from dotagent.config import public_key_problem
from dotagent.errors import ExistsError, StateError, UsageError
from dotagent.paths import Home

__all__ = ["KEY_DIR", "PUBLIC_NAME", "SECRET_NAME", "SIG_SUFFIX", "KeyFiles", "generate_key",
           "key_id_of", "load_secret_key", "public_key_problem", "sign_bytes", "signature_path",
           "verify_bytes"]

KEY_DIR = "keys"
SECRET_NAME = "dotagent.key"
PUBLIC_NAME = "dotagent.pub"
SIG_SUFFIX = ".minisig"
_MAX_SIG = 4096  # a minisign signature is four short lines; anything bigger is not one


@dataclass(frozen=True)
class KeyFiles:
    secret: Path
    public: Path
    public_key: str  # the base64 line ("RW…") to put in trusted_public_keys
    key_id: str  # upper-case hex, as minisign shows it
    encrypted: bool


def _paths(home: Home) -> tuple[Path, Path]:
    return home.join(KEY_DIR, SECRET_NAME), home.join(KEY_DIR, PUBLIC_NAME)


def key_id_of(public_key: str) -> str:
    """The key id minisign shows (upper-case hex, as in its "public key XXXX" comment)."""
    raw = base64.b64decode(public_key.strip())
    return raw[2:10][::-1].hex().upper()


def generate_key(home: Home, *, password: str | None, force: bool) -> KeyFiles:
    """A new key pair in `keys/`; refuses to replace one unless `force`."""
    import minisign

    secret, public = _paths(home)
    if not force and (secret.exists() or secret.is_symlink()):
        raise ExistsError(f"{secret} already exists; `dotagent key generate --force` replaces "
                          "it (manifests signed with the old key then no longer verify)")
    pair = minisign.KeyPair.generate()
    sk, pk = pair.secret_key, pair.public_key
    if password:
        sk.encrypt(password)
    key_id = bytes(pk._keynum_pk.key_id)[::-1].hex().upper()
    sk.untrusted_comment = f"dotagent secret key {key_id}"
    pk.untrusted_comment = f"minisign public key {key_id}"
    line = pk.to_base64().decode()
    write_atomic(secret, bytes(sk) + b"\n")
    write_atomic(public, bytes(pk) + b"\n")
    sk.wipe()
    return KeyFiles(secret, public, line, key_id, bool(password))


def load_secret_key(home: Home, password: Any) -> Any:
    """The secret key, decrypted. `password()` is asked only when the key is encrypted."""
    import minisign

    secret, _public = _paths(home)
    try:
        data = read_bounded(secret, 64 * 1024, follow_links=False)
    except FileNotFoundError:
        raise StateError(f"{secret} does not exist; run `dotagent key generate` first") \
            from None
    except OSError as exc:
        raise StateError(f"cannot read {secret}: {exc.strerror or exc}") from None
    try:
        sk = minisign.SecretKey.from_bytes(data)
    except (minisign.Error, ValueError, IndexError) as exc:
        raise StateError(f"{secret} is not a minisign secret key ({exc})") from None
    if sk.is_encrypted():
        try:
            sk.decrypt(password())
        except minisign.Error:
            raise UsageError(f"wrong password for {secret}") from None
    return sk


def sign_bytes(sk: Any, data: bytes, *, agent: str, sha256: str) -> bytes:
    """A minisign signature of `data` (the .minisig file's bytes)."""
    comment = f"timestamp:{int(time.time())}\tfile:agent.toml\tagent:{agent}\tsha256:{sha256}"
    sig = sk.sign(data, prehash=True, untrusted_comment="signature from dotagent secret key",
                  trusted_comment=comment)
    return bytes(sig) + b"\n"


def signature_path(manifest: Path) -> Path:
    return manifest.with_name(manifest.name + SIG_SUFFIX)


def verify_bytes(data: bytes, sig_path: Path, trusted: tuple[str, ...] | list[str]) -> str | None:
    """None when `sig_path` holds a valid signature of `data` by one of the `trusted` keys;
    otherwise why not, as a phrase ("no signature (… does not exist)", …)."""
    import minisign

    try:
        raw = read_bounded(sig_path, _MAX_SIG, follow_links=True)
    except FileNotFoundError:
        return f"unsigned ({sig_path.name} does not exist)"
    except OSError as exc:
        return f"cannot read {sig_path.name}: {exc.strerror or exc}"
    try:
        sig = minisign.Signature.from_bytes(raw)
    except (minisign.Error, ValueError, IndexError, UnicodeDecodeError) as exc:
        return f"{sig_path.name} is not a minisign signature ({exc})"
    signer = bytes(sig._key_id)[::-1].hex().upper()
    for line in trusted:
        try:
            pk = minisign.PublicKey.from_base64(line)
        except (minisign.Error, ValueError):
            continue  # config validation reports it
        if bytes(pk._keynum_pk.key_id) != bytes(sig._key_id):
            continue
        try:
            pk.verify(data, sig)
        except minisign.Error:
            return (f"bad signature: {sig_path.name} does not match the manifest's content "
                    f"(signed by key {signer}; the manifest changed after signing, or the "
                    "signature was altered)")
        return None
    return f"signed by key {signer}, which is not in [trust].trusted_public_keys"
