"""Signing keys and manifest signatures on the packaging side (the device verifies: runtime/signing.py).

Ed25519 (RFC 8032) with ``cryptography``: small keys and signatures (32 and 64 bytes), deterministic,
no parameters to get wrong, verifiable by every platform's crypto library. OpenSSF ``model-signing``
was considered and not used: it signs through Sigstore (OIDC identities, transparency log, network)
and pulls its client stack onto the device, while a bundle needs one offline signature over one file.

The private key is PKCS#8 PEM, written 0600; it is encrypted when $COMPRESSOR_SIGNING_PASSPHRASE is
set (and then needs it to sign). The public key is SubjectPublicKeyInfo PEM, for the device.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from compressor.runtime.atomic import write_bytes
from compressor.runtime.errors import UserError
from compressor.runtime.safe_load import read_text
from compressor.runtime.signing import MAX_KEY_BYTES, key_id, require_cryptography

PASSPHRASE_ENV = "COMPRESSOR_SIGNING_PASSPHRASE"


def keygen(private_path: str | os.PathLike) -> dict:
    """Write a new key pair: ``private_path`` (0600) and ``private_path``.pub; never replaces a key."""
    require_cryptography()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_path = Path(private_path)
    public_path = private_path.with_name(private_path.name + ".pub")
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise UserError(f"{path} already exists; keygen never replaces a key: choose another path")
    key = Ed25519PrivateKey.generate()
    passphrase = os.environ.get(PASSPHRASE_ENV)
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        write_bytes(private_path, private_pem, mode=0o600, exclusive=True)
        write_bytes(public_path, public_pem, exclusive=True)
    except FileExistsError as e:  # created by someone else meanwhile: ours is not half-written
        raise UserError(f"{e.filename} already exists; keygen never replaces a key: choose another path") from None
    return {
        "private_key": str(private_path),
        "public_key": str(public_path),
        "key_id": key_id(key.public_key()),
        "encrypted": bool(passphrase),
    }


def load_private_key(path: str | os.PathLike) -> Any:
    """The Ed25519 private key in ``path``; decrypted with $COMPRESSOR_SIGNING_PASSPHRASE when it is encrypted."""
    require_cryptography()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = read_text(path, "signing key", limit=MAX_KEY_BYTES).encode("ascii", "replace")
    passphrase = os.environ.get(PASSPHRASE_ENV)
    try:
        key = load_pem_private_key(data, password=passphrase.encode() if passphrase else None)
    except TypeError:  # encrypted without a passphrase, or a passphrase for a plain key
        fix = (
            f"it is not encrypted: unset ${PASSPHRASE_ENV}" if passphrase else f"it is encrypted: set ${PASSPHRASE_ENV}"
        )
        raise UserError(f"signing key {path}: {fix}") from None
    except ValueError as e:
        if b"PUBLIC KEY" in data:
            raise UserError(f"{path} is a public key; --sign takes the private key `compressor keygen` wrote") from None
        reason = "wrong passphrase or " if passphrase else ""
        raise UserError(f"signing key {path} cannot be read ({reason}not a PEM private key: {e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"signing key {path} is not an Ed25519 key; create one with `compressor keygen`")
    return key


def signature_block(private_key: Any) -> dict:
    """The manifest's ``signature`` field for bundles this key signs."""
    from compressor.runtime.signing import ALGORITHM, SIGNATURE

    return {"algorithm": ALGORITHM, "key_id": key_id(private_key.public_key()), "file": SIGNATURE}


def sign(private_key: Any, data: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``data``."""
    return private_key.sign(data)
