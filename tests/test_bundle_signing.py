"""Signed bundles: keygen, package --sign, and the device refusing what the key did not sign.

The attack these tests replay is the one a hash-only manifest cannot stop: change a file in the zip,
recompute its sha256 in manifest.json, rezip. Without a key that bundle verifies; with --key it must not.
"""

from __future__ import annotations

import hashlib
import json
import stat
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from compressor.bundle.package import package
from compressor.bundle.signing import PASSPHRASE_ENV, keygen
from compressor.commands.cli import cli as compressor_cli
from compressor.runtime import cli
from compressor.runtime.manifest import MIN_RUNTIME
from compressor.runtime.signing import KEY_ENV, SIGNATURE


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    return keygen(folder / "release.key"), keygen(folder / "attacker.key")


@pytest.fixture(scope="module")
def signed(int8_run, keys):
    return Path(package(int8_run, int8_run.parent / "signed.zip", sign=keys[0]["private_key"])["bundle"])


@pytest.fixture(scope="module")
def unsigned(int8_run):
    return Path(package(int8_run, int8_run.parent / "unsigned.zip")["bundle"])


def run(capsys, *args):
    code = cli.run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, fragment, *args):
    code, out, err = run(capsys, *args)
    assert code == 2 and not out and fragment in err and len(err.strip().splitlines()) == 1, (code, out, err)
    assert "Traceback" not in err


def rewrite(src: Path, dst: Path, files=None, manifest=None, drop=(), signature=None) -> Path:
    """Copy a bundle as an attacker would: replace files (their sha256 recomputed in the manifest),
    edit the manifest, drop entries, or put another signature in."""
    with zipfile.ZipFile(src) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    m = json.loads(entries["manifest.json"])
    for name, data in (files or {}).items():
        entries[name] = data
        m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    if manifest is not None:
        manifest(m)
    entries["manifest.json"] = (json.dumps(m, indent=2) + "\n").encode()
    if signature is not None:
        entries[SIGNATURE] = signature(entries["manifest.json"])
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in entries.items():
            if name not in drop:
                out.writestr(name, data)
    return dst


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_replaces_one(keys, tmp_path):
    release, attacker = keys
    private, public = Path(release["private_key"]), Path(release["public_key"])
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and public.name == "release.key.pub"
    assert b"BEGIN PRIVATE KEY" in private.read_bytes() and b"BEGIN PUBLIC KEY" in public.read_bytes()
    assert len(release["key_id"]) == 16 and release["key_id"] != attacker["key_id"] and not release["encrypted"]
    before = private.read_bytes()
    result = CliRunner().invoke(compressor_cli, ["keygen", "--out", str(private)])
    assert result.exit_code == 2 and "already exists; keygen never replaces a key" in result.output
    assert private.read_bytes() == before


def test_signed_bundle_verifies_with_its_key(capsys, signed, keys):
    release = keys[0]
    code, out, _ = run(capsys, "verify", signed, "--key", release["public_key"], "--json")
    report = json.loads(out)
    assert code == 0 and report["signature"] == {"key_id": release["key_id"], "verified": True}
    assert report["bundle_schema"] == "compressor.bundle/2"
    with zipfile.ZipFile(signed) as z:
        manifest = json.loads(z.read("manifest.json"))
        assert len(z.read(SIGNATURE)) == 64 and SIGNATURE not in manifest["files"]
    assert manifest["signature"] == {"algorithm": "ed25519", "key_id": release["key_id"], "file": SIGNATURE}
    assert manifest["min_runtime"] == MIN_RUNTIME
    code, out, _ = run(capsys, "validate", signed, "--key", release["public_key"], "--runs", "3")
    assert code == 0 and f"signature    verified, Ed25519 key {release['key_id']}" in out
    code, out, _ = run(capsys, "verify", signed)  # no key: it says the signature was not checked
    assert code == 0 and "NOT checked: pass --key PUB" in out


def test_tampered_manifest_with_recomputed_hashes_is_refused_under_key(capsys, signed, keys, tmp_path):
    release = keys[0]
    with zipfile.ZipFile(signed) as z:
        labels = z.read("labels.txt")
    forged = rewrite(signed, tmp_path / "forged.zip", files={"labels.txt": labels.replace(b"3", b"8")})
    assert run(capsys, "verify", forged)[0] == 0  # what hashes alone allow: the forgery verifies
    refused(capsys, "the signature does not match key", "verify", forged, "--key", release["public_key"])
    refused(capsys, "the signature does not match key", "validate", forged, "--key", release["public_key"])
    loose = rewrite(signed, tmp_path / "loose.zip", manifest=lambda m: m["models"][0]["self_test"].update(atol=0.01))
    refused(capsys, "the signature does not match key", "verify", loose, "--key", release["public_key"])


def test_bundle_resigned_by_another_key_or_stripped_is_refused(capsys, signed, unsigned, keys, tmp_path):
    from compressor.bundle.signing import load_private_key, signature_block

    release, attacker = keys
    attacker_key = load_private_key(attacker["private_key"])
    resigned = rewrite(
        signed,
        tmp_path / "resigned.zip",
        manifest=lambda m: m.update(signature=signature_block(attacker_key)),
        signature=attacker_key.sign,
    )
    assert run(capsys, "verify", resigned, "--key", attacker["public_key"])[0] == 0
    refused(capsys, "the signature does not match key", "verify", resigned, "--key", release["public_key"])
    stripped = rewrite(signed, tmp_path / "stripped.zip", drop={SIGNATURE})
    refused(capsys, "is not signed and a key was given", "verify", stripped, "--key", release["public_key"])
    refused(capsys, "declares a signature but manifest.sig is missing", "verify", stripped)
    refused(capsys, "is not signed and a key was given", "verify", unsigned, "--key", release["public_key"])
    declared_none = rewrite(signed, tmp_path / "none.zip", manifest=lambda m: m.update(signature=None))
    refused(capsys, "contains manifest.sig, which manifest.json does not list", "verify", declared_none)


def test_key_pinned_in_the_environment_applies_to_every_command(capsys, unsigned, signed, keys, monkeypatch):
    monkeypatch.setenv(KEY_ENV, keys[0]["public_key"])
    refused(capsys, "is not signed and a key was given", "validate", unsigned)
    refused(capsys, "is not signed and a key was given", "bench", unsigned, "--runs", "3")
    assert run(capsys, "bench", signed, "--runs", "3")[0] == 0


def test_schema_1_bundles_still_verify(capsys, unsigned, keys, tmp_path):
    def as_v1(m):
        m["schema"] = "compressor.bundle/1"
        del m["min_runtime"], m["signature"]

    old = rewrite(unsigned, tmp_path / "v1.zip", manifest=as_v1)
    code, out, _ = run(capsys, "verify", old)
    assert code == 0 and "(compressor.bundle/1)" in out and "signature: none (unsigned bundle)" in out
    assert run(capsys, "validate", old, "--runs", "3")[0] == 0
    refused(capsys, "is not signed and a key was given", "verify", old, "--key", keys[0]["public_key"])


def test_newer_bundle_and_bad_keys_are_one_line_errors(capsys, signed, unsigned, int8_run, keys, tmp_path):
    future = rewrite(unsigned, tmp_path / "future.zip", manifest=lambda m: m.update(min_runtime="99.0"))
    refused(capsys, "this bundle needs compressor-runtime >= 99.0", "verify", future)
    refused(capsys, "is a private key; pass the public key", "verify", signed, "--key", keys[0]["private_key"])
    garbage = tmp_path / "garbage.pub"
    garbage.write_bytes(b"\x00" * 100)
    refused(capsys, "is not a PEM public key", "verify", signed, "--key", garbage)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = tmp_path / "ec.pub"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    refused(capsys, "not Ed25519", "verify", signed, "--key", other)
    model = int8_run / "int8" / "model.tflite"
    refused(capsys, "is a bare model", "bench", model, "--key", keys[0]["public_key"])


def test_encrypted_key_needs_its_passphrase(int8_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse")
    made = keygen(tmp_path / "enc.key")
    assert made["encrypted"] and b"ENCRYPTED PRIVATE KEY" in Path(made["private_key"]).read_bytes()
    monkeypatch.delenv(PASSPHRASE_ENV)
    runner = CliRunner()
    out = tmp_path / "b.zip"
    result = runner.invoke(compressor_cli, ["package", str(int8_run), "--out", str(out), "--sign", made["private_key"]])
    assert result.exit_code == 2 and f"it is encrypted: set ${PASSPHRASE_ENV}" in result.output and not out.exists()
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    result = runner.invoke(compressor_cli, ["package", str(int8_run), "--out", str(out), "--sign", made["private_key"]])
    assert result.exit_code == 2 and "wrong passphrase" in result.output and not out.exists()
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse")
    result = runner.invoke(compressor_cli, ["package", str(int8_run), "--out", str(out), "--sign", made["private_key"]])
    assert result.exit_code == 0, result.output
    assert run(capsys, "verify", out, "--key", made["public_key"])[0] == 0
