"""ONNX export with tf2onnx: float models from Keras, quantized ones from their .tflite (QDQ ONNX).

A float16 .tflite's weights stay float16 in its ONNX (store_float16_weights): tf2onnx alone widens
them to float32 and the file is as large as the float32 one.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from compressor.runtime.atomic import write_bytes
from compressor.runtime.errors import UserError
from compressor.runtime.quiet import native_stderr_silenced

DEFAULT_OPSET = 17


def _tf2onnx():
    from compressor.keras_shim import tf  # noqa: F401  (tf2onnx must see the legacy-Keras TF)

    with native_stderr_silenced():
        import tf2onnx
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    return tf2onnx


def keras_to_onnx(model: Any, out: Path, opset: int = DEFAULT_OPSET) -> Path:
    """Keras model -> ONNX with a dynamic batch dimension (explicit input signature named 'input')."""
    from compressor.keras_shim import tf

    tf2onnx = _tf2onnx()
    spec = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="input")]
    return _convert(lambda: tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset), out, "Keras model")


def tflite_to_onnx(tflite: Path, out: Path, opset: int = DEFAULT_OPSET) -> Path:
    """.tflite -> ONNX; a full-integer model becomes QDQ ONNX with the same scales and zero points,
    and the weights a float16 model stores in float16 are float16 initializers in the ONNX too."""
    halves = float16_weights(Path(tflite).read_bytes(), str(tflite))
    tf2onnx = _tf2onnx()
    return _convert(
        lambda: tf2onnx.convert.from_tflite(str(tflite), opset=opset),
        out,
        str(tflite),
        rewrite=lambda proto: store_float16_weights(proto, halves),
    )


def _convert(fn, out: Path, what: str, rewrite=None) -> Path:
    import warnings

    try:
        # tf2onnx's tflite path uses the deprecated tf.lite.Interpreter: nothing a user can act on.
        with native_stderr_silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proto, _ = fn()
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"ONNX export of {what} failed: {first[:300]}") from None
    import onnx

    if rewrite is not None:
        rewrite(proto)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:  # tf2onnx wrote a graph ONNX itself rejects: not a bug of ours
        first = (str(e).strip().splitlines() or ["invalid graph"])[0]
        raise UserError(f"ONNX export of {what} failed: tf2onnx wrote an invalid ONNX graph ({first[:300]})") from None
    record_io_quantization(proto)
    return write_bytes(out, proto.SerializeToString())


def float16_weights(content: bytes, name: str = "model") -> set[bytes]:
    """Fingerprints (_fingerprint) of the weights a .tflite stores in float16: constants a DEQUANTIZE widens.

    TFLite's float16 recipe keeps each weight as a float16 constant and widens it to float32 before use.
    Values the file also holds in a float32 constant are left out: an ONNX initializer with those values
    could come from either, and only weights that were float16 are narrowed. Subgraph 0 only.
    """
    from compressor.inspection.tflite import TFLiteFile

    f = TFLiteFile(content, name)
    widened = {ins[0] for op, ins, _ in f.ops if op == "DEQUANTIZE" and ins}
    halves = {_fingerprint(f.data(f.tensors[i])) for i in widened if _constant(f, i, "FLOAT16")}
    if not halves:  # a float32 or integer model: nothing to narrow, no float32 constant to read
        return set()
    return halves - {_fingerprint(f.data(t)) for i, t in enumerate(f.tensors) if _constant(f, i, "FLOAT32")}


def _constant(f, index: int, dtype: str) -> bool:
    return index >= 0 and f.tensors[index]["dtype"] == dtype and f.data(f.tensors[index]) is not None


def _fingerprint(values: np.ndarray) -> bytes:
    """The tensor's values whatever their order: tf2onnx transposes kernels (OHWI -> OIHW) and reshapes them."""
    flat = np.sort(values.astype(np.float32).ravel() + np.float32(0))  # + 0 makes -0.0 0.0: one key for equal values
    return hashlib.sha256(flat.tobytes()).digest()


def store_float16_weights(proto, halves: set[bytes]) -> None:
    """Store as float16 each float32 initializer that holds one of the .tflite's float16 weights.

    tf2onnx folds the DEQUANTIZE of a float16 weight into a float32 initializer (twice the bytes). Each
    one, found by its values (``halves``, from float16_weights), goes back to float16 with a Cast to
    float32 after it: the model still computes in float32, as TFLite's float16 recipe does. Computing
    in float16 instead gains nothing on ONNX Runtime's CPU provider (1.32, x86-64): it has float32
    kernels only for Conv, MatMul, Gemm, pooling, BatchNormalization, Softmax, Add, Mul, Sigmoid...,
    wraps each such op of a float16 graph in Casts and rounds every activation to float16 in between.
    The Casts here act on constants, which ONNX Runtime folds when it loads the model. The values were
    float16 already, so narrowing them is exact: the outputs equal those of tf2onnx's float32 initializers.
    """
    if not halves:
        return
    from onnx import TensorProto, helper, numpy_helper
    from onnxconverter_common.float16 import convert_tensor_float_to_float16

    graph = proto.graph
    # Quantization parameters stay float32 initializers: QDQ fusion and record_io_quantization read them
    # there. An initializer that is also a graph input is a default a caller may override in float32.
    keep = {n for node in graph.node if node.op_type in _QDQ for n in node.input[1:]} | {i.name for i in graph.input}
    taken = {i.name for i in graph.initializer} | {n for node in graph.node for n in [node.name, *node.output]}
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or init.name in keep:
            continue
        values = numpy_helper.to_array(init)
        with np.errstate(over="ignore"):  # a value past float16's range is simply not one of the weights
            exact = np.array_equal(values.astype(np.float16).astype(np.float32), values, equal_nan=True)
        if not exact or _fingerprint(values) not in halves:
            continue
        name, init.name = init.name, _unique(f"{init.name}_float16", taken)
        # No clamping (0 and inf): the values are float16 numbers, narrowed without change.
        convert_tensor_float_to_float16(init, min_positive_val=0.0, max_finite_val=float("inf"))
        casts.append(
            helper.make_node("Cast", [init.name], [name], name=_unique(f"{name}_cast", taken), to=TensorProto.FLOAT)
        )
    nodes = casts + list(graph.node)  # the Casts first: nodes must be in topological order
    del graph.node[:]
    graph.node.extend(nodes)


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


_QDQ = {"QuantizeLinear", "DequantizeLinear"}

# Tensors a quantized input may pass through before its DequantizeLinear (layout-only ops).
_PASS_THROUGH = {"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten"}


def record_io_quantization(proto) -> None:
    """Write the int8 input/output scale and zero point into the model's metadata.

    ONNX tensors carry no quantization parameters: they live on the QDQ nodes around them.
    ONNX Runtime exposes metadata_props without the onnx package, so the device runtime reads
    them there (keys ``compressor.input_quantization`` / ``compressor.output_quantization``).
    """
    import json

    from onnx import numpy_helper

    graph = proto.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producers = {out: node for node in graph.node for out in node.output}

    def params(node) -> dict | None:
        scale, zero = (inits.get(n) for n in (list(node.input) + [None, None])[1:3])
        if scale is None or scale.size != 1:
            return None
        return {"scale": float(scale.reshape(())), "zero_point": int(zero.reshape(())) if zero is not None else 0}

    def downstream_dequantize(name: str, depth: int = 0) -> dict | None:
        for node in consumers.get(name, []):
            if node.op_type == "DequantizeLinear":
                return params(node)
            if node.op_type in _PASS_THROUGH and depth < 4:
                found = downstream_dequantize(node.output[0], depth + 1)
                if found:
                    return found
        return None

    found = {"input": downstream_dequantize(graph.input[0].name)}
    node = producers.get(graph.output[0].name)
    while node is not None and node.op_type in _PASS_THROUGH:
        node = producers.get(node.input[0])
    found["output"] = params(node) if node is not None and node.op_type == "QuantizeLinear" else None
    for key, value in found.items():
        if value is not None:
            entry = proto.metadata_props.add()
            entry.key, entry.value = f"compressor.{key}_quantization", json.dumps(value)
