"""What is inside a .tflite, for `compressor inspect FILE` (inspection/inspect.py; .onnx: onnx.py).

Answers the questions behind "my pruned model is not smaller" and "is this really int8?":
input/output dtypes and quantization, the types weights are stored and activations computed in,
operator counts, which tensors take the bytes, the parameter count, the share of zero weights
(sparsity) and the unique values per kernel (clustering), which ops still compute in float, and
which metadata the file carries.

The .tflite is read by the runtime's bounds-checked flatbuffer reader, the same structural check
that guards the interpreter (runtime/tflite_check.py; op names from ai-edge-litert's schema): no
TensorFlow import, nothing executed, and a crafted file is a one-line error.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from compressor.inspection.kernel_stats import kernel_stats, summarise_kernels
from compressor.runtime.errors import UserError
from compressor.runtime.tflite_check import check_tflite

# Ops whose input 1 is the layer's weight tensor: what sparsity/clustering is measured on.
_KERNEL_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D", "BATCH_MATMUL"}
# Ops that only convert between float and integer: float tensors there are expected.
_CONVERSION_OPS = {"QUANTIZE", "DEQUANTIZE"}
_FLOAT_TYPES = {"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"}
_INDEX_TYPES = {"INT32", "INT64", "BOOL"}


class TFLiteFile:
    """The parts of a .tflite flatbuffer we report on (subgraph 0: the model's main graph).

    Parsed and checked by the runtime's bounds-checked reader (runtime/tflite_check.py), the
    same check that guards the interpreter: a crafted file is one ``UserError``, not a crash.
    """

    def __init__(self, content: bytes, name: str = "model"):
        from ai_edge_litert import schema_py_generated as schema

        self.content = content
        self.model = check_tflite(content, name)
        self.graph = self.model.subgraphs[0]
        ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        codes = [c.custom or ops.get(c.builtin, f"BUILTIN_{c.builtin}") for c in self.model.operator_codes]
        self.tensors = [_tensor(t) for t in self.graph.tensors]
        self.ops = [(codes[op.opcode], list(op.inputs), list(op.outputs)) for op in self.graph.operators]

    def data(self, tensor: dict) -> np.ndarray | None:
        """The constant data of a tensor (int4 unpacked to int8), or None for activations and sparse constants."""
        raw = self.model.buffer_bytes(self.content, tensor["buffer"])
        shape = [max(d, 1) for d in tensor["shape"]] or [-1]
        if raw is None or tensor["sparse"]:
            return None
        if tensor["dtype"] == "INT4":
            return unpack_int4(raw, int(np.prod(shape)) if shape != [-1] else 2 * len(raw)).reshape(shape)
        dtype = _NUMPY.get(tensor["dtype"])
        return None if dtype is None else np.frombuffer(raw, dtype=dtype).reshape(shape)

    def stored_bytes(self, tensor: dict) -> int:
        """What the constant takes in the file (int4 packs two values per byte)."""
        raw = self.model.buffer_bytes(self.content, tensor["buffer"])
        return 0 if raw is None else len(raw)

    def float_ops(self) -> dict[str, int]:
        """Compute ops with float inputs: only meaningful in a quantized model (int8/int16x8)."""
        counts: Counter = Counter()
        for op, ins, outs in self.ops:
            if op in _CONVERSION_OPS:
                continue
            if any(i >= 0 and self.tensors[i]["dtype"] in _FLOAT_TYPES for i in [*ins[:1], *outs]):
                counts[op] += 1
        return dict(counts)


def _tensor(t) -> dict:
    return {
        "name": t.name,
        "dtype": t.type_name,
        "shape": list(t.shape_signature or t.shape),
        "buffer": t.buffer,
        "sparse": t.sparse,
        "scales": np.asarray(t.scales, dtype=np.float32),
        "zero_points": np.asarray(t.zero_points, dtype=np.int64),
        "quantized_dimension": t.quantized_dimension,
    }


_NUMPY = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "FLOAT64": np.float64,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
}


def unpack_int4(raw: bytes, count: int) -> np.ndarray:
    """TFLite's packed int4: two values per byte, the first in the low nibble, two's complement."""
    packed = np.frombuffer(raw, dtype=np.uint8)
    nibbles = np.stack([packed & 0x0F, packed >> 4], axis=1).ravel()[:count].astype(np.int8)
    if nibbles.size != count:
        raise UserError(f"an int4 tensor holds {nibbles.size} values, its shape needs {count}: the file is corrupt")
    return (nibbles ^ 8) - 8


def float_ops(content: bytes) -> dict[str, int]:
    return TFLiteFile(content).float_ops()


def activation_dtype(f: TFLiteFile) -> str | None:
    """The dtype the model computes in: the most common dtype of the activations its compute ops read.

    Activations are the graph inputs and every op's outputs (constants are neither). QUANTIZE and
    DEQUANTIZE only convert at the edges (float I/O of an int8 model, float16 weights widened), so their
    inputs do not count. int8 for full-integer models, int16 for int16x8, float32 for float, float16 and
    dynamic-range models.
    """
    computed = set(f.graph.inputs) | {i for _, _, outs in f.ops for i in outs}
    dtypes = [f.tensors[i]["dtype"] for op, ins, _ in f.ops if op not in _CONVERSION_OPS for i in ins if i in computed]
    counts = Counter(d for d in dtypes if d not in _INDEX_TYPES)  # computed shapes and indices are not activations
    return counts.most_common(1)[0][0].lower() if counts else None


def weight_dtype(kernels: list[dict]) -> str | None:
    """The dtype most weight kernels are stored in (int8, float16, float32...)."""
    counts = Counter(k["dtype"] for k in kernels)
    return counts.most_common(1)[0][0] if counts else None


def _io(f: TFLiteFile, indices: list[int]) -> list[dict]:
    out = []
    for i in indices:
        t = f.tensors[i]
        entry = {"name": t["name"], "dtype": t["dtype"].lower(), "shape": t["shape"]}
        if len(t["scales"]) == 1:
            entry["quantization"] = {"scale": float(t["scales"][0]), "zero_point": int(t["zero_points"][0])}
        out.append(entry)
    return out


def inspect_tflite(path: Path) -> dict:
    content = Path(path).read_bytes()
    f = TFLiteFile(content, str(path))
    constants = []
    for t in f.tensors:
        values = f.data(t)
        if values is not None:
            constants.append((t, values))
    total = len(content)
    largest = sorted(constants, key=lambda tv: -f.stored_bytes(tv[0]))[:10]
    # int32/int64 constants are shapes and axes, except the int32 biases of quantized layers
    biases = {ins[2] for op, ins, _ in f.ops if op in _KERNEL_OPS and len(ins) > 2 and ins[2] >= 0}
    bias_names = {f.tensors[i]["name"] for i in biases}
    weights = [v for t, v in constants if t["dtype"] not in ("INT32", "INT64") or t["name"] in bias_names]
    from compressor.inspection.weights import layer_name, tflite_kernels

    # TFLite layouts put the output channel first, except depthwise kernels [1, h, w, out].
    stored = tflite_kernels(path)
    kernels = [kernel_stats(name, "", v, 3 if v.ndim == 4 and v.shape[0] == 1 else 0) for name, v in stored.items()]
    # The interpreter hands int4 kernels back unpacked to int8: the file's own type names them.
    packed = {layer_name(t["name"]) for t in f.tensors if t["dtype"] == "INT4"}
    for k in kernels:
        k["dtype"] = "int4" if k["name"].split("#")[0] in packed else k["dtype"]
    quantized = {t["dtype"] for t in f.tensors if len(t["scales"]) and t["dtype"] in ("INT8", "INT16", "UINT8")}
    metadata = [name for name, _ in f.model.metadata]
    return {
        "file": str(path),
        "format": "tflite",
        "size_bytes": total,
        "schema_version": f.model.version,
        "inputs": _io(f, list(f.graph.inputs)),
        "outputs": _io(f, list(f.graph.outputs)),
        "subgraphs": len(f.model.subgraphs),
        "tensors": len(f.tensors),
        "operators": dict(sorted(Counter(op for op, _, _ in f.ops).items())),
        "operator_total": len(f.ops),
        "parameters": int(sum(v.size for v in weights)),
        "constant_bytes": int(sum(f.stored_bytes(t) for t, _ in constants)),
        "largest_tensors": [
            {
                "name": t["name"],
                "dtype": t["dtype"].lower(),
                "shape": t["shape"],
                "bytes": f.stored_bytes(t),
                "share": f.stored_bytes(t) / total,
            }
            for t, v in largest
        ],
        "kernels": kernels,
        "kernel_summary": summarise_kernels(kernels),
        "weight_dtype": weight_dtype(kernels),
        "activation_dtype": activation_dtype(f),
        "float_ops": f.float_ops() if quantized else {},
        "metadata": metadata,
        "signatures": len(f.model.signatures),
    }
