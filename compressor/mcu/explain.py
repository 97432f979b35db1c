"""Where TFLite Micro and LiteRT part ways on a sample: every op's output, side by side, in int8 steps.

Both interpreters run the same flatbuffer, but not the same kernels: TFLite Micro its reference
kernels, LiteRT optimized ones that may round a requantization differently. When their outputs
differ, the op where the difference first appears says which kernel it is (a softmax's lookup
table, an average pool's rounding...), and how it grows through the graph says whether it matters.
LiteRT is traced with its builtin kernels (XNNPACK keeps intermediates inside the delegate); both
keep every tensor for the trace. When the builtin kernels match TFLite Micro on every op, the
difference measured is XNNPACK's own rounding (LiteRT's default delegate), and first_divergence is None.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compressor.inspection.tflite import TFLiteFile
from compressor.mcu import tflm


def explain(model_path: Path, sample: np.ndarray) -> dict:
    """Per op: its output's largest difference (steps of its int8 grid) and how many values differ."""
    f = TFLiteFile(Path(model_path).read_bytes(), Path(model_path).name)
    outputs = [(k, op, out) for k, (op, _, outs) in enumerate(f.ops) for out in outs if out >= 0]
    micro = tflm.trace_micro(Path(model_path), sample, [out for _, _, out in outputs])
    litert = _litert_trace(model_path, sample, [out for _, _, out in outputs])
    rows = []
    for k, op, out in outputs:
        a, b = micro[out].astype(np.int64).ravel(), litert[out].astype(np.int64).ravel()
        if a.shape != b.shape:  # cannot happen for one flatbuffer; say so rather than guess
            rows.append({"op_index": k, "op": op, "tensor": f.tensors[out]["name"], "error": "shapes differ"})
            continue
        diff = np.abs(a - b)
        rows.append(
            {
                "op_index": k,
                "op": op,
                "tensor": f.tensors[out]["name"],
                "max_abs_diff": int(diff.max(initial=0)),
                "values_differing": int(np.count_nonzero(diff)),
                "values": int(diff.size),
            }
        )
    first = next((r for r in rows if r.get("max_abs_diff", 1) > 0), None)
    return {"first_divergence": first, "ops": rows}


def _litert_trace(model_path: Path, sample: np.ndarray, tensors: list[int]) -> dict[int, np.ndarray]:
    from compressor.inspection.weights import tensor_keeping_interpreter

    interpreter = tensor_keeping_interpreter(Path(model_path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample[None, ...])
    interpreter.invoke()
    return {i: np.array(interpreter.get_tensor(i)) for i in tensors}
