"""Microcontroller target (issue #14): TFLite Micro accuracy vs LiteRT, the arena, flash with and without LUTs.

digits_cnn trained on the embedded digits, compressed with int8 and cluster-qat-int8, each packaged
with `compressor package --target mcu` (the clustered one also with --compress-weights). Stand-alone.
"""

from __future__ import annotations

from .context import Context
from .measure import run_job

RECIPES = ["int8", "cluster-qat-int8"]


def mcu(ctx: Context) -> dict:
    work = ctx.work / "mcu"
    trained = run_job("benchmarks.ours:train_job", model="digits_cnn", out=str(work / "model"), epochs=20)
    run = work / "run"
    run_job(
        "benchmarks.ours:compress_job",
        model_path=trained["result"]["model_path"],
        recipes=RECIPES,
        out=str(run),
        data="digits",
        overrides=["export.formats=[tflite]"],
    )
    out = {}
    for artifact, lut in (("int8", False), ("cluster-qat-int8", False), ("cluster-qat-int8", True)):
        key = artifact + (" --compress-weights" if lut else "")
        job = run_job(
            "benchmarks.ours:package_mcu_job",
            run_dir=str(run),
            out=str(work / key.replace(" ", "")),
            artifact=artifact,
            compress_weights=lut,
        )
        out[key] = {"wall_s": round(job["wall_s"], 1), **job["result"]}
    return out


def render(data: dict) -> list[str]:
    out = [
        "digits_cnn (20 epochs on the embedded digits), `compressor package RUN --target mcu`: the whole test split "
        "on the TFLite Micro interpreter and on LiteRT (the same file), the least arena TFLite Micro allocates and "
        "runs with (64-bit host: an upper bound for a 32-bit MCU), the recommended `kTensorArenaSize` (+10%, KiB), "
        "flash = the flatbuffer `g_model_data` holds.",
        "",
        "| artifact | TFLM accuracy | LiteRT accuracy | top-1 agreement | arena measured B | recommended B "
        "| flash B | LUT flash B (decode RAM B) | package wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, d in data.items():
        acc, lut = d["accuracy"], d["weight_compression"]
        lut_cell = (
            f"{lut['flash_bytes_after']:,} ({lut['decode_ram']['decode_ram_bytes']:,})"
            if "flash_bytes_after" in lut
            else f"none: {lut['reason']}"
        )
        out.append(
            f"| {key} | {acc['tflm']:.2%} | {acc['litert']:.2%} | {acc['top1_agreement']:.2%} | "
            f"{d['arena']['measured_bytes']:,} | {d['arena']['recommended_bytes']:,} | {d['flash']['model_bytes']:,} | "
            f"{lut_cell} | {d['wall_s']} |"
        )
    return out + [""]
