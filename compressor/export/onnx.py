"""ONNX export with tf2onnx: float models from Keras, quantized ones from their .tflite (QDQ ONNX)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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
    """.tflite -> ONNX; a full-integer model becomes QDQ ONNX with the same scales and zero points."""
    tf2onnx = _tf2onnx()
    return _convert(lambda: tf2onnx.convert.from_tflite(str(tflite), opset=opset), out, str(tflite))


def _convert(fn, out: Path, what: str) -> Path:
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

    onnx.checker.check_model(proto)
    record_io_quantization(proto)
    return write_bytes(out, proto.SerializeToString())


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
