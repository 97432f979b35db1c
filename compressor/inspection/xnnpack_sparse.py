"""Whether XNNPACK can run a float .tflite with its sparse kernels, and whether it will on this CPU.

XNNPACK (LiteRT's default CPU backend) switches a float subgraph to sparse NCHW inference (Fast
Sparse ConvNets, arXiv:1911.09723) only when all of these hold (XNNPACK's
``xnn_subgraph_rewrite_for_nchw`` and the TFLite delegate's README):

- the weights are stored sparse (DENSIFY ops: the converter's sparsity optimisation);
- the subgraph starts with a 3x3 stride-2 CONV_2D on 3 input channels padded 1 on each side, and
  ends with a spatial MEAN (global average pooling);
- in between: 1x1 CONV_2D without padding, 3x3/5x5 DEPTHWISE_CONV_2D with stride 1 or 2 padded
  1 (2) on each side by an explicit PAD (TensorFlow's SAME padding is refused), ADD/MUL of 4D
  tensors, and element-wise activations;
- at least 2/3 of the 1x1 convolutions' weights are zero;
- the CPU is not an x86 with AVX: there XNNPACK's sparse kernels (SSE only) are not used, since
  dense AVX kernels are expected to be faster (``xnn_is_chw_compatible_config``). ARM CPUs (phones,
  Raspberry Pi) qualify.

This module checks the file against those rules and names every one that fails, so a report can
say whether the sparse path can be taken, and why not.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from compressor.runtime.tflite_check import check_tflite

BETWEEN = {
    *("CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "DENSIFY", "ADD", "MUL", "MEAN", "RESIZE_BILINEAR", "HARD_SWISH"),
    *("ABS", "CEIL", "ELU", "FLOOR", "LEAKY_RELU", "LOGISTIC", "NEG", "RELU", "RELU6", "RELU_N1_TO_1", "ROUND"),
    "SQUARE",
}
MIN_ZERO_SHARE = 2 / 3


def cpu_runs_sparse() -> tuple[bool, str]:
    """Whether XNNPACK uses sparse kernels on this CPU at all, with the reason."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "i386", "i686"):
        return True, f"{machine}: XNNPACK's sparse kernels run here"
    try:
        flags = next(
            (
                ln.split(":", 1)[1].split()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("flags")
            ),
            [],
        )
    except OSError:
        flags = []
    if "avx" in flags:
        return False, "x86 with AVX: XNNPACK runs dense kernels here by design (its sparse kernels are SSE-only)"
    return True, "x86 without AVX: XNNPACK's sparse kernels run here"


def sparse_eligibility(content: bytes, name: str = "model") -> dict:
    """{eligible, reasons [...], densify_ops, zero_share_1x1, runs_sparse_here, cpu}: see the module docstring."""
    from ai_edge_litert import schema_py_generated as schema

    check_tflite(content, name)
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    kinds = [codes.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?") for c in model.operatorCodes]
    ops = [(kinds[o.opcodeIndex], o) for o in graph.operators]
    reasons = _structure_reasons(ops, model, schema)
    densify = sum(1 for kind, _ in ops if kind == "DENSIFY")
    if not densify:
        reasons.insert(0, "weights are stored dense: export with sparse encoding (DENSIFY ops)")
    share = _zero_share_1x1(ops, graph, model)
    if share is not None and share < MIN_ZERO_SHARE:
        reasons.append(f"1x1 convolutions are {share:.0%} zeros; XNNPACK needs at least 2/3")
    here, cpu = cpu_runs_sparse()
    return {
        "eligible": not reasons,
        "reasons": reasons,
        "densify_ops": densify,
        "zero_share_1x1": None if share is None else round(share, 4),
        "runs_sparse_here": not reasons and here,
        "cpu": cpu,
    }


def _structure_reasons(ops: list, model, schema) -> list[str]:
    graph = model.subgraphs[0]
    produced_by = {out: (kind, op) for kind, op in ops for out in op.outputs}
    convs = [(kind, op) for kind, op in ops if kind == "CONV_2D"]
    reasons = []
    if not convs:
        return ["no CONV_2D: nothing for XNNPACK's sparse kernels"]
    _, first = convs[0]
    w = list(graph.tensors[first.inputs[1]].shape)
    opt = first.builtinOptions
    if not (w[1:3] == [3, 3] and w[3] == 3 and opt.strideH == 2 and opt.strideW == 2):
        reasons.append(f"the first CONV_2D is not 3x3 stride 2 on 3 channels (filter {w}, stride {opt.strideH})")
    elif not _explicitly_padded(first, 1, produced_by, graph, model.buffers, schema):
        reasons.append("the first CONV_2D is not padded 1 on each side by a PAD (SAME padding is refused)")
    for kind, op in ops:
        if kind != "DEPTHWISE_CONV_2D":
            continue
        k = list(graph.tensors[op.inputs[1]].shape)[1]
        if k not in (3, 5) or not _explicitly_padded(op, k // 2, produced_by, graph, model.buffers, schema):
            name = graph.tensors[op.outputs[0]].name
            label = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
            reasons.append(f"DEPTHWISE_CONV_2D {label[:60]} is not {k}x{k} padded {k // 2} on each side by a PAD")
    if not any(kind == "MEAN" for kind, _ in ops):
        reasons.append("no MEAN (global average pooling) ends the convolutional part")
    outside = sorted({kind for kind, _ in ops if kind not in BETWEEN} - {"FULLY_CONNECTED", "SOFTMAX", "RESHAPE"})
    if outside:
        reasons.append(f"ops XNNPACK cannot run in NCHW layout: {', '.join(outside)}")
    return reasons


def _explicitly_padded(op, pad: int, produced_by: dict, graph, buffers, schema) -> bool:
    """VALID padding fed by a PAD of ``pad`` on each spatial side (what XNNPACK fuses into the conv)."""
    if op.builtinOptions.padding != schema.Padding.VALID:
        return False
    kind, producer = produced_by.get(op.inputs[0], ("", None))
    if kind != "PAD":
        return False
    data = buffers[graph.tensors[producer.inputs[1]].buffer].data
    amounts = np.frombuffer(bytes(data), dtype=np.int32).reshape(-1, 2).tolist() if data is not None else None
    return amounts == [[0, 0], [pad, pad], [pad, pad], [0, 0]]


def _zero_share_1x1(ops: list, graph, model) -> float | None:
    """Zeros in the 1x1 convolutions' weights (a sparse-encoded tensor stores only its non-zeros)."""
    total = zeros = 0
    produced_by = {out: (kind, op) for kind, op in ops for out in op.outputs}
    for kind, op in ops:
        if kind != "CONV_2D":
            continue
        shape = list(graph.tensors[op.inputs[1]].shape)
        if shape[1:3] != [1, 1]:
            continue
        size = int(np.prod(shape))
        source, producer = op.inputs[1], produced_by.get(op.inputs[1], ("", None))[1]
        if producer is not None:
            source = producer.inputs[0]
        data = model.buffers[graph.tensors[source].buffer].data
        values = np.frombuffer(bytes(data), dtype=np.float32) if data is not None else np.zeros(0, np.float32)
        total += size
        zeros += size - int(np.count_nonzero(values))
    return zeros / total if total else None
