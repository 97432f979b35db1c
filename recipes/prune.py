"""Magnitude pruning: the smallest-magnitude weights of each Dense/Conv2D kernel are set to zero.

Polynomial schedule (Zhu & Gupta 2017, "To prune, or not to prune", arXiv:1710.01878): the target
sparsity at training step t rises from s_i to s_f between steps t0 and t1,

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0))^3,

with the mask recomputed every ``frequency`` steps, then held for the rest of the fine-tuning so
the surviving weights recover. ``m_by_n: "2:4"`` instead keeps the 2 largest of every 4
consecutive input weights (structured sparsity that sparse kernels can skip without indices); tfmot
sets those masks once, at the first training step, and the whole fine-tuning then recovers.
Built on ``tfmot.sparsity.keras.prune_low_magnitude``; wrappers are stripped before the model
leaves the step, so what follows sees a plain model whose kernels are ``sparsity`` zeros.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from compressor.datasets.splits import split_of
from compressor.recipes.accumulate import updates_per_epoch
from compressor.recipes.base import register
from compressor.recipes.finetune import fit
from compressor.recipes.stepio import write_info
from compressor.recipes.structure import (
    WrapperParams,
    check_layer_names,
    fresh_copy,
    kernel_layers,
    m_by_n_holds,
    sparsity,
    tflite_layout,
)
from compressor.runtime.errors import UserError

XNNPACK_MIN_SPARSITY = 0.67  # XNNPACK's sparse path needs more than 2/3 zeros in the 1x1 convolutions
NOTE = "pruning shrinks the gzip-compressed file, not the raw .tflite (zeros are stored like any other weight)"


class PruneParams(WrapperParams):
    epochs: int = Field(8, ge=1, le=10_000, description="fine-tuning epochs")
    learning_rate: float = Field(5e-4, gt=0, le=10, description="peak learning rate")
    sparsity: float = Field(0.5, ge=0, lt=1, description="target fraction of zero weights in each pruned kernel")
    schedule: Literal["polynomial", "constant"] = Field(
        "polynomial",
        description="polynomial: ramp from initial_sparsity (Zhu & Gupta 2017); constant: the target at once",
    )
    initial_sparsity: float = Field(0.0, ge=0, lt=1, description="sparsity where the polynomial ramp starts")
    begin_fraction: float = Field(0.0, ge=0, lt=1, description="share of the fine-tuning steps before pruning starts")
    end_fraction: float = Field(
        0.7,
        gt=0,
        le=1,
        validate_default=True,
        description="share of the fine-tuning steps after which the target holds",
    )
    frequency: int = Field(10, ge=1, description="training steps between mask updates")
    skip_layers: list[str] = Field([], description="layer names left dense")
    policy: Literal["all", "xnnpack"] = Field(
        "all",
        description="all: every Dense/Conv2D kernel; xnnpack: only what XNNPACK's sparse kernels run (1x1 "
        "convolutions between a 3x3 stride-2 stem and global average pooling; tfmot's PruneForLatencyOnXNNPack), "
        "sparsity >= 2/3; export with the sparse_float step",
    )
    m_by_n: str | None = Field(
        None,
        description='structured sparsity, e.g. "2:4": m zeros in every n input weights '
        "(masks set at the first step; the schedule does not apply)",
    )

    @field_validator("initial_sparsity")
    @classmethod
    def _below_target(cls, value: float, info: ValidationInfo) -> float:
        if info.data.get("schedule") == "polynomial" and value > info.data.get("sparsity", 1):
            raise ValueError(f"must be <= sparsity ({info.data['sparsity']})")
        return value

    @field_validator("end_fraction")
    @classmethod
    def _after_begin(cls, value: float, info: ValidationInfo) -> float:
        if value <= info.data.get("begin_fraction", 0):
            raise ValueError(f"must be > begin_fraction ({info.data['begin_fraction']})")
        return value

    @field_validator("m_by_n", mode="before")
    @classmethod
    def _pattern(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = f"{value // 60}:{value % 60}"  # YAML 1.1 reads an unquoted 2:4 as base-60 2 * 60 + 4 = 124
        found = re.fullmatch(r"(\d+):(\d+)", str(value))
        if not found or not 0 < int(found[1]) < int(found[2]):
            raise ValueError(f'must look like "2:4" (m zeros in every n weights, 0 < m < n), got {value!r}')
        m, n = int(found[1]), int(found[2])
        if "sparsity" in info.data and abs(info.data["sparsity"] - m / n) > 1e-9:
            raise ValueError(f"{value} prunes exactly {m} of every {n} weights; set sparsity to {m / n:g}")
        return str(value)

    @field_validator("policy")
    @classmethod
    def _xnnpack_sparsity(cls, value: str, info: ValidationInfo) -> str:
        if value == "xnnpack" and info.data.get("sparsity", 1) < XNNPACK_MIN_SPARSITY:
            raise ValueError("xnnpack: sparsity must be >= 0.67 (XNNPACK runs sparse kernels from 2/3 zeros on)")
        return value

    @field_validator("early_stopping")
    @classmethod
    def _no_restore(cls, value: int) -> int:
        if value:  # restoring the best epoch could bring back weights (and masks) from before the target
            raise ValueError("must be 0 for prune: restoring an earlier epoch would undo pruning")
        return value

    @property
    def m_by_n_tuple(self) -> tuple[int, int] | None:
        return tuple(int(v) for v in self.m_by_n.split(":")) if self.m_by_n else None  # type: ignore[return-value]


def schedule_steps(params: PruneParams, total_steps: int) -> tuple[int, int, int]:
    """(begin, end, frequency) in training steps (0 .. total_steps - 1).

    tfmot updates the mask when (step - begin) % frequency == 0 and begin <= step <= end: ``end``
    is moved down onto that grid, or the last update would fall short of the target sparsity.
    """
    begin = min(int(params.begin_fraction * total_steps), total_steps - 1)
    end = max(min(int(round(params.end_fraction * total_steps)), total_steps - 1), begin)
    frequency = max(1, min(params.frequency, end - begin))
    end = begin + (end - begin) // frequency * frequency
    return begin, end, frequency


def prunable(model: Any, params: PruneParams) -> tuple[list, dict[str, str]]:
    """Layers to prune, and the reason each other Dense/Conv2D layer stays dense."""
    left: dict[str, str] = {name: "skip_layers" for name in params.skip_layers}
    layers = kernel_layers(model, params.skip_layers)
    if params.policy == "xnnpack":
        layers = _xnnpack_layers(model, layers, left)
    if params.m_by_n:
        n = params.m_by_n_tuple[1]
        for layer in list(layers):
            fan_in = layer.kernel.shape[-2]
            if fan_in % n:  # groups run along the input dim; a padded group would stay dense anyway
                left[layer.name] = f"{fan_in} input channel(s), not a multiple of {n}"
                layers.remove(layer)
    return layers, left


def _xnnpack_layers(model: Any, layers: list, left: dict[str, str]) -> list:
    """The layers tfmot's PruneForLatencyOnXNNPack policy prunes; a model it cannot serve is one error."""
    from compressor.keras_shim import tfmot

    policy = tfmot().sparsity.keras.PruneForLatencyOnXNNPack()
    try:
        policy.ensure_model_supports_pruning(model)
    except ValueError as e:
        raise UserError(f"prune policy xnnpack: {str(e).splitlines()[0][:300]}; use policy: all") from None
    kept = [layer for layer in layers if policy.allow_pruning(layer)]
    for layer in layers:
        if layer not in kept:
            left[layer.name] = "not run by XNNPACK's sparse kernels (policy xnnpack)"
    return kept


@register(
    "prune", "magnitude pruning of Dense/Conv2D kernels (polynomial or constant schedule, or m:n)", PruneParams, "train"
)
def apply(model: Any, data: Any, params: PruneParams, workdir: Path) -> Any:
    from compressor.keras_shim import keras, tfmot

    sparse = tfmot().sparsity.keras
    check_layer_names(model, params.skip_layers, "prune")
    model = fresh_copy(model, "prune")
    layers, left = prunable(model, params)
    if not layers:
        raise UserError(
            "prune: no Dense or Conv2D layer left to prune "
            f"({', '.join(f'{k}: {v}' for k, v in left.items()) or 'the model has none'})"
        )
    # A schedule step is one optimizer update (UpdatePruningStep counts fit's batches, which hold
    # accumulate_steps micro-batches each): ceil(n / (accumulate_steps * batch_size)) per epoch.
    steps_per_epoch = updates_per_epoch(len(split_of(data, "train")), params.batch_size, params.accumulate_steps)
    begin, end, frequency = schedule_steps(params, params.epochs * steps_per_epoch)
    if params.schedule == "polynomial" and end > begin:  # begin == end (one training step) would divide by 0
        schedule = sparse.PolynomialDecay(
            params.initial_sparsity, params.sparsity, begin, end, power=3, frequency=frequency
        )
    else:
        schedule = sparse.ConstantSparsity(params.sparsity, begin, end, frequency=frequency)
    names = {layer.name for layer in layers}

    def wrap(layer: Any) -> Any:
        if layer.name not in names:
            return layer
        return sparse.prune_low_magnitude(layer, pruning_schedule=schedule, sparsity_m_by_n=params.m_by_n_tuple)

    wrapped = keras.models.clone_model(model, clone_function=wrap)
    fit(wrapped, data, params, workdir, extra_callbacks=[sparse.UpdatePruningStep()])
    pruned = sparse.strip_pruning(wrapped)
    write_info(workdir, _info(pruned, names, left, params, (begin, end, frequency)))
    return pruned


def _info(model: Any, names: set[str], left: dict[str, str], params: PruneParams, steps: tuple) -> dict:
    per_layer, pattern, zeros, size = {}, {}, 0, 0
    for layer in kernel_layers(model):
        if layer.name in names:
            kernel = layer.kernel.numpy()
            per_layer[layer.name] = round(sparsity(kernel), 4)
            zeros, size = zeros + int((kernel == 0).sum()), size + kernel.size
            if params.m_by_n:
                pattern[layer.name] = m_by_n_holds(tflite_layout(kernel), *params.m_by_n_tuple)
    return {
        "target_sparsity": params.sparsity,
        "policy": params.policy,
        "m_by_n": params.m_by_n,
        "m_by_n_holds": pattern or None,
        "sparsity_per_layer": per_layer,
        "overall_sparsity": round(zeros / size, 4),
        "pruned_weights": size,
        "left_dense": left,
        "schedule": {"type": "m_by_n", "mask_step": 1}
        if params.m_by_n
        else {"type": params.schedule, "begin_step": steps[0], "end_step": steps[1], "frequency": steps[2]},
        "note": NOTE,
    }
