"""Read the weight kernels back out of an exported .tflite: what was pruned or clustered in Keras
must still be sparse or clustered in the file that ships.

The file is opened with LiteRT's own interpreter (``ai_edge_litert``; no TensorFlow, nothing is
run): the kernel of a CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ... op is its input 1, a
constant tensor stored in the flatbuffer. Values come back as stored: int8 codes for an int8
model (a pruned weight is code 0 in symmetric weight quantization), floats otherwise.
TFLite layouts put the output channel first and the input dimension last: FULLY_CONNECTED
[out, in], CONV_2D [out, h, w, in].
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from compressor.recipes.structure import m_by_n_holds, sparsity, unique_values
from compressor.runtime.errors import UserError
from compressor.runtime.tflite_check import check_tflite_file

__all__ = ["tflite_kernels", "sparsity", "unique_values", "m_by_n_holds"]

# Ops whose input 1 is the layer's weight tensor (TRANSPOSE_CONV: input 1 is its kernel too).
KERNEL_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D", "BATCH_MATMUL"}


def tflite_kernels(path: str | Path) -> dict[str, np.ndarray]:
    """{layer name: kernel as stored} for every weighted op, in graph order.

    The name is the Keras layer the converter named the tensor after ("model/conv1/Conv2D;..."
    -> "conv1"; QAT's "quant_conv1" -> "conv1"); a tensor without such a name keeps its own.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist or is not a file; pass a .tflite file")
    interpreter = tensor_keeping_interpreter(path)
    names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the public API lists tensors, not which op reads them
    # A constant is neither a model input nor any op's output (BATCH_MATMUL may multiply two activations).
    computed = {int(i) for op in ops for i in op["outputs"]} | {d["index"] for d in interpreter.get_input_details()}
    # float16 files store a kernel as a float16 constant that a DEQUANTIZE op widens before use.
    widened = {int(op["outputs"][0]): int(op["inputs"][0]) for op in ops if op["op_name"] == "DEQUANTIZE"}
    kernels: dict[str, np.ndarray] = {}
    for op in ops:
        inputs = [int(i) for i in op["inputs"]]
        if op["op_name"] not in KERNEL_OPS or len(inputs) < 2 or inputs[1] < 0:
            continue
        index = widened.get(inputs[1], inputs[1])
        if index in computed - set(widened):
            continue
        value = np.array(interpreter.get_tensor(index))  # a copy: the interpreter owns its buffer
        key = layer_name(names[index])
        kernels[key if key not in kernels else f"{key}#{index}"] = value
    return kernels


def tensor_keeping_interpreter(path: Path) -> Any:
    """A LiteRT interpreter that keeps every tensor readable after invoke, on the builtin kernels:
    a delegate (XNNPACK) may repack constant weights and keeps its intermediates to itself."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    check_tflite_file(path)  # the interpreter's C++ trusts the file: structural faults are refused first
    try:
        with warnings.catch_warnings():  # preserve_all_tensors warns that it is a debugging aid: it is, here
            warnings.simplefilter("ignore")
            return Interpreter(
                model_path=str(path),
                experimental_preserve_all_tensors=True,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            )
    except ValueError as e:
        raise UserError(f"{path} is not a readable TFLite model: {str(e).splitlines()[0][:200]}") from None


def layer_name(tensor_name: str) -> str:
    """'digits_cnn/quant_conv1/Conv2D;digits_cnn/quant_conv1/LastValueQuant/...' -> 'conv1'."""
    first = tensor_name.split(";")[0]
    parts = first.split("/")
    if len(parts) < 3:  # not "<model>/<layer>/<op>": keep the tensor's own name
        return tensor_name
    name = parts[1]
    # tfmot's QuantizeWrapper renames layer X to quant_X; only a QAT tensor carries its FakeQuant op.
    if name.startswith("quant_") and "FakeQuant" in tensor_name:
        name = name[len("quant_") :]
    return name
