"""`compressor inspect FILE.onnx`: the .tflite report's figures where they apply to ONNX.

Opset and producer, inputs/outputs (with the int8 quantization our exporter records in
metadata_props), op type counts, initializers and their bytes, parameters, and per-kernel
sparsity / unique values. In a QDQ model the weights are int8 initializers feeding a
DequantizeLinear, so kernels are traced through it to the Conv/Gemm/MatMul that uses them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from compressor.inspection.kernel_stats import kernel_stats, summarise_kernels
from compressor.runtime.errors import UserError
from compressor.runtime.safe_load import parse_json

_KERNEL_OPS = {
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
}
# Which input of each op holds the weights (QLinear* ops interleave scales and zero points).
_WEIGHT_INPUT = {"QLinearConv": 3, "QLinearMatMul": 3}
_LAYOUT = {"Transpose", "Reshape", "Identity"}  # tf2onnx may put these between a weight and its user


def inspect_onnx(path: Path) -> dict:
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError and friends
        raise UserError(f"{path} is not a valid ONNX model ({type(e).__name__}: {str(e)[:200]})") from None
    graph = proto.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    meta = {p.key: p.value for p in proto.metadata_props}
    producers = {out: node for node in graph.node for out in node.output}
    total = Path(path).stat().st_size
    weights = [inits[name] for name in _parameter_names(graph, inits)]
    largest = sorted(inits.items(), key=lambda kv: -kv[1].nbytes)[:10]
    kernels = _kernels(graph, inits, producers)
    return {
        "file": str(path),
        "format": "onnx",
        "size_bytes": total,
        "ir_version": proto.ir_version,
        "opset": next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None),
        "opsets": {o.domain or "ai.onnx": o.version for o in proto.opset_import},
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "inputs": [_value_info(v, meta.get("compressor.input_quantization")) for v in _real_inputs(graph, inits)],
        "outputs": [_value_info(v, meta.get("compressor.output_quantization")) for v in graph.output],
        "operators": dict(sorted(Counter(n.op_type for n in graph.node).items())),
        "operator_total": len(graph.node),
        "initializers": len(inits),
        "parameters": int(sum(v.size for v in weights)),
        "constant_bytes": int(sum(v.nbytes for v in inits.values())),
        "largest_tensors": [
            {
                "name": k,
                "dtype": str(v.dtype),
                "shape": list(v.shape),
                "bytes": int(v.nbytes),
                "share": v.nbytes / total,
            }
            for k, v in largest
        ],
        "kernels": kernels,
        "kernel_summary": summarise_kernels(kernels),
        "float_ops": {},
        "metadata": sorted(meta),
    }


def _real_inputs(graph, inits) -> list:
    # IR < 4 lists initializers among the inputs; they are not what a caller feeds.
    return [v for v in graph.input if v.name not in inits]


def _value_info(v, quantization: str | None) -> dict:
    from onnx import helper

    t = v.type.tensor_type
    dtype = helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "unknown"
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or -1) for d in t.shape.dim]
    entry = {"name": v.name, "dtype": dtype, "shape": shape}
    if quantization and dtype in ("int8", "uint8", "int16"):
        entry["quantization"] = parse_json(quantization, f"quantization metadata of {v.name}")
    return entry


def _parameter_names(graph, inits) -> set[str]:
    """Weights and biases: not QDQ scales/zero points, not int64 shapes; int32 only as a quantized bias."""
    qdq_params, quantized = set(), set()
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            qdq_params.update(node.input[1:])
            if node.op_type == "DequantizeLinear":
                quantized.add(node.input[0])
    return {
        name
        for name, v in inits.items()
        if name not in qdq_params
        and v.dtype != np.int64
        and not name.startswith("compressor_float_guard")
        and (v.dtype != np.int32 or name in quantized)
    }


def _kernels(graph, inits, producers) -> list[dict]:
    found, seen = [], set()
    for node in graph.node:
        if node.op_type not in _KERNEL_OPS:
            continue
        index = _WEIGHT_INPUT.get(node.op_type, 1)
        if len(node.input) <= index:
            continue
        name = _trace_to_initializer(node.input[index], inits, producers)
        if name is None or name in seen:
            continue
        seen.add(name)
        values = inits[name]
        # ONNX Conv weights are (out, in, kh, kw) and Gemm/MatMul (in, out) unless transB
        axis = 0 if node.op_type in ("Conv", "QLinearConv", "ConvInteger", "ConvTranspose") else values.ndim - 1
        found.append(kernel_stats(name, node.op_type, values, axis if values.ndim > 1 else None))
    return found


def _trace_to_initializer(name: str, inits, producers, depth: int = 0) -> str | None:
    if name in inits:
        return name
    node = producers.get(name)
    if node is None or depth > 4 or not node.input:
        return None
    if node.op_type == "DequantizeLinear" or node.op_type in _LAYOUT:
        return _trace_to_initializer(node.input[0], inits, producers, depth + 1)
    return None
