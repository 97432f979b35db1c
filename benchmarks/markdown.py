"""Render bench.json as BENCHMARKS.md."""

from __future__ import annotations

NOTES = {
    "storage": "Both processes run on this 2-core machine: the 2-process figure is what sharing its cores gives, "
    "not what a second machine adds. Trials per minute span the study's first trial start to its last trial end.",
    "mixed_precision": "cifar_resnet (depth 8) on the digits upsampled to 32x32x3, one warm-up epoch then the median "
    "of 3. The shim turns oneDNN off by default (bit-stable float results); TensorFlow's CPU bfloat16 kernels are "
    "fast only through oneDNN (TF_ENABLE_ONEDNN_OPTS=1). No GPU here: mixed_float16 is not measured.",
    "replicas": "The mixed_precision workload in float32 (global batch 32), trained inside the strategy that "
    "`--distribute mirrored --replicas N` sets up, each count in its own process. This machine has no GPU and 2 "
    "cores: the 2 replicas are logical devices of one CPU, sharing the cores one replica's threads already use, "
    "so the ratio is the cost of synchronising them here, not the gain of a second device.",
    "faster": "cifar_resnet (depth 8, width 2) trained 15 epochs on the digits upsampled to 32x32x3; int8 and "
    "channel-prune-int8 (channel_prune at half the MACs, l1 importance, multiples of 16, distilled from the unpruned "
    "model, then int8) in one compress run; LiteRT median latency at 1 thread over 300 runs, MACs counted from "
    "each .tflite. XNNPACK's sparse kernels are not measured: on x86 with AVX XNNPACK never uses them (README).",
    "hard_architectures": "tf_keras.applications MobileNetV2 (alpha 0.35), MobileNetV3Small (no built-in "
    "preprocessing) and EfficientNetB0, weights=None, 32x32x3, BatchNorm momentum 0.9, trained 10 epochs (Adam 2e-3) "
    "on the digits upsampled to 32x32x3 (train+val); test split 359 images (one image = 0.28 points). int8: plain "
    "min/max; int8-techniques: equalize + bias_correct + 99.99th-percentile ranges; budget_loop: compress "
    "--accuracy-budget 0.01 (chosen on the validation split, tested once).",
    "throughput": "Batched evaluation (256 samples per interpreter call) vs one sample per call, same inputs, same "
    "results. Batching amortises the interpreter's per-call overhead (setting the input, invoking, copying the "
    "output): it pays on small models such as digits_cnn, where that overhead is a large share of each call, "
    "and not on compute-bound ones such as mobilenet_v2, where the inference itself takes milliseconds.",
}


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _kb(n) -> str:
    return f"{n / 1024:.1f}" if n is not None else ""


def render(bench: dict) -> str:
    s = bench["sections"]
    models = s.get("models", {}).get("data") or {}
    out = _header(bench) + _targets(bench) + _models(models)
    out += _compress_rows(s.get("compress", {}).get("data") or {}, s.get("latency", {}).get("data") or {}, models)
    out += _section_figures(s)
    out += _backends(s)
    return "\n".join(out)


def _backends(s: dict) -> list[str]:
    """The sections that render their own tables (the others are JSON figures)."""
    from .arch_sections import render as render_architectures
    from .backend_sections import render as render_backends
    from .mcu_sections import render as render_mcu

    out: list[str] = []
    for key, title, render_section in (
        ("quant_backends", "Quantization backends and formats", render_backends),
        ("mcu", "Microcontrollers: TFLite Micro", render_mcu),
        ("architectures", "Architectures: every training preset on each family", render_architectures),
    ):
        sec = s.get(key, {})
        if not sec.get("data"):
            continue
        rerun = f"Rerun alone (`python -m benchmarks.run --only {key}`) {sec['date']}, {sec['seconds']:.0f} s."
        out += [f"## {title}", ""] + ([rerun, ""] if sec.get("alone") else []) + render_section(sec["data"])
    return out


def _header(bench: dict) -> list[str]:
    m = bench["machine"]
    return [
        "# Benchmarks",
        "",
        f"Measured {bench['date']} by `make bench` in {bench['seconds']:.0f} s"
        + (" (QUICK smoke run: not all rows)" if bench.get("quick") else "")
        + ".",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}.  ",
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in bench["versions"].items()) + ".",
        "",
    ]


def _targets(bench: dict) -> list[str]:
    """The targets table, the reasons of retired targets, and the sections that failed."""
    s = bench["sections"]
    out = ["## Targets", ""]
    out += _table(
        ["issue", "target", "value", "threshold", "status"],
        [[t["issue"], t["target"], t["value"], t["threshold"], t["status"]] for t in bench["targets"]],
    )
    out += [f"Retired: {t['target']}. {t['reason']}" for t in bench["targets"] if t["status"] == "retired"]
    out += [""] if any(t["status"] == "retired" for t in bench["targets"]) else []
    for name, sec in s.items():
        if not sec.get("ok"):
            out += [f"**Section {name} failed:** `{sec['error']}`", ""]
    return out


def _models(models: dict) -> list[str]:
    out: list[str] = []
    if models:
        out += ["## Models", ""]
        out += _table(
            ["model", "parameters", "weights", "float test accuracy"],
            [
                [
                    k,
                    f"{v['parameters']:,}",
                    v["weights"],
                    f"{v['test_accuracy']:.2%}" if "test_accuracy" in v else "n/a",
                ]
                for k, v in models.items()
            ],
        )
    return out


def _compress_rows(compress: dict, latency: dict, models: dict) -> list[str]:
    """Size, accuracy, latency per model and recipe; the runs that failed with their error."""
    out: list[str] = []
    if compress:
        out += [
            "## Size, accuracy, latency per model and recipe",
            "",
            "Size in KB. Accuracy on the test split (digits); random-weight models have none. "
            "Latency: median / p90 ms, one sample, LiteRT for .tflite and ONNX Runtime for .onnx, "
            "at 1 and 2 threads. Wall time and peak RSS are the whole `compress` process "
            "(TF import, steps, exports of TFLite and ONNX, validation).",
            "",
        ]
        rows = []
        failed = {k: v["error"] for k, v in compress.items() if "error" in v}
        for key, run in compress.items():
            if key in failed:
                continue
            model = key.split("/")[0]
            for a in run["artifacts"]:
                if a["artifact"] == "float32" and key.split("/")[1].split("+")[0] != "int8":
                    continue  # float32 rows once per model
                lat = latency.get(f"{model}/{a['artifact']}/{a['format']}", {})
                l1, l2 = lat.get("1", {}), lat.get("2", {})
                has_acc = models.get(model, {}).get("data") == "digits"
                rows.append(
                    [
                        model,
                        a["artifact"],
                        a["format"],
                        _kb(a["size_bytes"]),
                        _kb(a["gzip_bytes"]),
                        f"{a['accuracy']:.2%}" if has_acc else "n/a",
                        f"{a['accuracy_delta'] * 100:+.2f}" if has_acc else "n/a",
                        f"{l1.get('median_ms', 0):.3f} / {l1.get('p90_ms', 0):.3f}",
                        f"{l2.get('median_ms', 0):.3f} / {l2.get('p90_ms', 0):.3f}",
                        run["wall_s"] if a["artifact"] != "float32" else "",
                        run["peak_rss_mb"] if a["artifact"] != "float32" else "",
                    ]
                )
        out += _table(
            [
                "model",
                "artifact",
                "format",
                "size KB",
                "gzip KB",
                "accuracy",
                "Δ pt",
                "1 thread ms",
                "2 threads ms",
                "compress wall s",
                "peak RSS MB",
            ],
            rows,
        )
        if failed:
            out += ["Runs that failed (the error is the tool's own message):", ""]
            out += [f"- `{k}`: {v.splitlines()[-1][-300:]}" for k, v in failed.items()] + [""]
    return out


def _section_figures(s: dict) -> list[str]:
    """The other sections' figures as JSON, each under its title (and its note, if it has one)."""
    out: list[str] = []
    for title, key in (
        ("Baselines (digits_cnn)", "baselines"),
        ("Exported structure", "exported_structure"),
        ("Latency parity with litert-benchmark", "latency_parity"),
        ("Validation throughput", "throughput"),
        ("Runtime footprint", "footprint"),
        ("Tuning workers", "workers"),
        ("TPE + Hyperband vs 3x random search", "tune_budget"),
        ("Search throughput by storage (1 vs 2 processes, SQLite vs PostgreSQL)", "storage"),
        ("Mixed precision: one fine-tuning epoch", "mixed_precision"),
        ("Replicas: one fine-tuning epoch with 1 vs 2 (MirroredStrategy)", "replicas"),
        ("Faster, not only smaller: channel pruning at half the MACs", "faster"),
        ("Hard architectures: int8 on MobileNetV2, MobileNetV3Small, EfficientNetB0", "hard_architectures"),
        ("Data larger than memory: peak RSS of compress on 2,000 vs 20,000 images", "memory"),
        ("Demo", "demo"),
    ):
        data = s.get(key, {}).get("data")
        if data:
            rerun = (
                f"Rerun alone (`python -m benchmarks.run --only {key}`) {s[key]['date']}, {s[key]['seconds']:.0f} s."
                if s[key].get("alone")
                else ""
            )
            note = NOTES.get(key, "")
            out += [f"## {title}", ""] + [x for x in (rerun, note) if x for x in (x, "")]
            out += ["```json", _json(data), "```", ""]
    return out


def _json(data) -> str:
    import json

    return json.dumps(data, indent=2, default=str)
