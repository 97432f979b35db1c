"""`compressor package`: bundle a compress run for mobile apps."""

from __future__ import annotations

import click

from compressor.commands.app import cli, common, emit, progress


@cli.command("package")
@click.argument("run_dir", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Bundle .zip to write.")
@click.option(
    "--artifact", default=None, help="Recipe artifact to ship (default: the smallest TFLite whose gates passed)."
)
@click.option(
    "--samples", default=16, show_default=True, type=click.IntRange(1, 10000), help="Self-test samples in the bundle."
)
@click.option("--name", default=None, help="Model name in the manifest (default: the trained architecture's name).")
@click.option("--version", "model_version", default="1", show_default=True, help="Model version in the manifest.")
@click.option("--data", default=None, help="Data set of the run's test split (default: the one run.json recorded).")
@click.option("--data-dir", type=click.Path(), help="Folder of the data files (default: the one run.json recorded).")
@click.option("--seed", default=None, type=int, help="Split seed (default: the one run.json recorded).")
@click.option(
    "--sign",
    "sign_key",
    type=click.Path(),
    default=None,
    help="Ed25519 private key (compressor keygen): sign manifest.json; devices check it with --key.",
)
@click.option("--overwrite", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@common
def package_cmd(
    run_dir, out, artifact, samples, name, model_version, data, data_dir, seed, sign_key, overwrite, as_json
):
    """Bundle a compress run for mobile apps: model(s), labels, manifest, self-test samples."""
    from compressor.bundle.package import package

    result = package(
        run_dir,
        out,
        artifact=artifact,
        samples=samples,
        name=name,
        version=model_version,
        data=data,
        data_dir=data_dir,
        seed=seed,
        overwrite=overwrite,
        sign=sign_key,
        progress=progress,
    )
    files = ", ".join(result["manifest"]["files"])
    signed = result["manifest"]["signature"]
    key = " --key PUB" if signed else ""
    emit(
        result,
        as_json,
        f"wrote {out}: {result['artifact']} ({result['reason']}); files: {files}, manifest.json"
        + (f", manifest.sig (Ed25519, key {signed['key_id']})" if signed else " (unsigned)")
        + f"\ncheck it on the device: compressor-runtime verify {out}{key} && compressor-runtime validate {out}{key}",
    )


@cli.command("keygen")
@click.option(
    "--out", required=True, type=click.Path(), help="Private key file to write; the public key goes to OUT.pub."
)
@click.option("--json", "as_json", is_flag=True)
@common
def keygen_cmd(out, as_json):
    """Create an Ed25519 key pair for signing bundles (package --sign OUT; devices verify with --key OUT.pub).

    The private key is written 0600 and encrypted when $COMPRESSOR_SIGNING_PASSPHRASE is set.
    An existing key is never replaced."""
    from compressor.bundle.signing import keygen

    result = keygen(out)
    emit(
        result,
        as_json,
        f"wrote {result['private_key']} (private, {'encrypted' if result['encrypted'] else 'unencrypted'}: keep it "
        f"secret) and {result['public_key']} (for devices); key id {result['key_id']}",
    )
