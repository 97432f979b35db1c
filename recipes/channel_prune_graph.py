"""Which channels of a Keras model must be removed together: channel groups over its config.

Every tensor's last axis is a *layout*: a sequence of segments (group, channels). A Conv/Dense
layer starts a new group of its ``filters``/``units``; layers that act per channel pass their
input's layout on (BatchNormalization and DepthwiseConv2D slice their weights with it; ReLU,
pooling, padding, dropout... have none). Couplings:

- Add/Multiply/Subtract/Average/Maximum/Minimum: the inputs' groups are merged (union-find),
  so every layer feeding a residual sum keeps the same channel set;
- TF ops written in the functional API that act per element with scalars (``x * tf.nn.relu6(x + 3)
  / 6``: channel_prune_tfops) pass channels on; with two tensors they merge like an Add;
- Concatenate on the channel axis: the output layout is the inputs' layouts end to end;
- Flatten: the input layout repeated once per spatial position (channels vary fastest), so the
  Dense after it drops every row that came from a removed channel.

A group is *frozen* (kept whole, with the reason) when it reaches the model's input or output
(the classifier's units are never pruned), a layer in ``skip_layers``, a layer called more than
once (shared weights across branches), or any layer whose channel semantics we do not model
(Lambda, TFOpLambda, Reshape, subclassed/custom layers, channels_first...). Such a layer keeps
its weights and sees exactly the channels it had: the rebuilt graph is always consistent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from compressor.recipes.channel_prune_tfops import elementwise
from compressor.recipes.rebuild import editable_config, name_of, rebuild

SOURCES = {
    **{"Conv1D": "filters", "Conv2D": "filters", "Dense": "units"},
    **{"SeparableConv1D": "filters", "SeparableConv2D": "filters"},
}
PER_CHANNEL = {"BatchNormalization", "DepthwiseConv1D", "DepthwiseConv2D"}
PASSTHROUGH = {
    *("ReLU", "Activation", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout", "AlphaDropout", "GaussianNoise"),
    *("GaussianDropout", "SpatialDropout1D", "SpatialDropout2D", "ActivityRegularization"),
    *("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling1D"),
    *("GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "ZeroPadding1D", "ZeroPadding2D"),
    *("Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D"),
}
MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
TRACED = {*SOURCES, *PER_CHANNEL, *PASSTHROUGH, *MERGES, "Flatten", "Concatenate"}

Layout = tuple[tuple[int, int], ...]  # ((group id, channels), ...) along the last axis
Ref = tuple[str, int, int]  # (layer, node index, tensor index), as Keras configs name tensors
_INPUT: Ref = ("", 0, 0)  # what the first layer of a Sequential without an InputLayer consumes


@dataclass
class ChannelGraph:
    config: dict
    reference: Any  # the model rebuilt from ``config``: the static shapes
    parent: dict[int, int] = field(default_factory=dict)
    size: dict[int, int] = field(default_factory=dict)
    frozen: dict[int, str] = field(default_factory=dict)  # root -> why its channels stay
    sources: dict[int, list[str]] = field(default_factory=dict)  # root -> layers whose filters it holds
    io: dict[str, tuple[Layout, Layout]] = field(default_factory=dict)  # sliced layer -> (in, out)
    bn_after: dict[str, str] = field(default_factory=dict)  # source layer -> the BatchNorm right after it
    kinds: dict[str, str] = field(default_factory=dict)  # sliced layer -> its class name
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> why channels stop at it

    def new(self, channels: int, frozen: str | None = None) -> Layout:
        gid = len(self.parent)
        self.parent[gid], self.size[gid], self.sources[gid] = gid, channels, []
        if frozen:
            self.frozen[gid] = frozen
        return ((gid, channels),)

    def find(self, gid: int) -> int:
        while self.parent[gid] != gid:
            self.parent[gid] = self.parent[self.parent[gid]]
            gid = self.parent[gid]
        return gid

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        self.parent[rb] = ra
        self.sources[ra] += self.sources.pop(rb)
        if rb in self.frozen:
            self.frozen.setdefault(ra, self.frozen.pop(rb))

    def freeze(self, layout: Layout, reason: str) -> None:
        for gid, _ in layout:
            self.frozen.setdefault(self.find(gid), reason)

    def prunable(self) -> list[int]:
        """Roots of the groups whose channels may be removed, in order of creation."""
        roots = sorted({self.find(g) for g in self.parent})
        return [r for r in roots if r not in self.frozen and self.sources.get(r)]

    def not_pruned(self) -> dict[str, str]:
        """Every Conv/Dense layer whose filters stay, with the reason."""
        out = {}
        for root, layers in self.sources.items():
            if self.find(root) == root and root in self.frozen:
                out.update({layer: self.frozen[root] for layer in layers})
        return out


def analyse(model: Any, skip_layers: list[str] | tuple = ()) -> ChannelGraph:
    """Channel groups of a functional/Sequential model (UserError for anything else)."""
    config = editable_config(model, "channel_prune")
    graph = ChannelGraph(config, same_code_rebuild(model, config))
    channels = graph.reference.input_shape[-1] if len(graph.reference.inputs) == 1 else 0
    tensors: dict[Ref, Layout] = {_INPUT: graph.new(int(channels or 0), frozen="model input")}
    for layer, node, refs in _ordered_calls(config):
        outputs = _propagate(graph, layer, node, [tensors[r] for r in refs], refs)
        name = name_of(layer)
        if name in skip_layers:
            for out in outputs:
                graph.freeze(out, f"skip_layers: {name}")
        tensors.update({(name, node, t): out for t, out in enumerate(outputs)})
    for ref in _output_refs(config):
        graph.freeze(tensors[ref], "model output (its units are never pruned)")
    return graph


def same_code_rebuild(model: Any, config: dict) -> Any:
    """``model`` rebuilt from (an edit of) its own config. Safe mode is off for this one call: a
    Lambda's bytecode in ``config`` is that of the function already loaded in ``model`` (trusted
    when the model was loaded, or it would not be here), not new code from a file."""
    from compressor.keras_shim import safe_mode_scope

    with safe_mode_scope(False):
        return rebuild(model, config, "channel_prune")


def _ordered_calls(config: dict) -> list[tuple[dict, int, list[Ref]]]:
    """(layer config, node index, input refs) for every call, each after the calls it consumes."""
    layers = config["layers"]
    if "input_layers" not in config:  # Sequential: each layer consumes the previous one
        calls, prev = [], None
        for layer in layers:
            first = [] if layer["class_name"] == "InputLayer" else [_INPUT]
            calls.append((layer, 0, first if prev is None else [(name_of(prev), 0, 0)]))
            prev = layer
        return calls
    pending = [
        (layer, _first_node(layer) + i, _refs(node))
        for layer in layers
        for i, node in enumerate(layer.get("inbound_nodes") or [[]])
    ]
    done: set[tuple[str, int]] = set()
    ordered = []
    while pending:
        ready = [c for c in pending if all((r[0], r[1]) in done for r in c[2])]
        if not ready:
            raise ValueError("the model's layer calls cannot be ordered")
        for call in ready:
            ordered.append(call)
            done.add((name_of(call[0]), call[1]))
        pending = [c for c in pending if (name_of(c[0]), c[1]) not in done]
    return ordered


def _first_node(layer: dict) -> int:
    """Index of the layer's first call in tensor references: a nested model's node 0 is its own
    Input, which Keras leaves out of the config and counts anyway."""
    inner = layer["config"].get("layers") if isinstance(layer.get("config"), dict) else None
    if not isinstance(inner, list) or not inner:
        return 0
    return int("input_layers" in layer["config"] or inner[0].get("class_name") == "InputLayer")


def _refs(node: Any) -> list[Ref]:
    """Every tensor reference in a node, in order, kwargs included (TFOpLambda keeps its second
    operand there: ``["a", 0, 0, {"y": ["b", 0, 0]}]``)."""
    if isinstance(node, list) and len(node) >= 3 and isinstance(node[0], str) and _ints(node[1:3]):
        return [(node[0], node[1], node[2]), *_refs(node[3:])]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    if isinstance(node, dict):
        return [ref for value in node.values() for ref in _refs(value)]
    return []


def _ints(values: list) -> bool:
    return all(type(v) is int for v in values)


def _output_refs(config: dict) -> list[Ref]:
    if "input_layers" not in config:
        return [(name_of(config["layers"][-1]), 0, 0)]
    return [tuple(ref[:3]) for ref in config["output_layers"]]  # type: ignore[misc]


def _propagate(graph: ChannelGraph, layer: dict, node: int, inputs: list[Layout], refs: list[Ref]) -> list[Layout]:
    kind, cfg, name = layer["class_name"], layer["config"], name_of(layer)
    calls = len(layer.get("inbound_nodes") or [[]])
    if kind == "InputLayer":  # a Sequential's is not among its layers: read the config
        return [graph.new(int((cfg.get("batch_input_shape") or [0])[-1] or 0), frozen="model input")]
    if elementwise(layer) and inputs:  # x * tf.nn.relu6(x + 3) / 6 written with TF ops
        return [inputs[0]] if len(inputs) == 1 else [_merged(graph, name, inputs)]
    rank = len(_shapes(graph, layer, node)[0])
    reason = _unsupported(kind, cfg, calls, len(inputs), rank)
    if reason:
        graph.skipped[name] = reason
        for layout in inputs:
            graph.freeze(layout, reason)
        return _fresh(graph, layer, node, reason)
    if kind in SOURCES or kind in PER_CHANNEL:
        out = graph.new(int(cfg[SOURCES[kind]])) if kind in SOURCES else inputs[0]
        if kind in SOURCES:
            graph.sources[out[0][0]].append(name)
        if kind == "BatchNormalization" and graph.kinds.get(refs[0][0]) in SOURCES:
            graph.bn_after.setdefault(refs[0][0], name)
        graph.io[name], graph.kinds[name] = (inputs[0], out), kind
        return [out]
    if kind == "Flatten":
        shape = graph.reference.get_layer(name).get_input_shape_at(_real_node(graph, layer, node))
        if None not in shape[1:-1]:
            return [inputs[0] * math.prod(shape[1:-1])]
        graph.freeze(inputs[0], f"Flatten {name!r} of a map with no static size")
        return _fresh(graph, layer, node, f"Flatten {name!r} of a map with no static size")
    if kind in MERGES or (kind == "Concatenate" and not _last_axis(cfg.get("axis", -1), rank)):
        return [_merged(graph, name, inputs)]
    if kind == "Concatenate":
        return [tuple(seg for layout in inputs for seg in layout)]
    return [inputs[0]]


def _merged(graph: ChannelGraph, name: str, inputs: list[Layout]) -> Layout:
    splits = {tuple(size for _, size in layout) for layout in inputs}
    if len(splits) != 1:  # e.g. Add(Concatenate([a, b]), c): channels line up but groups do not
        reason = f"{name}: merges differently split channel groups"
        graph.skipped[name] = reason
        for layout in inputs:
            graph.freeze(layout, reason)
        return inputs[0]
    for layout in inputs[1:]:
        for (a, _), (b, _) in zip(inputs[0], layout):
            graph.union(a, b)
    return inputs[0]


def _last_axis(axis: Any, rank: int) -> bool:
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    return axis in (-1, rank - 1)


def _real_node(graph: ChannelGraph, layer: dict, node: int) -> int:
    """The layer object's node index for a config node index: a nested model may hold nodes of its
    own before the calls the config lists (and the config may count one it leaves out)."""
    calls = len(layer.get("inbound_nodes") or [[]])
    extra = len(graph.reference.get_layer(name_of(layer)).inbound_nodes) - calls
    return node - _first_node(layer) + max(extra, 0)


def _shapes(graph: ChannelGraph, layer: dict, node: int) -> list[tuple]:
    shapes = graph.reference.get_layer(name_of(layer)).get_output_shape_at(_real_node(graph, layer, node))
    multi = isinstance(shapes, list) and shapes and isinstance(shapes[0], (list, tuple))
    return list(shapes) if multi else [tuple(shapes)]


def _fresh(graph: ChannelGraph, layer: dict, node: int, reason: str) -> list[Layout]:
    return [graph.new(int(s[-1] or 0) if s else 0, frozen=reason) for s in _shapes(graph, layer, node)]


def _unsupported(kind: str, cfg: dict, calls: int, n_inputs: int, rank: int) -> str | None:
    """Why channels cannot flow through this layer (None when they can)."""
    label = f"{kind} {cfg.get('name')!r}"
    if calls > 1:
        return f"{label} is called {calls} times (shared weights across branches)"
    if kind not in TRACED:
        return f"{label}: channels are not traced through this layer type"
    if cfg.get("data_format", "channels_last") != "channels_last":
        return f"{label} is channels_first"
    if int(cfg.get("groups", 1) or 1) != 1:
        return f"{label} is a grouped convolution (groups={cfg['groups']})"
    if kind.startswith("Depthwise") and int(cfg.get("depth_multiplier", 1)) != 1:
        return f"{label} has depth_multiplier {cfg['depth_multiplier']}"
    if kind == "BatchNormalization" and not _last_axis(cfg.get("axis"), rank):
        return f"{label} normalises axis {cfg.get('axis')}, not the channel axis"
    if n_inputs != 1 and kind not in MERGES | {"Concatenate"}:
        return f"{label} takes {n_inputs} inputs"
    return None
