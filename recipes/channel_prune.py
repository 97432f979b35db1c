"""`channel_prune`: remove whole filters/units, rebuild a smaller dense model, fine-tune it.

Magnitude pruning zeroes weights inside kernels of unchanged shape: the file gzips smaller, the
interpreter does the same work. Removing whole output channels (filters of a Conv, units of a
Dense) shrinks every following tensor and kernel, so the model runs fewer multiply-accumulates
(MACs) on any runtime. Steps:

1. channel groups (channel_prune_graph): layers whose channels must stay identical (residual
   Add inputs, BatchNorm and DepthwiseConv2D after a conv, Concatenate, the Dense after
   Flatten/GlobalPooling); groups at the model's input/output, ``skip_layers``, shared layers
   and layers we cannot trace (Lambda, Reshape, custom...) are kept whole, with the reason;
2. which channels to keep (channel_prune_plan): importance l1/l2/bn, a fraction per layer or
   global, ``round_to``/``min_channels``, the mildest fraction that meets the MACs ``target``;
3. the model rebuilt from its config with fewer filters/units, weights sliced (channel_prune_build);
4. fine-tuning through the shared fit, optionally distilled from the unpruned model with distill's
   loss: ``(1 - distill_weight) * CE + distill_weight * T^2 * KL(teacher || student)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from compressor.recipes.base import progress, register
from compressor.recipes.channel_prune_build import pruned_model
from compressor.recipes.channel_prune_graph import analyse
from compressor.recipes.channel_prune_macs import total_macs
from compressor.recipes.channel_prune_plan import Plan, make_plan
from compressor.recipes.distill import distillation_loss, label_accuracy, with_teacher
from compressor.recipes.finetune import FineTuneParams, fit
from compressor.recipes.stepio import write_info
from compressor.recipes.structure import check_layer_names
from compressor.runtime.errors import UserError


class ChannelPruneParams(FineTuneParams):
    epochs: int = Field(8, ge=1, le=10_000, description="fine-tuning epochs of the pruned model")
    learning_rate: float = Field(5e-4, gt=0, le=10, description="peak learning rate")
    target: float | None = Field(
        0.5, gt=0, le=1, description="fraction of the model's Conv/Dense MACs to keep (0.5 = half the MACs)"
    )
    filter_fraction: float | None = Field(
        None, ge=0, lt=1, description="instead of target: fraction of the prunable filters/units to remove"
    )
    scope: Literal["layer", "global"] = Field(
        "layer", description="layer: the same fraction of every group; global: the lowest-ranked channels anywhere"
    )
    importance: Literal["l1", "l2", "bn"] = Field(
        "l1", description="l1/l2 norm of each filter, or |gamma| of the BatchNormalization after it"
    )
    min_channels: int = Field(1, ge=1, le=65_536, description="fewest channels any pruned layer keeps")
    round_to: int = Field(1, ge=1, le=256, description="kept channels are a multiple of this (SIMD-friendly)")
    skip_layers: list[str] = Field([], description="layers whose filters/units are kept whole")
    distill_weight: float = Field(
        0.0, ge=0, le=1, description="weight of distillation from the unpruned model during fine-tuning; 0 = off"
    )
    temperature: float = Field(4.0, gt=0, le=100, description="softmax temperature of the distillation")

    @model_validator(mode="before")
    @classmethod
    def _one_amount(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("filter_fraction") is not None:
            if data.get("target") is not None:
                raise ValueError("give target (MACs) or filter_fraction, not both (set target: null)")
            data = {**data, "target": None}
        return data

    @model_validator(mode="after")
    def _an_amount(self) -> ChannelPruneParams:
        if self.target is None and self.filter_fraction is None:
            raise ValueError("give target (fraction of MACs to keep) or filter_fraction")
        return self


@register(
    "channel_prune",
    "removes whole filters/units (l1/l2/BatchNorm importance) to a MACs target, keeps coupled layers "
    "consistent, rebuilds a smaller dense model and fine-tunes it (optionally distilled)",
    ChannelPruneParams,
    "train",
)
def apply(model: Any, data: Any, params: ChannelPruneParams, workdir: Path) -> Any:
    check_layer_names(model, params.skip_layers, "channel_prune")
    try:
        graph = analyse(model, params.skip_layers)
    except ValueError as e:
        raise UserError(f"channel_prune: {e}") from None
    if not graph.prunable():
        reasons = "; ".join(f"{k}: {v}" for k, v in graph.not_pruned().items()) or "no Conv/Dense layers"
        raise UserError(f"channel_prune: no channels can be removed consistently ({reasons})")
    plan = make_plan(model, graph, params)
    pruned, narrowed = pruned_model(model, graph, plan.keep)
    after = total_macs(pruned)
    progress(
        f"    channel_prune: MACs {plan.macs_before:,} -> {after:,} ({after / max(plan.macs_before, 1):.0%}), "
        f"{len(narrowed)} layer(s) narrowed, importance {params.importance}"
    )
    if params.target is not None and after > params.target * plan.macs_before:
        progress(f"    channel_prune: target {params.target:g} of the MACs not reachable within min_channels/round_to")
    history = _fine_tune(model, pruned, data, params, workdir)
    write_info(workdir, _info(model, pruned, graph, plan, narrowed, params, history))
    return pruned


def _fine_tune(teacher: Any, student: Any, data: Any, params: ChannelPruneParams, workdir: Path) -> dict:
    if not params.distill_weight:
        return fit(student, data, params, workdir)

    soft = with_teacher(teacher, data, "channel_prune")  # as in distill: log-probs ride in y_true
    loss = distillation_loss(1.0 - params.distill_weight, params.temperature)
    return fit(student, soft, params, workdir, loss=loss, metrics=[label_accuracy()])


def _info(model: Any, pruned: Any, graph: Any, plan: Plan, narrowed: dict, params: ChannelPruneParams, history: dict):
    after = total_macs(pruned)
    groups = [
        {"layers": graph.sources[r], "channels": [graph.size[r], int(len(plan.keep[r]))]} for r in graph.prunable()
    ]
    return {
        "importance": params.importance,
        "importance_fallback": plan.fallbacks,
        "scope": params.scope,
        "target_macs": params.target,
        "filter_fraction": params.filter_fraction,
        "fraction_before_rounding": round(plan.fraction, 4),  # per group (scope layer) or of all channels
        "macs_before": plan.macs_before,
        "macs_after": after,
        "macs_ratio": round(after / max(plan.macs_before, 1), 4),
        "target_reached": None if params.target is None else after <= params.target * plan.macs_before,
        "parameters_before": int(model.count_params()),
        "parameters_after": int(pruned.count_params()),
        "narrowed": narrowed,
        "groups": groups,
        "not_pruned": graph.not_pruned(),
        "skipped_layers": dict(graph.skipped),
        "round_to": params.round_to,
        "min_channels": params.min_channels,
        "distill_weight": params.distill_weight,
        "val_accuracy_after": (history.get("val_accuracy") or [None])[-1],
    }
