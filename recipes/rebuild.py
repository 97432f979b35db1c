"""Rewriting a Keras model through its config: insert layers, change layer settings, rebuild.

Functional and Sequential models serialise to a config that lists every layer with its
settings (and, for functional models, the layers each one is called on). Editing that config
and calling ``from_config`` gives a new model with the same topology and fresh variables;
``copy_weights`` then carries trained values over by layer name. Steps use this for what
Keras offers no API for: adding regularizers or dropout to a built model (regularize) and
shrinking every layer by a width multiplier (distill).
"""

from __future__ import annotations

import copy
from typing import Any

from compressor.runtime.errors import UserError

# Layers with a channel/unit count the width multiplier scales, and the config key holding it.
WIDTH_KEYS = {
    "Dense": "units",
    "Conv1D": "filters",
    "Conv2D": "filters",
    "Conv3D": "filters",
    "Conv1DTranspose": "filters",
    "Conv2DTranspose": "filters",
    "Conv3DTranspose": "filters",
    "SeparableConv1D": "filters",
    "SeparableConv2D": "filters",
}
DROPOUTS = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"}


def editable_config(model: Any, purpose: str) -> dict:
    """A deep copy of the model's config, or a UserError if it is not functional/Sequential."""
    config = copy.deepcopy(model.get_config()) if hasattr(model, "get_config") else None
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise UserError(f"{purpose} needs a functional or Sequential Keras model")
    for layer in config["layers"]:
        # Recorded input shapes go stale once a layer's width changes; from_config does not need them.
        layer.pop("build_config", None)
    return config


def rebuild(model: Any, config: dict, purpose: str) -> Any:
    try:
        return model.__class__.from_config(config)
    except Exception as e:
        raise UserError(
            f"{purpose}: cannot rebuild this model from its config "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
        ) from None


def name_of(layer: dict) -> str:
    return layer["config"]["name"]


def is_sequential(config: dict) -> bool:
    return "input_layers" not in config


def producers(config: dict) -> dict[str, list[str]]:
    """Layer name -> names of the layers whose outputs it consumes (its first call only)."""
    layers = config["layers"]
    if is_sequential(config):
        return {
            name_of(cur): ([name_of(prev)] if prev["class_name"] != "InputLayer" else [])
            for prev, cur in zip(layers, layers[1:])
        }
    out = {}
    for layer in layers:
        nodes = layer.get("inbound_nodes") or [[]]
        out[name_of(layer)] = [ref[0] for ref in nodes[0] if isinstance(ref, list) and isinstance(ref[0], str)]
    return out


def consumers(config: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name_of(layer): [] for layer in config["layers"]}
    for name, inputs in producers(config).items():
        for src in inputs:
            out.setdefault(src, []).append(name)
    return out


def output_names(config: dict) -> list[str]:
    if is_sequential(config):
        return [name_of(config["layers"][-1])]
    return [ref[0] for ref in config["output_layers"]]


def classifier_name(config: dict) -> str:
    """The layer computing the class scores: walk back from the output past weightless layers
    (a separate Softmax/Activation, Reshape...) to the first Dense/Conv."""
    by_name = {name_of(layer): layer for layer in config["layers"]}
    inputs = producers(config)
    name = output_names(config)[0]
    while by_name[name]["class_name"] not in WIDTH_KEYS:
        if len(inputs.get(name, [])) != 1:
            raise UserError(f"cannot find the classifier layer before the output {name!r}")
        name = inputs[name][0]
    return name


def insert_after(config: dict, target: str, layer: dict) -> None:
    """Insert ``layer`` (a {"class_name", "config"} entry) so it consumes ``target``'s output
    and every former consumer of ``target`` (and the model output) consumes it instead."""
    new = name_of(layer)
    index = next(i for i, entry in enumerate(config["layers"]) if name_of(entry) == target)
    entry = {"module": "keras.layers", "registered_name": None, **layer}
    if is_sequential(config):
        config["layers"].insert(index + 1, entry)
        return
    for other in config["layers"]:
        for node in other.get("inbound_nodes") or []:
            for ref in node:
                if isinstance(ref, list) and ref[:2] == [target, 0]:
                    ref[0] = new
    for ref in config["output_layers"]:
        if ref[:2] == [target, 0]:
            ref[0] = new
    entry.update(name=new, inbound_nodes=[[[target, 0, 0, {}]]])
    config["layers"].insert(index + 1, entry)


def unique_name(config: dict, base: str) -> str:
    taken = {name_of(layer) for layer in config["layers"]}
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    return name


def copy_weights(source: Any, target: Any) -> list[str]:
    """Copy every layer's weights from ``source`` to the same-named layer of ``target``.

    Every target layer with weights must find its source, with the same shapes: a silent
    partial copy would hand on a half-random model.
    """
    copied = []
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            values = source.get_layer(layer.name).get_weights()
            layer.set_weights(values)
        except ValueError as e:
            reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise UserError(f"cannot copy the weights of layer {layer.name!r}: {reason}") from None
        copied.append(layer.name)
    return copied
