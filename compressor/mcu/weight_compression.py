"""TFLite Micro weight compression: clustered int8 kernels stored as lookup tables, decoded on the device.

Weight clustering leaves a kernel with at most 16 distinct int8 values (per output channel for
convolutions: per-channel scales and folded BatchNorm multiply each channel), but a .tflite stores one
int8 per weight. tflite-micro's compression tool (``tflite_micro.compression``, LUT method) stores a
tensor of n values with at most 2^b distinct ones per table as b-bit indices plus the tables, and
inserts a DECODE operator (custom op TFLM_DECODE) before each consumer that expands it at run time:

    flash(tensor) = ceil(n * b / 8) + 16 (header) + tables * 2^b-or-fewer entries * itemsize

Exact (a table lookup), so the compressed model's outputs must equal the original's bit for bit.
Each compressed tensor also adds ~400 bytes of flatbuffer metadata (the DECODE op, an ancillary and
a decoded tensor, both named after the original), so small kernels are left alone when compressing
them alone does not shrink the file. The decoded tensor lives in RAM while its consumer runs: in the
arena, or in a separate "alternate decompression memory" that holds the largest decoded tensor.
RAM is measured on the host interpreter (64-bit pointers: slightly above a 32-bit MCU).
"""

from __future__ import annotations

import inspect
import time
import warnings
from dataclasses import dataclass

import numpy as np

from compressor.inspection.tflite import TFLiteFile
from compressor.runtime.errors import UserError
from compressor.runtime.quiet import native_stderr_silenced

MAX_BITS = 4  # 16 entries: what clustering produces; wider indices save little and decode slower
_HEADER_BYTES = 16  # the DECODE common metadata before the value tables
# Ops whose input 1 is the weight tensor (a constant, except a BATCH_MATMUL of two activations).
_WEIGHT_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"}
_MAX_ARENA = 512 << 20
_INSTALL = "pip install 'compressor[mcu]'"


@dataclass(frozen=True)
class _Plan:
    """How one constant tensor would be stored: one table (axis None) or one per slice along axis."""

    index: int
    name: str
    shape: list[int]
    axis: int | None
    distinct: int  # the most distinct values in one table
    bits: int
    bytes_before: int
    bytes_after: int  # indices + header + tables (the file adds the DECODE metadata)

    def describe(self, saved: int) -> dict:
        return {
            "name": self.name,
            "shape": self.shape,
            "lut": "per_tensor" if self.axis is None else f"per_channel(axis={self.axis})",
            "distinct_values": self.distinct,
            "bits": self.bits,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "file_bytes_saved": saved,
        }


def _tflm():
    """The installed ``tflite_micro`` if it can compress and run DECODE, else a one-line UserError."""
    try:
        import tflite_micro
        from tflite_micro import compression, runtime
    except ImportError as e:
        raise UserError(f"tflite-micro with weight compression is not installed ({e}); {_INSTALL}") from None
    params = inspect.signature(runtime.Interpreter.from_bytes).parameters
    if not hasattr(compression, "compress") or "alt_decompression_memory_size" not in params:
        raise UserError(f"the installed tflite-micro has no DECODE support; upgrade it: {_INSTALL}")
    return tflite_micro


def _bits(distinct: int) -> int:
    return max(1, (distinct - 1).bit_length())


def _plan(index: int, tensor: dict, values: np.ndarray, max_bits: int) -> _Plan:
    """The cheaper of one table and one table per channel (the kernels take axis 0 or the last)."""
    axes: list[int | None] = [None]
    qdim = tensor["quantized_dimension"]
    if len(tensor["scales"]) > 1 and qdim in (0, values.ndim - 1):
        axes.append(qdim)
    plans = []
    for axis in axes:
        slices = [values] if axis is None else list(np.moveaxis(values, axis, 0))
        distinct = max(len(np.unique(s)) for s in slices)
        bits = _bits(distinct)
        after = -(-values.size * bits // 8) + _HEADER_BYTES + len(slices) * distinct * values.itemsize
        plans.append(_Plan(index, tensor["name"], tensor["shape"], axis, distinct, bits, values.nbytes, after))
    fitting = [p for p in plans if p.bits <= max_bits]
    if fitting:
        return min(fitting, key=lambda p: p.bytes_after)
    return min(plans, key=lambda p: (p.distinct, p.bytes_after))  # the closest miss, for the message


def _plans(f: TFLiteFile, max_bits: int) -> tuple[list[_Plan], list[dict]]:
    """Plans for the int8 weights that fit max_bits, and why each other weight was refused."""
    weights = sorted({ins[1] for op, ins, _ in f.ops if op in _WEIGHT_OPS and len(ins) > 1 and ins[1] >= 0})
    plans, refused = [], []
    for index in weights:
        tensor = f.tensors[index]
        values = f.data(tensor)
        if values is None:
            continue  # an activation (BATCH_MATMUL of two inputs) or a sparse constant
        if tensor["dtype"] != "INT8":
            refused.append({"name": tensor["name"], "why": f"not int8: stored as {tensor['dtype'].lower()}"})
            continue
        plan = _plan(index, tensor, values, max_bits)
        if plan.bits > max_bits:
            per = "in the tensor" if plan.axis is None else "per channel"
            why = f"too many distinct values: {plan.distinct} {per} need {plan.bits} bits (max {max_bits})"
            refused.append({"name": tensor["name"], "why": why})
        else:
            plans.append(plan)
    return plans, refused


def _compress(tflm, model: bytes, plans: list[_Plan]) -> tuple[bytes, list[str]]:
    """The tool's compressed flatbuffer, and the warnings it gave (silenced: kept for the info dict)."""
    spec = tflm.compression.spec
    specs = [
        spec.Tensor(
            subgraph=0,
            tensor=p.index,
            compression=[
                spec.LookUpTableCompression(
                    index_bitwidth=p.bits, mode=spec.PerTensor() if p.axis is None else spec.PerChannel(axis=p.axis)
                )
            ],
        )
        for p in plans
    ]
    with warnings.catch_warnings(record=True) as caught, native_stderr_silenced():
        warnings.simplefilter("always")
        out = bytes(tflm.compression.compress(model, specs))
    return out, [str(w.message) for w in caught]


def _choose(tflm, model: bytes, plans: list[_Plan], refused: list[dict]) -> dict[int, int]:
    """Plan index -> file bytes saved when compressed alone; tensors that grow the file are refused."""
    error = tflm.compression.compressor.CompressionError
    saved = {}
    for i, plan in enumerate(plans):
        try:
            alone, _ = _compress(tflm, model, [plan])
        except error as e:  # e.g. an input its kernel needs constant
            refused.append({"name": plan.name, "why": f"the tool refuses it: {e}"})
            continue
        if len(alone) < len(model):
            saved[i] = len(model) - len(alone)
        else:
            grown = len(alone) - len(model)
            why = f"would grow the file: {plan.bits} bits, but tables and DECODE metadata add {grown} bytes"
            refused.append({"name": plan.name, "why": why})
    return saved


def _reason(refused: list[dict]) -> str:
    if not refused:
        return "the model has no constant weight tensor (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED...)"
    causes = sorted({r["why"].split(":")[0] for r in refused})
    return f"no weight tensor is worth a lookup table ({len(refused)} refused: {'; '.join(causes)})"


def compress_weights(model: bytes, max_bits: int = MAX_BITS) -> tuple[bytes | None, dict]:
    """Store every int8 weight of at most 2^max_bits distinct values (per table) as a TFLM lookup table.

    Returns the compressed flatbuffer, or None when nothing qualifies or tflite-micro cannot compress
    (``info["reason"]`` says which); ``info`` has per-tensor figures, flash bytes and decode RAM.
    """
    if not 1 <= max_bits <= 7:
        raise UserError(f"max_bits must be 1 to 7 (the LUT index widths TFLM decodes), got {max_bits}")
    start = time.perf_counter()
    model = bytes(model)
    plans, refused = _plans(TFLiteFile(model, "model"), max_bits)
    info: dict = {"flash_bytes_before": len(model), "max_bits": max_bits, "tensors": [], "refused": refused}
    try:
        tflm = _tflm()
    except UserError as e:
        return None, {**info, "reason": str(e)}
    saved = _choose(tflm, model, plans, refused)
    if not saved:
        return None, {**info, "reason": _reason(refused), "seconds": time.perf_counter() - start}
    chosen = [plans[i] for i in saved]
    compressed, notes = _compress(tflm, model, chosen)
    TFLiteFile(compressed, "compressed model")  # the structural check every .tflite we write passes
    info.update(
        tensors=[p.describe(saved[i]) for i, p in zip(saved, chosen)],
        flash_bytes_after=len(compressed),
        ratio=len(compressed) / len(model),
        weight_bytes_before=sum(p.bytes_before for p in chosen),
        weight_bytes_after=sum(p.bytes_after for p in chosen),
        notes=notes,
        ram=decode_ram(model, compressed),
        seconds=time.perf_counter() - start,
    )
    return compressed, info


def _runs(runtime, model: bytes, arena: int, alt: int = 0) -> bool:
    """Whether the interpreter constructs (plans the arena) and invokes with this much memory."""
    try:
        with native_stderr_silenced():
            runtime.Interpreter.from_bytes(model, arena_size=arena, alt_decompression_memory_size=alt).invoke()
    except RuntimeError:
        return False
    return True


def _smallest(fits, what: str) -> int:
    """The smallest size in bytes for which fits(size) holds: doubling, then a binary search."""
    high = 1024
    while not fits(high):
        high *= 2
        if high > _MAX_ARENA:
            raise UserError(f"the model does not run in TFLite Micro with {_MAX_ARENA >> 20} MiB of {what}")
    # Never below 1 KiB: TFLM's allocator segfaults, rather than failing, on a few hundred bytes.
    low = high // 2 if high > 1024 else 1023
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high


def decode_ram(original: bytes, compressed: bytes) -> dict:
    """The RAM decoding costs, either way TFLM offers: decoded tensors in the arena, or in alt memory."""
    runtime = _tflm().runtime
    before = _smallest(lambda a: _runs(runtime, original, a), "arena")
    inline = _smallest(lambda a: _runs(runtime, compressed, a), "arena")
    # Too small an alt memory falls back to the arena: size the arena for a roomy alt memory first.
    with_alt = _smallest(lambda a: _runs(runtime, compressed, a, inline), "arena")
    alt = _smallest(lambda m: _runs(runtime, compressed, with_alt, m), "alternate decompression memory")
    return {
        "arena_bytes_before": before,
        "arena_bytes_after": inline,
        "decode_ram_bytes": inline - before,
        "alt_decompression_memory_bytes": alt,
        "arena_bytes_with_alt_memory": with_alt,
    }


def _invoke_all(runtime, model: bytes, samples: np.ndarray, outputs: int) -> list[np.ndarray]:
    """Every output for every sample, one sample per invoke; arena twice the smallest that runs."""
    arena = 2 * _smallest(lambda a: _runs(runtime, model, a), "arena")
    with native_stderr_silenced():
        interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)
        results: list[list[np.ndarray]] = [[] for _ in range(outputs)]
        for sample in samples:
            interpreter.set_input(sample[None], 0)
            interpreter.invoke()
            for k in range(outputs):
                results[k].append(np.array(interpreter.get_output(k)))
    return [np.concatenate(r) for r in results]


def _samples(f: TFLiteFile, inputs: np.ndarray) -> np.ndarray:
    if len(f.graph.inputs) != 1:
        raise UserError(f"check_compressed feeds one input, the model has {len(f.graph.inputs)}")
    tensor = f.tensors[f.graph.inputs[0]]
    inputs = np.asarray(inputs)
    want = np.dtype(tensor["dtype"].lower())
    if inputs.dtype != want:
        raise UserError(f"inputs are {inputs.dtype}, the model takes {want}: quantize them with its input scale")
    if list(inputs.shape[1:]) != [max(d, 1) for d in tensor["shape"][1:]] or len(inputs) == 0:
        raise UserError(f"inputs of shape {list(inputs.shape)} do not match the model's input {tensor['shape']}")
    return inputs


def check_compressed(original: bytes, compressed: bytes, inputs: np.ndarray) -> dict:
    """Run both models in the TFLM interpreter on the same int8 inputs (a batch, one sample per invoke).

    Decoding a lookup table is exact: ``identical`` must be True, ``max_abs_diff`` 0.
    """
    start = time.perf_counter()
    runtime = _tflm().runtime
    f = TFLiteFile(bytes(original), "original model")
    samples = _samples(f, inputs)
    outputs = len(f.graph.outputs)
    before = _invoke_all(runtime, bytes(original), samples, outputs)
    after = _invoke_all(runtime, bytes(compressed), samples, outputs)
    diff = max(int(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64)))) for a, b in zip(before, after))
    top1 = np.argmax(before[0].reshape(len(samples), -1), 1) == np.argmax(after[0].reshape(len(samples), -1), 1)
    return {
        "samples": len(samples),
        "max_abs_diff": diff,
        "top1_agreement": float(np.mean(top1)),
        "identical": all(np.array_equal(a, b) for a, b in zip(before, after)),
        "seconds": time.perf_counter() - start,
    }
