"""`regularize`: L2 weight decay and dropout added to an already trained model, then fine-tuning.

L2 (weight decay, Krogh & Hertz 1992): every Dense/Conv kernel W adds ``l2 * sum(W**2)`` to
the loss, pulling weights towards 0 with gradient ``2 * l2 * W``. Small weights also quantize
better: the int8 scale of a tensor is set by its largest value.

Dropout (Srivastava et al. 2014, JMLR 15:1929, https://jmlr.org/papers/v15/srivastava14a.html):
while training each activation is zeroed with probability ``rate`` and the survivors scaled by
``1 / (1 - rate)``, so ``E[output] = input`` and inference is the identity. On conv feature
maps neighbouring activations are strongly correlated, so there whole channels are dropped
instead (SpatialDropout, Tompson et al. 2015, arXiv:1411.4280).

Neither changes the forward pass in inference mode: the rebuilt model, with the trained
weights copied by layer name, gives the input model's outputs until fine-tuning moves it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from compressor.datasets.splits import split_of
from compressor.recipes.base import progress, register
from compressor.recipes.finetune import FineTuneParams, accuracy_on, fit
from compressor.recipes.rebuild import (
    DROPOUTS,
    WIDTH_KEYS,
    classifier_name,
    consumers,
    copy_weights,
    editable_config,
    insert_after,
    name_of,
    producers,
    rebuild,
    unique_name,
)
from compressor.recipes.stepio import write_info

# Regularizer keys per layer class: separable and depthwise convs keep their kernels elsewhere.
_REGULARIZED = {
    **{cls: ("kernel_regularizer",) for cls in WIDTH_KEYS},
    "SeparableConv1D": ("depthwise_regularizer", "pointwise_regularizer"),
    "SeparableConv2D": ("depthwise_regularizer", "pointwise_regularizer"),
    "DepthwiseConv1D": ("depthwise_regularizer",),
    "DepthwiseConv2D": ("depthwise_regularizer",),
}
# Per-element layers that still belong to the block before them (dropout goes after them).
_ELEMENTWISE = {"BatchNormalization", "ReLU", "Activation", "LeakyReLU", "PReLU", "ELU"}
_SPATIAL = {3: "SpatialDropout1D", 4: "SpatialDropout2D", 5: "SpatialDropout3D"}


class RegularizeParams(FineTuneParams):
    l2: float = Field(1e-4, ge=0, description="L2 factor on Dense/Conv kernels: loss += l2 * sum(w^2); 0 = none")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout rate; 0 = none")
    where: Literal["head", "blocks", "both"] = Field(
        "head",
        description="dropout before the classifier (head), after each feature block "
        "(pooling, residual merge, hidden dense) or both",
    )


def regularized(model: Any, l2: float, rate: float, where: str) -> tuple[Any, dict]:
    """The model rebuilt with L2 and dropout, trained weights copied; and what was changed."""
    config = editable_config(model, "regularize")
    l2_layers = []
    if l2 > 0:
        for layer in config["layers"]:
            for key in _REGULARIZED.get(layer["class_name"], ()):
                layer["config"][key] = {
                    "module": "keras.regularizers",
                    "class_name": "L2",
                    "config": {"l2": l2},
                    "registered_name": None,
                }
                l2_layers.append(name_of(layer))
    dropouts = []
    if rate > 0:
        for site in dropout_sites(config, where):
            dropouts.append(_add_dropout(config, model, site, rate))
    new = rebuild(model, config, "regularize")
    copy_weights(model, new)
    info = {"l2": l2, "l2_layers": sorted(set(l2_layers), key=l2_layers.index), "where": where, "dropout": dropouts}
    return new, info


def dropout_sites(config: dict, where: str) -> list[str]:
    """Layers whose output gets dropout: the classifier's input (head) and/or each block end.

    A block ends at a pooling layer, a residual merge (Add) or a hidden Dense, each followed
    by its BatchNorm/activation. The classifier's input is the head's site, not a block's.
    A site that already feeds a dropout layer is that layer: its rate is set, none is stacked.
    """
    by_name = {name_of(layer): layer for layer in config["layers"]}
    inputs, outputs = producers(config), consumers(config)

    def settle(name: str, through: set) -> str:
        while len(outputs[name]) == 1 and by_name[outputs[name][0]]["class_name"] in through:
            name = outputs[name][0]
        return name

    head = classifier_name(config)
    head_site = inputs[head][0] if len(inputs.get(head, [])) == 1 else None
    sites = [head_site] if where in ("head", "both") and head_site else []
    if where in ("blocks", "both"):
        for name, layer in by_name.items():
            cls = layer["class_name"]
            if ("Pooling" in cls and not cls.startswith("Global")) or cls == "Add" or (cls == "Dense" and name != head):
                site = settle(settle(name, _ELEMENTWISE), DROPOUTS)
                if site != head_site and site not in sites:
                    sites.append(site)
    return sites


def _add_dropout(config: dict, model: Any, site: str, rate: float) -> dict:
    """Dropout after ``site``, or, if ``site`` is a dropout layer, its rate set to ``rate``."""
    layer = next(entry for entry in config["layers"] if name_of(entry) == site)
    if layer["class_name"] in DROPOUTS:
        layer["config"]["rate"] = rate
        return {
            "layer": site,
            "after": producers(config)[site][0],
            "type": layer["class_name"],
            "rate": rate,
            "action": "rate set",
        }
    rank = len(model.get_layer(site).output.shape)
    cls = _SPATIAL.get(rank, "Dropout")
    name = unique_name(config, f"{site}_dropout")
    insert_after(
        config,
        site,
        {
            "class_name": cls,
            "config": {"name": name, "rate": rate, "trainable": True, "dtype": layer["config"].get("dtype", "float32")},
        },
    )
    return {"layer": name, "after": site, "type": cls, "rate": rate, "action": "inserted"}


@register("regularize", "L2 weight decay and dropout on a trained model, then fine-tuning", RegularizeParams, "train")
def apply(model: Any, data: Any, params: RegularizeParams, workdir: Path) -> Any:
    new, info = regularized(model, params.l2, params.dropout, params.where)
    # The rewrite must not change what the trained model computes; check before spending epochs.
    val = split_of(data, "val")
    probe = (val if len(val) else split_of(data, "train")).head(64)  # loaded or streamed alike
    gap = float(np.max(np.abs(new.predict(probe, verbose=0) - model.predict(probe, verbose=0))))
    if gap > 1e-5:
        raise RuntimeError(f"regularize: the rebuilt model's outputs differ by {gap:.2g} before fine-tuning")
    progress(
        f"    L2 {params.l2:g} on {len(info['l2_layers'])} layers; dropout "
        + (", ".join(f"{d['type']}({d['rate']:g}) after {d['after']}" for d in info["dropout"]) or "none")
    )
    info["val_accuracy_before"] = _accuracy(new, val)
    fit(new, data, params, workdir)
    info["val_accuracy_after"] = _accuracy(new, val)
    write_info(workdir, info)
    return new


def _accuracy(model: Any, val: Any) -> float | None:
    """Accuracy on the validation split, a batch at a time (None without one)."""
    return accuracy_on(model, val, batch_size=256) if len(val) else None
