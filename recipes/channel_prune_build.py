"""The smaller dense model: the config with fewer filters/units, every weight sliced to the kept channels.

Only the Conv/Dense layers that start a pruned group change their config (``filters``/``units``);
everything downstream (BatchNorm, DepthwiseConv2D, the Dense after Flatten, Concatenate) infers
its size from its input when the model is rebuilt. The weights then follow the layouts of
channel_prune_graph: a kernel's input axis keeps the rows of the kept input channels (a
SeparableConv's pointwise kernel ``depth_multiplier`` rows per channel), its output axis the kept
filters; BatchNorm and depthwise weights keep the kept channels; any other layer is copied whole.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from compressor.recipes.channel_prune_graph import SOURCES, ChannelGraph, Layout, same_code_rebuild
from compressor.recipes.rebuild import name_of
from compressor.runtime.errors import UserError


def pruned_config(graph: ChannelGraph, keep: dict[int, np.ndarray]) -> tuple[dict, dict[str, list[int]]]:
    """The config with each pruned group's Conv/Dense layers narrowed; layer -> [before, after]."""
    config = copy.deepcopy(graph.config)
    narrowed = {}
    for layer in config["layers"]:
        name, kind = name_of(layer), layer["class_name"]
        if graph.kinds.get(name) != kind or kind not in SOURCES:
            continue
        root = graph.find(graph.io[name][1][0][0])
        before = int(layer["config"][SOURCES[kind]])
        if root in keep and len(keep[root]) < before:
            layer["config"][SOURCES[kind]] = len(keep[root])
            narrowed[name] = [before, len(keep[root])]
    config["name"] = f"{config.get('name') or 'model'}_channel_pruned"
    return config, narrowed


def pruned_model(model: Any, graph: ChannelGraph, keep: dict[int, np.ndarray]) -> tuple[Any, dict[str, list[int]]]:
    """The rebuilt model with sliced weights, and the layers whose filters/units changed."""
    config, narrowed = pruned_config(graph, keep)
    smaller = same_code_rebuild(model, config)
    for layer in smaller.layers:
        if not layer.weights:
            continue
        values = model.get_layer(layer.name).get_weights()
        if layer.name in graph.io:
            values = sliced(values, graph.kinds[layer.name], *graph.io[layer.name], graph, keep)
        try:
            layer.set_weights(values)
        except ValueError as e:  # a coupling the graph did not model: refuse rather than guess
            raise UserError(
                f"channel_prune: the weights of layer {layer.name!r} do not fit the pruned model "
                f"({str(e).splitlines()[0][:160]}); list it in skip_layers"
            ) from None
    return smaller, narrowed


def indices(graph: ChannelGraph, layout: Layout, keep: dict[int, np.ndarray]) -> np.ndarray:
    """Positions along a tensor's last axis that survive, for a layout of (group, channels) segments."""
    parts, offset = [], 0
    for gid, size in layout:
        kept = keep.get(graph.find(gid))
        parts.append(offset + (np.arange(size) if kept is None else kept))
        offset += size
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def _positions(graph: ChannelGraph, layout: Layout, keep: dict[int, np.ndarray], width: int) -> np.ndarray:
    """``indices``, or every one of ``width`` positions when nothing along the layout is pruned (a
    frozen layout after an untraced layer may not know its static width)."""
    if not any(graph.find(gid) in keep for gid, _ in layout):
        return np.arange(width)
    return indices(graph, layout, keep)


def sliced(
    values: list[np.ndarray],
    kind: str,
    layout_in: Layout,
    layout_out: Layout,
    graph: ChannelGraph,
    keep: dict[int, np.ndarray],
) -> list[np.ndarray]:
    out_axis = (1, -1) if kind.startswith("Separable") else (0, 0 if kind == "BatchNormalization" else -1)
    rows = _positions(graph, layout_in, keep, values[0].shape[-2] if values[0].ndim > 1 else 0)
    cols = _positions(graph, layout_out, keep, values[out_axis[0]].shape[out_axis[1]])
    if kind == "BatchNormalization":
        return [v.take(cols, axis=0) for v in values]
    if kind.startswith("Depthwise"):  # kernel [..., C, 1], bias [C]
        return [values[0].take(rows, axis=-2), *(v.take(rows, axis=0) for v in values[1:])]
    if kind.startswith("Separable"):  # depthwise [..., C, m], pointwise [..., C*m, F], bias [F]
        mult = values[0].shape[-1]
        expanded = (rows[:, None] * mult + np.arange(mult)).ravel()
        depthwise = values[0].take(rows, axis=-2)
        pointwise = values[1].take(expanded, axis=-2).take(cols, axis=-1)
        return [depthwise, pointwise, *(v.take(cols, axis=0) for v in values[2:])]
    # Conv1D/Conv2D/Dense: kernel [..., C_in, F], bias [F]
    return [values[0].take(rows, axis=-2).take(cols, axis=-1), *(v.take(cols, axis=0) for v in values[1:])]
