"""Cross-layer equalization (CLE): a training-free step that evens out per-channel weight ranges.

Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias Correction"
(arXiv:1906.04721). For two kernels W1 -> f -> W2 where f is positively homogeneous per channel
(f(x / s) = f(x) / s for s > 0: ReLU, LeakyReLU, PReLU, linear, zero padding, max/average
pooling, dropout), dividing W1's output channel c by s_c and multiplying W2's input channel c by
s_c leaves the network's function unchanged. With r1_c, r2_c the two channels' ranges,
s_c = sqrt(r1_c / r2_c) makes both sqrt(r1_c * r2_c): no channel's range dwarfs the others', which
is what a per-tensor int8 grid (activations, and weights on per-tensor back ends) needs.

Ranges are those of the kernels with a directly following BatchNormalization folded in, as the
converter folds it; the scaling goes through BN's gamma/beta, so the model keeps its layers.
ReLU6 is not positively homogeneous: min(max(x/s, 0), 6) != min(max(x, 0), 6)/s, and TFLite's
RELU6 has one clip bound, not one per channel, so a pair with ReLU6 between is skipped and listed
(``relu6: relu`` replaces those ReLU6 by ReLU first, which changes the float model: measure it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from compressor.recipes import channel_weights as cw
from compressor.recipes.base import StepParams, progress, register
from compressor.recipes.rebuild import consumers, editable_config, name_of, output_names, producers
from compressor.recipes.stepio import write_info

PASSTHROUGH = {
    "ZeroPadding2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Dropout",
    "LeakyReLU",
    "PReLU",
}


class EqualizeParams(StepParams):
    iterations: int = Field(20, ge=1, le=1000, description="passes over all pairs (chains of pairs converge)")
    relu6: Literal["skip", "relu"] = Field(
        "skip",
        description="pairs with ReLU6 between them: skip them (the float model is unchanged), or replace "
        "those ReLU6 by ReLU and equalize (changes the float model where activations exceed 6)",
    )


@dataclass
class Pair:
    first: str  # W1's layer
    bn: str | None  # the BatchNormalization folded into W1
    second: str  # W2's layer
    relu6: list[str]  # ReLU6 layers between (relu6: relu replaces them)


def activation_kind(layer: dict) -> str:
    """'homogeneous', 'relu6' or the name of an activation that is neither, for a layer's config."""
    config, kind = layer["config"], layer["class_name"]
    if kind == "ReLU":
        if config.get("max_value") is None and not config.get("threshold"):
            return "homogeneous"
        return "relu6" if config.get("max_value") == 6 and not config.get("threshold") else "clipped ReLU"
    activation = config.get("activation", "linear")
    if kind == "Activation" or kind in cw.KERNEL_LAYERS:
        return "homogeneous" if activation in ("linear", "relu") else str(activation)
    return "homogeneous" if kind in PASSTHROUGH else kind


def find_pairs(model: Any) -> tuple[list[Pair], list[dict]]:
    """Every W1 -> (BN) -> homogeneous layers -> W2 chain whose tensors feed nothing else."""
    config = editable_config(model, "equalize")
    by_name = {name_of(layer): layer for layer in config["layers"]}
    inputs, outputs, ends = producers(config), consumers(config), set(output_names(config))
    shared = {name for name, layer in by_name.items() if len(layer.get("inbound_nodes") or []) > 1}
    pairs, skipped = [], []
    for name, layer in by_name.items():
        if layer["class_name"] not in cw.KERNEL_LAYERS or cw.supported(model.get_layer(name)) or name in shared:
            continue
        pair, reason = _walk_back(name, by_name, inputs, outputs, ends | shared)
        if pair is not None and pair.bn and not channels_last_bn(model.get_layer(pair.bn)):
            pair, reason = None, f"BatchNormalization {pair.bn} does not normalize the last axis"
        if pair is not None:
            pairs.append(pair)
        elif reason:
            skipped.append({"second": name, "reason": reason})
    return pairs, skipped


def channels_last_bn(bn: Any) -> bool:
    axis = bn.axis if isinstance(bn.axis, (list, tuple)) else [bn.axis]
    rank = len(bn.input_shape)
    return [a % rank for a in axis] == [rank - 1]


def _walk_back(second: str, by_name: dict, inputs: dict, outputs: dict, fixed: set) -> tuple[Pair | None, str]:
    relu6: list[str] = []
    node, bn = inputs.get(second, []), None
    while len(node) == 1:
        name = node[0]
        layer = by_name[name]
        if layer["class_name"] == "InputLayer":
            return None, ""
        if len(outputs.get(name, [])) != 1 or name in fixed:
            return None, ""  # a branch, a shared layer or a model output: nothing to pair across
        if layer["class_name"] == "BatchNormalization":
            if bn is not None or not layer["config"].get("scale", True):
                return None, f"BatchNormalization {name} cannot be folded (no gamma, or after another one)"
            bn = name
            node = inputs.get(name, [])
            continue
        kind = activation_kind(layer)
        if layer["class_name"] in cw.KERNEL_LAYERS:
            if kind == "relu6":
                relu6.append(name)
            elif kind != "homogeneous":
                return None, f"{name}'s activation {kind} is not positively homogeneous"
            return Pair(name, bn, second, relu6), ""
        if bn is not None:
            return None, f"BatchNormalization {bn} does not directly follow a kernel"
        if kind == "relu6":
            relu6.append(name)
        elif kind != "homogeneous":
            return None, f"channels are not followed through {name} ({kind})"
        node = inputs.get(name, [])
    return None, ""


def imbalance(model: Any, pair: Pair) -> float:
    """max over channels of |log2(r1_c / r2_c)|: 0 when every channel's ranges agree across the pair."""
    bn = model.get_layer(pair.bn) if pair.bn else None
    r1 = cw.output_ranges(model.get_layer(pair.first), bn)
    r2 = cw.input_ranges(model.get_layer(pair.second))
    live = (r1 > 0) & (r2 > 0)
    return float(np.abs(np.log2(r1[live] / r2[live])).max()) if live.any() else 0.0


def equalize_pair(model: Any, pair: Pair) -> float:
    """One equalization of ``pair`` in place; returns max |log s_c| (how much it still moved)."""
    first, second = model.get_layer(pair.first), model.get_layer(pair.second)
    bn = model.get_layer(pair.bn) if pair.bn else None
    r1, r2 = cw.output_ranges(first, bn), cw.input_ranges(second)
    live = (r1 > 0) & (r2 > 0)  # a dead channel has no range to balance
    s = np.ones_like(r1)
    s[live] = np.sqrt(r1[live] / r2[live])
    cw.scale_outputs(first, bn, (1.0 / s).astype(np.float32))
    cw.scale_inputs(second, s.astype(np.float32))
    return float(np.abs(np.log(s)).max())


def equalize(model: Any, pairs: list[Pair], iterations: int) -> int:
    """Equalize every pair, repeatedly (a kernel in two pairs is moved by both), until nothing moves."""
    for i in range(iterations):
        moved = max((equalize_pair(model, pair) for pair in pairs), default=0.0)
        if moved < 1e-6:
            return i + 1
    return iterations


def with_relu(model: Any, pairs: list[Pair]) -> Any:
    """A copy of ``model`` whose ReLU6 inside ``pairs`` are plain ReLU (weights copied)."""
    from compressor.recipes.rebuild import copy_weights, rebuild

    names = {name for pair in pairs for name in pair.relu6}
    config = editable_config(model, "equalize")
    for layer in config["layers"]:
        if name_of(layer) in names:
            if layer["class_name"] == "ReLU":
                layer["config"]["max_value"] = None
            else:
                layer["config"]["activation"] = "relu"
    clone = rebuild(model, config, "equalize")
    copy_weights(model, clone)
    return clone


@register("equalize", "cross-layer equalization of conv/depthwise/dense pairs (training-free)", EqualizeParams)
def apply(model: Any, data: Any, params: EqualizeParams, workdir: Path) -> Any:
    from compressor.keras_shim import keras

    pairs, skipped = find_pairs(model)
    held = [p for p in pairs if p.relu6] if params.relu6 == "skip" else []
    skipped += [{"first": p.first, "second": p.second, "reason": f"ReLU6 between ({', '.join(p.relu6)})"} for p in held]
    pairs = [p for p in pairs if p not in held]
    if any(p.relu6 for p in pairs):
        model = with_relu(model, pairs)
    else:  # never rescale the caller's model in place: other recipes of the run start from it too
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        model = clone
    before = {f"{p.first}->{p.second}": imbalance(model, p) for p in pairs}
    passes = equalize(model, pairs, params.iterations)
    after = {f"{p.first}->{p.second}": imbalance(model, p) for p in pairs}
    progress(f"  equalized {len(pairs)} pair(s) in {passes} pass(es); skipped {len(skipped)}")
    write_info(
        workdir,
        {
            "pairs": [
                {"pair": k, "log2_range_ratio_before": before[k], "log2_range_ratio_after": after[k]} for k in before
            ],
            "passes": passes,
            "relu6_replaced": sorted({n for p in pairs for n in p.relu6}),
            "skipped": skipped,
        },
    )
    return model
