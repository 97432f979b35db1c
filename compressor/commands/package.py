"""`compressor package`: bundle a compress run for mobile apps."""

from __future__ import annotations

import click

from compressor.commands.app import cli, common, emit, progress
from compressor.commands.data_options import stream_option


@cli.command("package")
@click.argument("run_dir", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Bundle .zip to write (--target mcu: a folder).")
@click.option(
    "--target",
    type=click.Choice(["app", "mcu"]),
    default="app",
    show_default=True,
    help="app: a bundle .zip for phones and edge boards; mcu: C sources for TFLite Micro, proven on its interpreter.",
)
@click.option(
    "--arena-limit-kb",
    type=click.FloatRange(min=0, min_open=True),
    help="--target mcu: refuse a model whose tensor arena (measured + margin) exceeds this.",
)
@click.option(
    "--compress-weights",
    is_flag=True,
    help="--target mcu: ship the weights as TFLite Micro lookup tables (clustered models; outputs checked identical).",
)
@click.option(
    "--flash-limit-kb",
    type=click.FloatRange(min=0, min_open=True),
    help="--target mcu: refuse a model whose flatbuffer is larger than this.",
)
@click.option(
    "--artifact", default=None, help="Recipe artifact to ship (default: the smallest TFLite whose gates passed)."
)
@click.option(
    "--max-latency-ms",
    type=click.FloatRange(min=0, min_open=True),
    help="Among passing artifacts prefer those whose median latency in the run meets this (then the smallest).",
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
@stream_option
@common
def package_cmd(run_dir, out, target, artifact, data, data_dir, seed, overwrite, as_json, **options):
    """Bundle a compress run: for apps (model(s), labels, manifest, self-test samples) or for a
    microcontroller (--target mcu: model_data.cc, settings and op-resolver headers, checked on TFLite Micro)."""
    common_args = dict(artifact=artifact, data=data, data_dir=data_dir, seed=seed, overwrite=overwrite)
    common_args["stream"] = options.pop("stream")
    mcu_only = ("arena_limit_kb", "flash_limit_kb", "compress_weights")
    if target == "mcu":
        if options["max_latency_ms"]:
            raise click.UsageError("--max-latency-ms applies to --target app (an MCU package names its --artifact)")
        return _package_mcu(run_dir, out, as_json, **common_args, **{k: options[k] for k in mcu_only})
    if any(options[k] for k in mcu_only):
        raise click.UsageError("--arena-limit-kb, --flash-limit-kb and --compress-weights apply to --target mcu")
    from compressor.bundle.package import package

    result = package(
        run_dir,
        out,
        samples=options["samples"],
        name=options["name"],
        version=options["model_version"],
        sign=options["sign_key"],
        max_latency_ms=options["max_latency_ms"],
        progress=progress,
        **common_args,
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


def _package_mcu(run_dir, out, as_json, **args):
    from compressor.mcu.package_mcu import package_mcu

    info = package_mcu(run_dir, out, progress=progress, **args)
    acc, arena = info["accuracy"], info["arena"]
    emit(
        info,
        as_json,
        f"wrote {out}: {info['artifact']} for TFLite Micro {info['tflite_micro']}: accuracy {acc['tflm']:.2%} on its "
        f"interpreter ({acc['litert']:.2%} on LiteRT, top-1 agreement {acc['top1_agreement']:.2%}); flash "
        f"{info['flash']['model_bytes'] / 1024:.1f} KB, arena {arena['measured_bytes'] / 1024:.1f} KB measured, "
        f"{arena['recommended_bytes'] / 1024:.0f} KB recommended; ops: {', '.join(info['ops'])}\n"
        f"weight compression (lookup tables): {_lut_line(info['weight_compression'])}",
    )


def _lut_line(lut: dict) -> str:
    if "flash_bytes_after" not in lut:
        return f"not offered: {lut['reason']}"
    sizes = f"flash {lut['flash_bytes_before'] / 1024:.1f} -> {lut['flash_bytes_after'] / 1024:.1f} KB"
    ram = f"+{lut['decode_ram']['decode_ram_bytes'] / 1024:.1f} KB arena to decode"
    if lut["applied"]:
        return f"applied: {sizes}, {ram}, outputs identical"
    return lut.get("reason") or f"available with --compress-weights: {sizes}, {ram}, outputs identical"


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
