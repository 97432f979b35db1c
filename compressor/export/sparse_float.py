"""Float32 .tflite for XNNPACK's sparse kernels: the converter's sparsity optimisation stores pruned
weights sparse (DENSIFY ops), then every depthwise convolution the converter gave TensorFlow's SAME
padding gets it back as an explicit PAD.

Why the second part: the converter folds ZeroPadding2D (and SAME padding) of a 3x3 stride-1
depthwise convolution into SAME padding, and XNNPACK's sparse path refuses SAME padding but fuses
an explicit PAD of 1 on each side into the convolution. For a k x k kernel at stride 1, SAME pads
(k-1)/2 on each side, so the rewritten graph computes exactly the same outputs (checked against the
Keras model like every float export).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compressor.export.tflite import make_converter, run_converter
from compressor.inspection.xnnpack_sparse import sparse_eligibility


def convert_sparse_float(model: Any, data: Any, params: Any) -> tuple[bytes, dict]:
    from compressor.keras_shim import tf

    converter = make_converter(model, "float32")
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    flatbuffer, rewritten = explicit_depthwise_padding(run_converter(converter, "sparse float32"))
    return flatbuffer, {"explicit_padding": rewritten, "xnnpack_sparse": sparse_eligibility(flatbuffer)}


def explicit_depthwise_padding(content: bytes) -> tuple[bytes, int]:
    """``content`` with each SAME-padded stride-1 3x3/5x5 DEPTHWISE_CONV_2D fed by an explicit PAD
    and set to VALID; returns the new flatbuffer and how many convolutions it rewrote."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(content, 0)
    graph, rewritten, operators = model.subgraphs[0], 0, []
    for op in graph.operators:
        if _same_padded_depthwise(model, op, schema):
            operators.append(_pad_before(model, graph, op, schema))
            op.builtinOptions.padding = schema.Padding.VALID
            rewritten += 1
        operators.append(op)
    if not rewritten:
        return content, 0
    graph.operators = operators
    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), rewritten


def _builtin(model: Any, op: Any) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _same_padded_depthwise(model: Any, op: Any, schema: Any) -> bool:
    if _builtin(model, op) != schema.BuiltinOperator.DEPTHWISE_CONV_2D:
        return False
    options, kernel = op.builtinOptions, list(model.subgraphs[0].tensors[op.inputs[1]].shape)
    return (
        options.padding == schema.Padding.SAME
        and options.strideH == options.strideW == 1
        and options.dilationHFactor == options.dilationWFactor == 1
        and kernel[1] == kernel[2]
        and kernel[1] in (3, 5)
    )


def _pad_before(model: Any, graph: Any, op: Any, schema: Any) -> Any:
    """A PAD op of (k-1)/2 on each spatial side producing a new tensor, which becomes ``op``'s input."""
    pad = list(graph.tensors[op.inputs[1]].shape)[1] // 2
    source = graph.tensors[op.inputs[0]]
    amounts = _tensor(model, graph, schema, f"{_name(source)}/explicit_pad", [4, 2], schema.TensorType.INT32)
    model.buffers[amounts.buffer].data = np.array([[0, 0], [pad, pad], [pad, pad], [0, 0]], np.int32).tobytes()
    shape = [d + 2 * pad if i in (1, 2) else d for i, d in enumerate(source.shape)]
    padded = _tensor(model, graph, schema, f"{_name(source)}/padded", shape, source.type)
    if source.shapeSignature is not None:
        padded.shapeSignature = [
            d + 2 * pad if i in (1, 2) and d > 0 else d for i, d in enumerate(source.shapeSignature)
        ]
    pad_op = schema.OperatorT()
    pad_op.opcodeIndex = _opcode(model, schema.BuiltinOperator.PAD, schema)
    pad_op.inputs = [op.inputs[0], graph.tensors.index(amounts)]
    pad_op.outputs = [graph.tensors.index(padded)]
    pad_op.builtinOptionsType, pad_op.builtinOptions = schema.BuiltinOptions.PadOptions, schema.PadOptionsT()
    op.inputs = [pad_op.outputs[0], *list(op.inputs)[1:]]
    return pad_op


def _tensor(model: Any, graph: Any, schema: Any, name: str, shape: list[int], dtype: int) -> Any:
    buffer = schema.BufferT()
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name.encode(), shape, dtype, len(model.buffers) - 1
    graph.tensors.append(tensor)
    return tensor


def _name(tensor: Any) -> str:
    name = tensor.name or b"t"
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)


def _opcode(model: Any, builtin: int, schema: Any) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1
