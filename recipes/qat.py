"""Quantization-aware training: fine-tune with int8 rounding simulated in the forward pass.

Jacob et al. 2018 (arXiv:1712.05877): weights and activations pass through fake-quant nodes

    q(x) = clamp(round(x / S) + Z, -128, 127),   x_hat = S * (q(x) - Z),

with S, Z from the tensor's learned [min, max] range; gradients go straight through the rounding.
The model learns to tolerate int8 and the converter reads the learned ranges, so it leaves this
step WITH its fake-quant wrappers (the final ``int8`` step converts it).

A model pruned or clustered earlier in the chain would lose its zeros and shared values when
trained like this, so ``preserve`` picks a collaborative scheme (``tfmot.experimental.combine``):
PQAT keeps zeros (Default8BitPrunePreserveQuantizeScheme), CQAT keeps each kernel's centroids
(Default8BitClusterPreserveQuantizeScheme, with preserve_sparsity when also sparse). ``auto``
detects them from the weights, as the step does not see which steps came before it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from compressor.recipes.base import register
from compressor.recipes.finetune import fit
from compressor.recipes.stepio import write_info
from compressor.recipes.structure import WrapperParams, check_layer_names, kernel_stats
from compressor.runtime.errors import UserError

SPARSE_AT = 0.3  # fraction of exact zeros: float training leaves ~none, pruning leaves >= its target
MAX_CLUSTERS = 256  # a clustered kernel has few distinct values ...
MIN_SHARING = 4  # ... each shared by several weights (a 64-weight kernel has <= 256 values anyway)


class QatParams(WrapperParams):
    epochs: int = Field(3, ge=1, le=10_000, description="fine-tuning epochs")
    learning_rate: float = Field(1e-4, gt=0, le=10, description="peak learning rate")
    preserve: Literal["auto", "sparsity", "clusters", "none"] = Field(
        "auto",
        description="keep zeros (PQAT) or clusters (CQAT) of an earlier prune/cluster step; "
        "auto detects them from the weights",
    )
    skip_layers: list[str] = Field([], description="layer names left float (not annotated for quantization)")


def detect(model: Any) -> dict[str, list[str]]:
    """Dense/Conv2D layers whose kernels look pruned (many exact zeros) or clustered (few shared values,
    in the whole kernel or in each output channel, as CQAT leaves a Conv2D)."""
    stats = kernel_stats(model)

    def shared(unique: int, size: int) -> bool:
        return unique <= MAX_CLUSTERS and unique * MIN_SHARING <= size

    return {
        "sparse_layers": [n for n, s in stats.items() if s["sparsity"] >= SPARSE_AT],
        "clustered_layers": [
            n
            for n, s in stats.items()
            if shared(s["unique_values"], s["size"])
            or shared(s["unique_per_output_channel"], s["size"] // s["output_channels"])
        ],
    }


def scheme_for(preserve: str, found: dict[str, list[str]]) -> tuple[str, Any]:
    """(scheme name, tfmot QuantizeScheme) for the requested or detected preservation."""
    from compressor.keras_shim import tfmot

    mot = tfmot()
    if preserve == "auto":
        preserve = "clusters" if found["clustered_layers"] else "sparsity" if found["sparse_layers"] else "none"
    if preserve == "clusters":
        keep_zeros = bool(found["sparse_layers"])
        return (
            "PCQAT" if keep_zeros else "CQAT",
            mot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=keep_zeros),
        )
    if preserve == "sparsity":
        return "PQAT", mot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    return "QAT", mot.quantization.keras.default_8bit.Default8BitQuantizeScheme()


def quantize(model: Any, skip: list[str], scheme: Any) -> Any:
    """Annotate every layer but ``skip`` and apply ``scheme``; all unsupported layers in ONE error.

    tfmot stops at the first layer its registry (and layout transforms, e.g. Conv2D+BatchNorm
    folding) cannot handle, so each one found is left float and the apply retried: the user
    learns every layer to skip at once, named as tfmot itself judged them.
    """
    from compressor.keras_shim import keras, tfmot

    q = tfmot().quantization.keras
    unsupported = {
        layer.name: type(layer).__name__ for layer in model.layers if isinstance(layer, keras.Model)
    }  # tfmot refuses nested models outright
    while True:
        left_float = set(skip) | set(unsupported)
        if all(layer.name in left_float or isinstance(layer, keras.layers.InputLayer) for layer in model.layers):
            if unsupported:
                break
            raise UserError("qat: every layer is in skip_layers; nothing left to quantize")
        annotated = keras.models.clone_model(
            model,
            clone_function=lambda layer, keep=frozenset(left_float): (
                layer if layer.name in keep else q.quantize_annotate_layer(layer)
            ),
        )
        try:
            with q.quantize_scope():
                quantized = q.quantize_apply(annotated, scheme)
        except RuntimeError as e:
            found = re.match(r"Layer (.+?):<class '", str(e))
            name = found.group(1) if found else None
            if name is None or name in left_float or name not in {layer.name for layer in model.layers}:
                raise
            unsupported[name] = type(model.get_layer(name)).__name__
            continue
        if not unsupported:
            return quantized
        break
    listed = ", ".join(f"{name} ({kind})" for name, kind in unsupported.items())
    raise UserError(
        f"qat: tfmot's 8-bit scheme cannot quantize {len(unsupported)} layer(s): {listed}; "
        f"leave them float with skip_layers: [{', '.join(unsupported)}] (the int8 step then quantizes "
        "them from calibration data where TFLite has an int8 kernel)"
    )


@register(
    "qat", "quantization-aware training (keeps sparsity/clusters of earlier steps: PQAT/CQAT)", QatParams, "train"
)
def apply(model: Any, data: Any, params: QatParams, workdir: Path) -> Any:
    check_layer_names(model, params.skip_layers, "qat")
    found = detect(model)
    name, scheme = scheme_for(params.preserve, found)
    quantized = quantize(model, params.skip_layers, scheme)  # works on a clone: the input model is untouched
    fit(quantized, data, params, workdir)
    write_info(
        workdir,
        {
            "preserve": params.preserve,
            "scheme": name,
            "detected": found,
            "left_float": params.skip_layers,
            "kernels_after": kernel_stats(quantized),
        },
    )
    return quantized
