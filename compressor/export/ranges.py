"""Activation ranges better than min/max: percentile or MSE per tensor, injected into the calibration.

TFLite's calibrator records each activation tensor's min and max over the calibration sample
(written into the calibrated float model's tensors), and the int8 grid spans exactly that range:
one outlier stretches the step of every other value. Neither the converter nor the LiteRT
Quantizer 0.10 offers another rule for activations (AEQ's MSE/OCTAV choose weight scales only;
its calibration keeps a moving average of min/max). Clipping the calibration data is not the
same: the model's own activations still reach their outliers. So the ranges are replaced where
the converter keeps them: the calibrated model (``_experimental_calibrate_only``, what the
quantization debugger holds) gets new min/max per tensor, then is quantized as usual.

Per tensor, a histogram (HIST_BINS bins over the calibrated [min, max]) of its values over the same
sample gives:
- ``percentile:P``: [P_(100-P), P_P] of the values (McKinstry et al. 2018; TensorRT's percentile);
- ``mse``: the clip [a*min, b*max], a, b in (0, 1], whose 8-bit asymmetric grid has the least mean
  squared error on the values, clipping included (Banner et al. 2019; NNCF/TensorRT "mse").
Ranges only shrink and always keep 0 (a zero point must exist). The model's inputs and outputs
keep their min/max: the application feeds and reads those.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from compressor.runtime.errors import UserError

HIST_BINS = 1 << 14
# Fractions of the min/max range the MSE search tries: fine near 1, down to 1e-4 for far outliers.
CLIP_RATIOS = np.unique(np.concatenate([np.geomspace(1e-4, 0.02, 40), np.linspace(0.02, 1.0, 99)]))


def clip_range(counts: np.ndarray, lo: float, hi: float, method: str) -> tuple[float, float]:
    """The range ``method`` chooses for a tensor whose values fall into ``counts`` over [lo, hi]."""
    if method == "minmax" or hi <= lo or counts.sum() == 0:
        return lo, hi
    edges = np.linspace(lo, hi, len(counts) + 1)
    if method.startswith("percentile:"):
        p = float(method.split(":")[1]) / 100.0
        cdf = np.cumsum(counts) / counts.sum()
        new_lo = float(np.interp(1.0 - p, cdf, edges[1:])) if lo < 0 else lo
        new_hi = float(np.interp(p, cdf, edges[1:])) if hi > 0 else hi
    else:
        new_lo, new_hi = _least_squares(counts, edges, lo, hi)
    return min(max(new_lo, lo), 0.0), max(min(new_hi, hi), 0.0)


def _least_squares(counts: np.ndarray, edges: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """[a*lo, b*hi] with the least 8-bit quantization MSE over the histogram (bin centres stand for
    their values); a and b by coordinate descent over CLIP_RATIOS, b first (two rounds)."""
    centres = (edges[:-1] + edges[1:]) / 2
    used = counts > 0
    x, w = centres[used], counts[used].astype(np.float64)
    best = [1.0, 1.0]
    for _ in range(2):
        for end in (1, 0):
            errors = []
            for ratio in CLIP_RATIOS:
                trial = list(best)
                trial[end] = ratio
                errors.append(_grid_error(x, w, min(trial[0] * lo, 0.0), max(trial[1] * hi, 0.0)))
            best[end] = float(CLIP_RATIOS[int(np.argmin(errors))])
    return best[0] * lo, best[1] * hi


def _grid_error(x: np.ndarray, w: np.ndarray, lo: float, hi: float) -> float:
    scale = (hi - lo) / 255.0
    if scale <= 0:
        return float(np.dot(w, x**2))
    q = np.clip(np.round((x - lo) / scale), 0, 255) * scale + lo
    return float(np.dot(w, (q - x) ** 2))


def _tensors(tree: Any) -> dict[int, tuple[float, float]]:
    """Index -> calibrated (min, max) of every activation tensor of the main graph but its inputs/outputs."""
    graph = tree.subgraphs[0]
    ends = set(graph.inputs) | set(graph.outputs)
    found = {}
    for i, tensor in enumerate(graph.tensors):
        q = tensor.quantization
        if i in ends or q is None or q.min is None or q.max is None or len(q.min) != 1:
            continue
        if tree.buffers[tensor.buffer].data is not None:  # a constant: weights are not calibrated
            continue
        found[i] = (float(q.min[0]), float(q.max[0]))
    return found


def histograms(model: bytes, sample: np.ndarray, tensors: dict[int, tuple[float, float]]) -> dict[int, np.ndarray]:
    """Per tensor: counts of its values over ``sample`` in HIST_BINS bins over its (min, max)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with warnings.catch_warnings():  # preserve_all_tensors warns that it is a debugging aid: it is, here
        warnings.simplefilter("ignore")
        interpreter = Interpreter(
            model_content=model,
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    interpreter.allocate_tensors()
    feed = interpreter.get_input_details()[0]["index"]
    counts = {i: np.zeros(HIST_BINS, np.int64) for i, (lo, hi) in tensors.items() if hi > lo}
    for row in sample:
        interpreter.set_tensor(feed, row[None, ...].astype(np.float32))
        interpreter.invoke()
        for i in list(counts):
            lo, hi = tensors[i]
            try:
                values = interpreter.get_tensor(i).ravel()
            except ValueError:  # not kept by this interpreter: the tensor keeps its min/max
                del counts[i]
                continue
            counts[i] += np.bincount(_bins(values, lo, hi), minlength=HIST_BINS)[:HIST_BINS]
    return counts


def _bins(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    index = ((values.astype(np.float64) - lo) / (hi - lo) * HIST_BINS).astype(np.int64)
    return np.clip(index, 0, HIST_BINS - 1)


def with_ranges(calibrated: bytes, sample: np.ndarray, method: str) -> tuple[bytes, dict]:
    """The calibrated model with each activation's range chosen by ``method``, and what changed."""
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    tensors = _tensors(tree)
    try:
        counts = histograms(calibrated, sample, tensors)
    except (RuntimeError, ValueError) as e:
        raise UserError(f"activation_ranges {method}: the calibrated model does not run: {str(e)[:200]}") from None
    graph, narrowed = tree.subgraphs[0], []
    for i, hist in counts.items():
        lo, hi = tensors[i]
        new_lo, new_hi = clip_range(hist, lo, hi, method)
        graph.tensors[i].quantization.min = np.array([new_lo], np.float32)
        graph.tensors[i].quantization.max = np.array([new_hi], np.float32)
        name = graph.tensors[i].name
        name = name.decode() if isinstance(name, bytes) else str(name)
        narrowed.append(
            {"tensor": name, "minmax": [lo, hi], "range": [new_lo, new_hi], "kept": (new_hi - new_lo) / (hi - lo)}
        )
    narrowed.sort(key=lambda r: r["kept"])
    info = {"method": method, "tensors": len(narrowed), "narrowest": narrowed[:5]}
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree)), info
