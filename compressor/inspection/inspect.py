"""`compressor inspect FILE`: what is inside a .tflite (inspection/tflite.py) or an .onnx
(inspection/onnx.py), with the MACs of either (inspection/macs.py), as a dict and as text."""

from __future__ import annotations

from pathlib import Path

from compressor.inspection.macs import file_macs, format_macs
from compressor.inspection.onnx import inspect_onnx
from compressor.inspection.tflite import inspect_tflite
from compressor.inspection.xnnpack_sparse import sparse_eligibility
from compressor.runtime.errors import UserError


def inspect_file(path: str | Path) -> dict:
    """Dispatch on the suffix; every figure the CLI prints (and ``--json`` dumps)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist or is not a file; pass a .tflite or .onnx file")
    if path.suffix.lower() == ".tflite":
        info = inspect_tflite(path)
    elif path.suffix.lower() == ".onnx":
        info = inspect_onnx(path)
    else:
        raise UserError(f"{path} is not a .tflite or .onnx file")
    macs = file_macs(path)
    info = {**info, "macs": macs["total"], "macs_by_op": macs["by_op"], "macs_per_op": macs["ops"]}
    if info["operators"].get("DENSIFY"):  # sparse-stored weights: can XNNPACK's sparse kernels take them?
        info["xnnpack_sparse"] = sparse_eligibility(path.read_bytes(), str(path))
    return info


def format_inspection(info: dict) -> str:
    """Human-readable summary of inspect_file's dict."""
    lines = [f"{info['file']}  ({info['format']}, {info['size_bytes'] / 1024:.1f} KB)"]
    if info["format"] == "onnx":
        lines.append(f"opset {info['opset']}  ir_version {info['ir_version']}  producer {info['producer']}")
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            q = t.get("quantization")
            qtext = f"  scale {q['scale']:.6g} zero_point {q['zero_point']}" if q else ""
            lines.append(f"{kind[:-1]:6s} {t['name']}: {t['dtype']} {t['shape']}{qtext}")
    if info.get("activation_dtype"):
        lines.append(f"types: weights {info.get('weight_dtype') or 'none'}, activations {info['activation_dtype']}")
    ops = ", ".join(f"{k} {v}" for k, v in sorted(info["operators"].items(), key=lambda kv: -kv[1]))
    lines.append(f"operators ({info['operator_total']}): {ops}")
    lines.append(f"parameters: {info['parameters']:,}")
    if info.get("macs") is not None:
        parts = ", ".join(f"{k} {format_macs(v)}" for k, v in sorted(info["macs_by_op"].items(), key=lambda kv: -kv[1]))
        lines.append(f"MACs per sample: {format_macs(info['macs'])} ({info['macs']:,}){': ' + parts if parts else ''}")
    s = info["kernel_summary"]
    lines.append(
        f"kernels: {s['count']}, sparsity {s['sparsity']:.1%} zeros, "
        f"at most {s['max_unique_values']} unique values in one kernel"
    )
    for k in info["kernels"][:12]:
        per = f", <= {k['unique_per_channel_max']} per channel" if k["unique_per_channel_max"] else ""
        lines.append(
            f"  {k['name'][:28]:28s} {k['op']:8s} {k['dtype']:8s} {str(k['shape']):18s} "
            f"{k['sparsity']:6.1%} zeros  {k['unique_values']} unique{per}"
        )
    lines.append("largest tensors:")
    lines += [
        f"  {t['bytes'] / 1024:8.1f} KB {t['share']:6.1%}  {t['dtype']:8s} {t['name'][:70]}"
        for t in info["largest_tensors"][:5]
    ]
    if info.get("float_ops"):
        lines.append(
            "ops computing in float in a quantized model: "
            + ", ".join(f"{k} {v}" for k, v in info["float_ops"].items())
        )
    sparse = info.get("xnnpack_sparse")
    if sparse:
        verdict = "eligible" if sparse["eligible"] else "not eligible: " + "; ".join(sparse["reasons"])
        lines.append(f"sparse weights: {info['operators']['DENSIFY']} DENSIFY op(s); XNNPACK sparse path {verdict}")
        lines.append(f"  this CPU: {sparse['cpu']}")
    lines.append(f"metadata: {', '.join(info['metadata']) or 'none'}")
    return "\n".join(lines)
