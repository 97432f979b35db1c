"""The derived student starts from the teacher: each narrowed layer keeps its strongest channels.

A student drawn from random weights must learn everything again, and on a small task it did not
(6.5% on a residual model, below chance). Here the student built by ``distill.widened`` (the
teacher's topology, every Dense/Conv but the classifier ``width`` times as wide) is filled with
the teacher's own weights, as channel pruning would (Li et al. 2017, "Pruning Filters for
Efficient ConvNets", arXiv:1608.08710): of each narrowed layer's output channels, the k with the
largest L1 kernel norm sum_{i} |W[..., i, c]| are kept, and every layer that reads them (BatchNorm,
DepthwiseConv2D, the next Dense/Conv's input axis, Flatten's positions) is sliced to match.
Layers whose outputs are added or multiplied together (residual Add, squeeze-excite Multiply)
must keep the same channels: they form one group, ranked by their summed norms.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compressor.datasets.splits import as_split
from compressor.recipes.rebuild import WIDTH_KEYS, classifier_name, editable_config, name_of, producers

ELEMENTWISE = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
UNSUPPORTED = {"Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"}  # kernels are [..., out, in]


def _groups(config: dict) -> tuple[dict[str, str | None], dict[str, str]]:
    """(layer -> the width layer whose channels its output carries, width layer -> its group root)."""
    parent: dict[str, str] = {}

    def root(n: str) -> str:
        while parent.setdefault(n, n) != n:
            n = parent[n]
        return n

    inputs, source = producers(config), {}
    for layer in config["layers"]:
        name, kind = name_of(layer), layer["class_name"]
        srcs = [source.get(i) for i in inputs.get(name, [])]
        if kind in WIDTH_KEYS:
            source[name] = root(name)
        elif kind in ELEMENTWISE:
            found = [s for s in srcs if s is not None]
            for other in found[1:]:
                parent[root(other)] = root(found[0])
            source[name] = found[0] if found else None
        elif kind in ("Concatenate", "Flatten", "InputLayer") or len(srcs) != 1:
            source[name] = None
        else:
            source[name] = srcs[0]
    return source, {n: root(n) for n in parent}


def _importance(layer: Any) -> np.ndarray:
    """L1 norm of each output channel's kernel (a SeparableConv's pointwise kernel)."""
    kernel = layer.get_weights()[1 if type(layer).__name__.startswith("Separable") else 0]
    return np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)


def _kept_channels(teacher: Any, student: Any, groups: dict[str, str], head: str) -> dict:
    """Width layer -> the sorted teacher channels it keeps (None for the classifier: all)."""
    members: dict[str, list[str]] = {}
    for name, group in groups.items():
        members.setdefault(group, []).append(name)
    kept: dict[str, Any] = {head: None}
    for names in members.values():
        if names == [head]:
            continue
        widths = {int(student.get_layer(n).get_weights()[-1].shape[-1]) for n in names}
        if head in names or len(widths) != 1:
            raise ValueError(f"layers {', '.join(names)} are joined but do not shrink alike")
        score = sum(_importance(teacher.get_layer(n)) for n in names)
        choice = np.sort(np.argsort(-score, kind="stable")[: widths.pop()])
        kept.update({n: choice for n in names})
    return kept


def _out_channels(layer: Any) -> int:
    shape = layer.output_shape
    return int(shape[-1]) if isinstance(shape, tuple) else -1


def _slice(array: np.ndarray, axis: int, idx: np.ndarray | None) -> np.ndarray:
    return array if idx is None else np.take(array, idx, axis=axis)


def _layer_weights(kind: str, teacher_w: list, student_w: list, kin, kout, c_in: int) -> list:
    if kind in WIDTH_KEYS and kind.startswith("Separable"):
        depthwise, pointwise = teacher_w[0], teacher_w[1]
        mult = depthwise.shape[-1]
        pin = None if kin is None else (np.asarray(kin)[:, None] * mult + np.arange(mult)).ravel()
        out = [_slice(depthwise, -2, kin), _slice(_slice(pointwise, -2, pin), -1, kout)]
        return out + [_slice(w, -1, kout) for w in teacher_w[2:]]
    if kind in WIDTH_KEYS:
        return [_slice(_slice(teacher_w[0], -2, kin), -1, kout)] + [_slice(w, -1, kout) for w in teacher_w[1:]]
    out = []
    for t, s in zip(teacher_w, student_w):  # BatchNorm, DepthwiseConv2D, PReLU...: the channel axis
        for axis in range(t.ndim):
            if kin is not None and t.shape[axis] == c_in and s.shape[axis] == len(kin):
                t = np.take(t, kin, axis=axis)
        out.append(t)
    return out


def init_from_teacher(teacher: Any, student: Any) -> dict:
    """Copy the teacher's strongest channels into ``student`` (same topology, narrower); returns the
    kept channel count per narrowed layer. Raises ValueError where the topology does not allow it."""
    config = editable_config(teacher, "distill (student from teacher)")
    if any(layer["class_name"] in UNSUPPORTED for layer in config["layers"]):
        raise ValueError("transposed convolutions are not sliced")
    _, groups = _groups(config)
    kept = _kept_channels(teacher, student, groups, classifier_name(config))
    inputs, out_idx = producers(config), {}
    for layer in config["layers"]:
        name, kind = name_of(layer), layer["class_name"]
        t_layer, s_layer = teacher.get_layer(name), student.get_layer(name)
        ins = inputs.get(name, [])
        kin = out_idx.get(ins[0]) if ins else None
        c_in = _out_channels(teacher.get_layer(ins[0])) if ins else -1
        out_idx[name] = _propagate(kind, name, ins, kept, out_idx, teacher, kin)
        if t_layer.weights:
            weights = _layer_weights(kind, t_layer.get_weights(), s_layer.get_weights(), kin, kept.get(name), c_in)
            shapes = [w.shape for w in s_layer.get_weights()]
            if [w.shape for w in weights] != shapes:
                raise ValueError(f"layer {name!r} ({kind}) does not slice to the student's shapes {shapes}")
            s_layer.set_weights(weights)
    return {n: int(len(k)) for n, k in kept.items() if k is not None}


def _propagate(kind: str, name: str, ins: list, kept: dict, out_idx: dict, teacher: Any, kin) -> Any:
    """The teacher channels this layer's output carries (None: all of them)."""
    if kind in WIDTH_KEYS:
        return kept.get(name)
    if kind == "Concatenate":
        parts, offset = [], 0
        for i in ins:
            c = _out_channels(teacher.get_layer(i))
            parts.append(np.arange(c) if out_idx.get(i) is None else out_idx[i] + offset)
            offset += c
        return None if all(out_idx.get(i) is None for i in ins) else np.concatenate(parts)
    if kind == "Flatten" and kin is not None:
        shape = teacher.get_layer(ins[0]).output_shape
        positions, channels = int(np.prod(shape[1:-1])), int(shape[-1])
        return (np.arange(positions)[:, None] * channels + kin[None, :]).ravel()
    return kin


def recalibrate_batch_norm(model: Any, x: Any, samples: int = 512) -> bool:
    """Re-estimate every BatchNormalization's moving mean/variance on ``x`` (arrays or a split, loaded or
    streamed): the teacher's statistics describe all its channels, the narrowed layers' outputs differ.
    One training-mode pass with momentum 0 sets them to the statistics of the first ``samples``
    inputs (only those are read). Returns whether there was any BN."""
    layers = [layer for layer in model.layers if "BatchNormalization" in type(layer).__name__]
    saved = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0
        if layers:
            model(as_split(x).head(samples), training=True)
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
    return bool(layers)
