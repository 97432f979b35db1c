"""Bundle signatures: Ed25519 over the exact bytes of manifest.json.

The manifest holds the sha256 of every other file, so one signature over it covers the whole
bundle; without it, whoever can rewrite the zip can rewrite the manifest and every hash with it.
The signature is detached (``manifest.sig``: the 64 raw bytes of RFC 8032 Ed25519) and covers the
manifest's bytes as stored, not a re-serialisation, so an app in any language verifies it with
``Ed25519.verify(public_key, signature, bytes of manifest.json)`` and no JSON canonicalisation.

Keys are PEM files: the public key as SubjectPublicKeyInfo, the private key as PKCS#8 (what
``openssl genpkey -algorithm ed25519`` writes too). ``cryptography`` is imported only here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .errors import UserError
from .safe_load import read_text

SIGNATURE = "manifest.sig"
ALGORITHM = "ed25519"
SIGNATURE_BYTES = 64
MAX_KEY_BYTES = 16 << 10  # a PEM Ed25519 key is ~120 bytes; refuse anything that is clearly not one
KEY_ENV = "COMPRESSOR_RUNTIME_KEY"  # a device can pin its key once instead of passing --key every time


def require_cryptography() -> None:
    """Signatures need ``cryptography`` (a dependency of both distributions); say so if it is missing."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise UserError("bundle signatures need the cryptography package: pip install cryptography") from None


def key_id(public_key: Any) -> str:
    """A short fingerprint for reports and manifests: sha256 of the 32 raw public-key bytes, 16 hex digits."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(path: str | os.PathLike) -> Any:
    """The Ed25519 public key in ``path`` (PEM); one-line errors for anything else."""
    require_cryptography()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

    text = read_text(path, "public key", limit=MAX_KEY_BYTES)
    try:
        key = load_pem_public_key(text.encode("ascii", "replace"))
    except (ValueError, TypeError):
        try:  # a private key given where the public one belongs: say so rather than "not a key"
            load_pem_private_key(text.encode("ascii", "replace"), password=None)
            private = True
        except (ValueError, TypeError):
            private = False
        if private:
            raise UserError(
                f"{path} is a private key; pass the public key (the .pub file `compressor keygen` wrote), "
                "and keep the private key off the device"
            ) from None
        raise UserError(f"{path} is not a PEM public key; pass the .pub file `compressor keygen` wrote") from None
    if not isinstance(key, Ed25519PublicKey):
        kind = type(key).__name__.removeprefix("_").removesuffix("PublicKey")
        raise UserError(f"{path} is a {kind} key, not Ed25519; bundles are signed with Ed25519 (compressor keygen)")
    return key


def verify_signature(public_key: Any, data: bytes, signature: bytes, bundle: str) -> None:
    """Raise ``UserError`` unless ``signature`` is ``public_key``'s signature of ``data``."""
    from cryptography.exceptions import InvalidSignature

    if len(signature) != SIGNATURE_BYTES:
        raise UserError(
            f"bundle {bundle}: {SIGNATURE} is {len(signature)} bytes, not an Ed25519 signature; refusing it"
        )
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        raise UserError(
            f"bundle {bundle}: the signature does not match key {key_id(public_key)}: manifest.json was changed "
            "after signing, or another key signed it; refusing the bundle"
        ) from None


def default_key(key: str | os.PathLike | None) -> Path | None:
    """``key`` if given, else the key pinned in $COMPRESSOR_RUNTIME_KEY, else None (no signature required)."""
    chosen = key if key is not None else os.environ.get(KEY_ENV) or None
    return Path(chosen) if chosen is not None else None
