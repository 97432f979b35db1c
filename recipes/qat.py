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

Which layers are simulated, and how, is decided in one pass (recipes/qat_layers.py: tfmot's registry,
output-only ranges, a Conv1D config, or float with the reason, recorded per layer in meta.json);
before training the ranges are calibrated and the start accuracy checked (recipes/qat_start.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from compressor.datasets.splits import split_of
from compressor.recipes.base import progress, register
from compressor.recipes.finetune import accuracy_on, fit
from compressor.recipes.qat_layers import annotate, guarded, plan, reserve_names
from compressor.recipes.qat_start import BLAME_SAMPLES, CALIBRATION_SAMPLES, blame, calibrate_ranges
from compressor.recipes.stepio import write_info
from compressor.recipes.structure import WrapperParams, check_layer_names, kernel_stats
from compressor.runtime.errors import UserError

SPARSE_AT = 0.3  # fraction of exact zeros: float training leaves ~none, pruning leaves >= its target
MAX_CLUSTERS = 256  # a clustered kernel has few distinct values ...
MIN_SHARING = 4  # ... each shared by several weights (a 64-weight kernel has <= 256 values anyway)
MAX_REFUSALS = 3  # layers tfmot may still refuse after the plan, each costing one more quantize_apply


class QatParams(WrapperParams):
    epochs: int = Field(3, ge=1, le=10_000, description="fine-tuning epochs")
    learning_rate: float = Field(1e-4, gt=0, le=10, description="peak learning rate")
    preserve: Literal["auto", "sparsity", "clusters", "none"] = Field(
        "auto",
        description="keep zeros (PQAT) or clusters (CQAT) of an earlier prune/cluster step; "
        "auto detects them from the weights",
    )
    skip_layers: list[str] = Field(
        [],
        description="layer names left float in training (layers tfmot cannot wrap are left float "
        "without being listed; the int8 step quantizes them from calibration data)",
    )
    max_start_gap: float = Field(
        0.01,
        ge=0,
        le=1,
        description="largest validation accuracy drop allowed between the float model and the int8-simulated "
        "one before training (0.01 = 1 point); a larger gap is an error naming the layer responsible",
    )
    freeze_batch_norm: bool = Field(
        True,
        description="BatchNormalization keeps the float model's statistics (inference mode) while QAT "
        "fine-tunes: small fine-tuning batches would otherwise replace what the converter folds",
    )


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


def quantize(model: Any, skip: list[str], scheme: Any) -> tuple[Any, dict[str, dict]]:
    """Annotate each layer as ``qat_layers.plan`` decides and apply ``scheme`` once.

    Every layer tfmot cannot wrap is found in that one pass over the model (it used to be one
    ``quantize_apply`` per unsupported layer: 592 s on one model). Should tfmot still refuse a
    layer the plan accepted, that layer is left float and the apply retried, a few times at most.
    """
    from compressor.keras_shim import tfmot

    q = tfmot().quantization.keras
    decisions = plan(model, skip)
    reserve_names(model)
    for _ in range(MAX_REFUSALS + 1):
        if all(d["qat"] == "float" for d in decisions.values()):
            raise UserError(f"qat: no layer left to quantize ({_float_summary(decisions)})")
        try:
            with q.quantize_scope():
                return q.quantize_apply(annotate(model, decisions), guarded(scheme)), decisions
        except (RuntimeError, ValueError, TypeError, AttributeError) as e:
            name = _refused(e, decisions)
            if name is None:
                raise UserError(
                    f"qat: tfmot cannot quantize this model ({type(e).__name__}: {_first_line(e)}); "
                    "leave the layer it names float with skip_layers"
                ) from None
            decisions[name] = {**decisions[name], "qat": "float", "reason": f"tfmot refused it: {_first_line(e)}"}
    raise UserError(f"qat: tfmot refused more than {MAX_REFUSALS} layers; leave them float with skip_layers")


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _refused(e: Exception, decisions: dict[str, dict]) -> str | None:
    """The still-annotated layer tfmot's error names, if any (its messages quote the layer name)."""
    text = str(e)
    names = [n for n, d in decisions.items() if d["qat"] != "float" and re.search(rf"\b{re.escape(n)}\b", text)]
    return max(names, key=len) if names else None


def _float_summary(decisions: dict[str, dict]) -> str:
    left = [f"{n} ({d['class']}: {d['reason']})" for n, d in decisions.items() if d["qat"] == "float"]
    return ", ".join(left[:8]) + (f" and {len(left) - 8} more" if len(left) > 8 else "")


@register(
    "qat", "quantization-aware training (keeps sparsity/clusters of earlier steps: PQAT/CQAT)", QatParams, "train"
)
def apply(model: Any, data: Any, params: QatParams, workdir: Path) -> Any:
    check_layer_names(model, params.skip_layers, "qat")
    found = detect(model)
    name, scheme = scheme_for(params.preserve, found)
    quantized, layers = quantize(model, params.skip_layers, scheme)  # a clone: the input model is untouched
    counts = {kind: sum(d["qat"] == kind for d in layers.values()) for kind in ("tfmot", "output", "conv1d", "float")}
    progress(f"    qat: {len(layers) - counts['float']} of {len(layers)} layers int8-simulated{_left(layers)}")
    start = check_start(model, quantized, data, params)
    if params.freeze_batch_norm:
        _freeze_batch_norm(quantized)
    fit(quantized, data, params, workdir)
    write_info(
        workdir,
        {
            "preserve": params.preserve,
            "scheme": name,
            "detected": found,
            "left_float": [n for n, d in layers.items() if d["qat"] == "float"],
            "layers": layers,
            "layer_counts": counts,
            "start": start,
            "kernels_after": kernel_stats(quantized),
        },
    )
    return quantized


def _left(layers: dict[str, dict]) -> str:
    left = [f"{n} ({d['class']})" for n, d in layers.items() if d["qat"] == "float"]
    if not left:
        return ""
    return "; left float: " + ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")


def check_start(model: Any, quantized: Any, data: Any, params: QatParams) -> dict:
    """Calibrate the fake-quant ranges, then check the wrapped model starts where the float one is."""
    samples = calibrate_ranges(quantized, split_of(data, "train").head(CALIBRATION_SAMPLES))
    val = split_of(data, "val")  # loaded or streamed: read a batch at a time
    before, after = accuracy_on(model, val), accuracy_on(quantized, val)
    start = {
        "calibration_samples": samples,
        "float_val_accuracy": round(before, 4),
        "qat_val_accuracy": round(after, 4),
        "gap": round(before - after, 4),
        "max_gap": params.max_start_gap,
    }
    progress(f"    qat start: val accuracy {after:.2%} int8-simulated vs {before:.2%} float")
    # max_start_gap, or two validation answers if that is more: on a 150-sample split one flip is 0.7 points
    allowed = max(params.max_start_gap, 2 / max(len(data.y_val), 1))
    start["allowed_gap"] = round(allowed, 4)
    if before - after > allowed + 1e-9:
        layer, error = blame(model, quantized, val.head(BLAME_SAMPLES))
        raise UserError(
            f"qat: before training, the int8-simulated model's validation accuracy is {after:.2%}, "
            f"{(before - after) * 100:.1f} points below the float model's {before:.2%} (allowed: "
            f"{allowed * 100:.1f}, max_start_gap {params.max_start_gap:g}); the error grows most at layer "
            f"{layer!r} (relative output error {error:.3f}): leave it float with skip_layers: [{layer}], "
            "or raise max_start_gap"
        )
    return start


def _freeze_batch_norm(model: Any) -> None:
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if "BatchNormalization" in type(inner).__name__:
            inner.trainable = False
