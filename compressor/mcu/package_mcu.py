"""`compressor package RUN --target mcu --out DIR`: a full-int8 artifact, proven on TFLite Micro, as C sources.

The folder holds model.tflite, model_data.cc/.h (the aligned array), model_settings.h (arena size,
int8 scales and zero points, preprocessing, labels), op_resolver.h (a MicroMutableOpResolver with
exactly the model's ops), mcu.json (every figure) and README.md (the same, for people). Before a
byte is written: the ops are checked against TFLite Micro (an op it lacks is refused by name), the
test split runs on the TFLM interpreter and on LiteRT (accuracy of both, top-1 agreement), and the
arena it needed and the flash the model takes are checked against the limits given.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compressor.bundle.choose import tflite_row
from compressor.bundle.package import artifact_file, read_run_file, reload_dataset
from compressor.inspection.tflite import TFLiteFile
from compressor.mcu import csource, ops, tflm
from compressor.mcu.explain import explain
from compressor.mcu.readme import readme
from compressor.mcu.weight_compression import check_compressed, compress_weights
from compressor.pipeline.layout import RunLayout, mark_output
from compressor.pipeline.output_guard import check_output
from compressor.runtime import accuracy
from compressor.runtime.atomic import output_dir, write_bytes, write_json, write_text
from compressor.runtime.errors import UserError
from compressor.runtime.interpreters import open_model
from compressor.runtime.quantization import quantize_input

SCHEMA = "compressor.mcu/1"
STREAMED_TEST_SAMPLES = 2_000  # of a streamed test split: TFLite Micro runs them one by one, from arrays


def package_mcu(
    run_dir: str | Path,
    out: str | Path,
    artifact: str | None = None,
    arena_limit_kb: float | None = None,
    flash_limit_kb: float | None = None,
    compress_weights: bool = False,
    data: str | None = None,
    data_dir: str | None = None,
    seed: int | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] = lambda msg: None,
    stream: bool | None = None,
) -> dict:
    """Check, measure and write the MCU folder; returns what mcu.json holds. ``stream``: a streamed test
    split (datasets/source.py) is measured on a seeded subset of ``STREAMED_TEST_SAMPLES``."""
    run_dir, out = Path(run_dir), Path(out)
    layout = RunLayout(run_dir)
    report, run = read_run_file(layout.report_json), read_run_file(layout.run_record)
    row = choose_int8(report, layout, artifact)
    model_path = artifact_file(layout, row)
    check_output(out, [layout.report_json, run.get("model"), data, data_dir, model_path], overwrite)
    missing = tflm.available()
    if missing:
        raise UserError(missing)
    model = model_path.read_bytes()
    model_ops = [op for op, _, _ in TFLiteFile(model, model_path.name).ops]
    lacking = ops.unsupported(model_ops)
    if lacking:
        raise UserError(
            f"{row['artifact']}: TFLite Micro has no kernel for {', '.join(lacking)}; "
            f"replace {'it' if len(lacking) == 1 else 'them'} in the model"
        )
    dataset = _held(reload_dataset(run_dir, run, report, (data, data_dir, seed), stream, progress), progress)
    progress(f"running {row['artifact']} on TFLite Micro and LiteRT ({len(dataset.y_test)} test samples)")
    figures, inp = _measure(model_path, dataset, row)
    figures["ops"] = sorted(set(model_ops))
    progress("trying TFLite Micro's weight compression (lookup tables)")
    compressed, figures["weight_compression"] = weight_lut(model, quantize_input(dataset.x_test, inp))
    if compress_weights:
        if compressed is None:
            raise UserError(f"--compress-weights: {figures['weight_compression']['reason']}")
        model = _ship_compressed(figures, compressed)
    _check_limits(figures, arena_limit_kb, flash_limit_kb)
    prep, labels = report["data"]["preprocessing"], list(report["data"]["labels"])
    info = {"schema": SCHEMA, "artifact": row["artifact"], "labels": labels, "preprocessing": prep, **figures}
    with output_dir(out, overwrite) as tmp:
        _write(tmp, model, info)
        mark_output(tmp, "mcu")
    return info


def _held(dataset: Any, progress: Callable[[str], None]) -> Any:
    """The test split as arrays: TFLite Micro and the weight-compression check run on whole arrays, so a
    streamed split gives a seeded subset of at most STREAMED_TEST_SAMPLES (said, and counted in mcu.json)."""
    if hasattr(dataset, "x_test"):
        return dataset
    total = len(dataset.y_test)
    held = dataset.arrays(STREAMED_TEST_SAMPLES, splits=("test",))
    if len(held.y_test) < total:
        progress(f"test split streamed: measuring a seeded subset of {len(held.y_test):,} of its {total:,} samples")
    return held


def choose_int8(report: dict, layout: RunLayout, artifact: str | None) -> dict:
    """The full-int8 TFLite row to ship: ``artifact`` if named, else the smallest one whose checks passed."""
    if artifact is not None:
        return tflite_row(report, artifact)
    rows = [r for r in report["artifacts"] if r["format"] == "tflite"]
    passed = [r for r in rows if not r["gates_failed"] and not r["export_mismatches"]]
    int8 = [r for r in passed if _full_int8(artifact_file(layout, r))]
    if not int8:
        raise UserError(
            "no full-int8 TFLite artifact of this run passed its checks; a microcontroller needs int8 "
            "input, output and kernels: compress with an int8 recipe (io_dtype: int8), or pick one with --artifact"
        )
    return min(int8, key=lambda r: r["size_bytes"])


def _full_int8(path: Path) -> bool:
    """int8 input and output, read from the file's own tensors (the report does not record them)."""
    f = TFLiteFile(path.read_bytes(), path.name)
    return all(f.tensors[i]["dtype"] == "INT8" for i in [*f.graph.inputs, *f.graph.outputs])


def _measure(model_path: Path, dataset, row: dict) -> tuple[dict, Any]:
    """TFLM and LiteRT on the test split, the arena; and the input tensor (for quantizing more data)."""
    runner = open_model(model_path)
    inp, out = runner.inputs[0], runner.outputs[0]
    if inp.dtype != "int8" or out.dtype != "int8":
        raise UserError(
            f"{row['artifact']} takes {inp.dtype} and returns {out.dtype}; a microcontroller build needs a "
            "full-int8 model (int8 recipe with io_dtype: int8)"
        )
    x_int8 = quantize_input(dataset.x_test, inp)
    litert = runner.run(x_int8).reshape(len(x_int8), -1)
    micro = tflm.run_micro(model_path, x_int8)
    y = dataset.y_test
    tflm_top1, litert_top1 = micro.outputs.argmax(axis=1), litert.argmax(axis=1)
    diff = np.abs(micro.outputs.astype(np.int32) - litert.astype(np.int32))
    explanation = _explain_difference(model_path, x_int8, diff, tflm_top1 != litert_top1)
    return {
        "tflite_micro": micro.version,
        "accuracy": {
            "samples": int(len(y)),
            "tflm": float(np.mean(tflm_top1 == y)),
            "litert": float(np.mean(litert_top1 == y)),
            "top1_agreement": float(np.mean(tflm_top1 == litert_top1)),
            "max_abs_diff_int8": int(diff.max()),
            "outputs_differing": int(np.count_nonzero(diff.max(axis=1))),
            **({"explanation": explanation} if explanation else {}),
        },
        "arena": {
            "measured_bytes": micro.arena_bytes,
            "recommended_bytes": micro.recommended_arena_bytes,
            "margin": tflm.ARENA_MARGIN,
        },
        "flash": {"model_bytes": model_path.stat().st_size},
        "input": {"shape": _batch_of_one(inp.shape), "scale": inp.scale, "zero_point": inp.zero_point},
        "output": {"shape": _batch_of_one(out.shape), "scale": out.scale, "zero_point": out.zero_point},
        "confusion_matrix": accuracy.classification_metrics(micro.outputs.astype(np.float32), y)["confusion_matrix"],
    }, inp


def weight_lut(model: bytes, x_int8: np.ndarray) -> tuple[bytes | None, dict]:
    """What TFLite Micro's lookup-table compression makes of the weights: flash with and without, the
    decode RAM, and proof that it changes no output; (None, reason) where it does not pay or cannot run."""
    compressed, info = compress_weights(model)
    if compressed is None:
        return None, {"applied": False, "reason": info["reason"]}
    check = check_compressed(model, compressed, x_int8)
    summary = {
        "applied": False,
        "flash_bytes_before": info["flash_bytes_before"],
        "flash_bytes_after": info["flash_bytes_after"],
        "ratio": info["ratio"],
        "tensors": info["tensors"],
        "decode_ram": info["ram"],
        "outputs_identical": check["identical"],
    }
    if not check["identical"]:  # a lookup table decodes exactly: anything else is a broken file
        return None, {**summary, "reason": f"the compressed model's outputs differ (max {check['max_abs_diff']})"}
    return compressed, summary


def _ship_compressed(figures: dict, compressed: bytes) -> bytes:
    """Figures for the compressed model that ships: its flash, its arena (decoded tensors live there), DECODE."""
    lut = figures["weight_compression"]
    lut["applied"] = True
    arena = lut["decode_ram"]["arena_bytes_after"]
    figures["flash"] = {"model_bytes": len(compressed), "uncompressed_bytes": lut["flash_bytes_before"]}
    figures["arena"] = {
        **figures["arena"],
        "measured_bytes": arena,
        "recommended_bytes": tflm.recommended(arena),
    }
    figures["ops"] = sorted({*figures["ops"], "TFLM_DECODE"})
    return compressed


def _explain_difference(model_path: Path, x_int8: np.ndarray, diff: np.ndarray, flipped: np.ndarray) -> dict | None:
    """Where the interpreters part ways, traced op by op on one sample: the first whose top-1 differs,
    else the first whose outputs differ at all; None when every output is identical."""
    candidates = np.flatnonzero(flipped) if flipped.any() else np.flatnonzero(diff.max(axis=1))
    if len(candidates) == 0:
        return None
    sample = int(candidates[0])
    return {"sample": sample, "top1_differs": bool(flipped[sample]), **explain(model_path, x_int8[sample])}


def _batch_of_one(shape) -> list[int]:
    """A microcontroller runs one sample at a time: a dynamic (-1) batch dimension is 1 there."""
    return [max(int(d), 1) for d in shape]


def _check_limits(figures: dict, arena_limit_kb: float | None, flash_limit_kb: float | None) -> None:
    arena, flash = figures["arena"]["recommended_bytes"], figures["flash"]["model_bytes"]
    if arena_limit_kb is not None and arena > arena_limit_kb * 1024:
        raise UserError(
            f"the model needs a {arena / 1024:.1f} KB tensor arena (measured {figures['arena']['measured_bytes']} "
            f"bytes + {tflm.ARENA_MARGIN:.0%}), over --arena-limit-kb {arena_limit_kb:g}; compress it further"
        )
    if flash_limit_kb is not None and flash > flash_limit_kb * 1024:
        raise UserError(
            f"the model takes {flash / 1024:.1f} KB of flash, over --flash-limit-kb {flash_limit_kb:g}; "
            "compress it further"
        )


def _write(folder: Path, model: bytes, info: dict) -> None:
    settings = {**info, "arena_bytes": info["arena"]["recommended_bytes"]}
    write_bytes(folder / "model.tflite", model)
    write_text(folder / "model_data.cc", csource.model_data_cc(model))
    write_text(folder / "model_data.h", csource.model_data_h())
    write_text(folder / "model_settings.h", csource.model_settings_h(settings))
    write_text(folder / "op_resolver.h", ops.resolver_header(info["ops"]))
    write_json(folder / "mcu.json", info)
    write_text(folder / "README.md", readme(info))
