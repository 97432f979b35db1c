"""Quantization backends and formats (issue #19): the converter vs the LiteRT Quantizer, int4, float16 ONNX.

Two models trained on the embedded digits, so accuracy means something: digits_cnn at its defaults
(43k parameters) and at width 4 (~670k parameters, weights dominate the file), each compressed once
with every post-training recipe compared here. Stand-alone: it trains its own models.
"""

from __future__ import annotations

from .context import Context
from .measure import ratio, run_job

MODELS = {"digits_cnn": {}, "digits_cnn_x4": {"width": 4}}
RECIPES = ["float16", "int8", "aeq-int8", "aeq-a16w8", "aeq-int4"]


def quant_backends(ctx: Context) -> dict:
    out = {}
    for name, params in MODELS.items():
        trained = run_job(
            "benchmarks.ours:train_job",
            model="digits_cnn",
            out=str(ctx.work / "backends" / name),
            epochs=20,
            model_params=params,
        )
        job = run_job(
            "benchmarks.ours:compress_job",
            model_path=trained["result"]["model_path"],
            recipes=RECIPES,
            out=str(ctx.work / "backends" / f"{name}-runs"),
            data="digits",
        )
        out[name] = {"parameters": trained["result"]["parameters"], **summarise(job["result"])}
    return out


def summarise(result: dict) -> dict:
    """Per artifact: size, accuracy, drop, latency, backend; and the ratios the targets check."""
    rows = {(a["artifact"], a["format"]): a for a in result["artifacts"]}
    backends = {name: steps[-1]["info"].get("backend") for name, steps in result["steps"].items() if steps}
    table = {}
    for (artifact, fmt), a in sorted(rows.items()):
        table[f"{artifact}/{fmt}"] = {
            "backend": backends.get(artifact, "converter" if artifact == "float32" else None),
            "size_bytes": a["size_bytes"],
            "accuracy": a["accuracy"],
            "delta_points": round(a["accuracy_delta"] * 100, 2) + 0.0,  # + 0.0: no "-0.0"
            "latency_median_ms": a.get("latency_median_ms"),
            "problems": a["gates_failed"] + a["export_mismatches"],
        }
    f32, f32_onnx = rows[("float32", "tflite")], rows.get(("float32", "onnx"))
    f16_onnx = rows.get(("float16", "onnx"))
    int4 = rows.get(("aeq-int4", "tflite"))
    return {
        "float_accuracy": result["reference_accuracy"],
        "artifacts": table,
        "float16_onnx_over_float32_onnx": ratio(f16_onnx["size_bytes"], f32_onnx["size_bytes"]) if f16_onnx else None,
        "int4_over_float32_tflite": ratio(int4["size_bytes"], f32["size_bytes"]) if int4 else None,
        "int4_delta_points": table["aeq-int4/tflite"]["delta_points"] if int4 else None,
        "onnx_skipped": result.get("onnx_skipped", {}),
    }


def render(data: dict) -> list[str]:
    """One table per model: every artifact with the backend that produced it."""
    out: list[str] = [
        "Two digits_cnn models trained 20 epochs on the embedded digits; every artifact validated on LiteRT "
        "(.tflite) or ONNX Runtime (.onnx) on the test split. Latency: median ms, 1 thread, one sample.",
        "",
    ]
    for model, d in data.items():
        out += [
            f"**{model}** ({d['parameters']:,} parameters, float {d['float_accuracy']:.2%}): float16 ONNX / float32 "
            f"ONNX size {d['float16_onnx_over_float32_onnx']}, int4 / float32 TFLite size "
            f"{d['int4_over_float32_tflite']} at {d['int4_delta_points']:+.2f} points accuracy.",
            "",
            "| artifact | backend | size KB | accuracy | Δ pt | latency ms | problems |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, a in d["artifacts"].items():
            lat = a["latency_median_ms"]
            out.append(
                f"| {key} | {a['backend'] or ''} | {a['size_bytes'] / 1024:.1f} | {a['accuracy']:.2%} | "
                f"{a['delta_points']:+.2f} | {'' if lat is None else f'{lat:.3f}'} | {'; '.join(a['problems'])} |"
            )
        out.append("")
        out += [f"No ONNX for {recipe}: {why}.  " for recipe, why in d["onnx_skipped"].items()]
        out += [""] if d["onnx_skipped"] else []
    return out
