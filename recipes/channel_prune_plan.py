"""Which channels channel_prune keeps: importance per channel, a count per group, a MACs target.

Importance of output channel c of a group (summed over the group's Conv/Dense layers, whose
kernels hold the channel in their last axis; a SeparableConv's pointwise kernel):

    l1:  sum |W[..., c]|          (Li et al. 2017, "Pruning Filters for Efficient ConvNets")
    l2:  sqrt(sum W[..., c]^2)
    bn:  |gamma_c| of the BatchNormalization right after the layer (Liu et al. 2017, "Network
         Slimming"); a layer without one falls back to l1, and the fallback is reported.

Scores are divided by their group's mean, so groups of different fan-in compare on one scale.
``scope: layer`` removes the same fraction f of every prunable group; ``scope: global`` removes
the f share of all prunable channels with the lowest scores, wherever they are. Each count is
then rounded to a multiple of ``round_to`` (kept whole when smaller) and held >= ``min_channels``.
With a MACs ``target`` the smallest f whose estimate meets it is found by bisection: kept
fractions scale the MACs bilinearly (channel_prune_macs), so no model is built while searching.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from compressor.recipes.channel_prune_graph import ChannelGraph, Layout
from compressor.recipes.channel_prune_macs import layer_macs

_FALLBACK = "l1 (no BatchNormalization with a scale right after it)"


@dataclass(frozen=True)
class Plan:
    keep: dict[int, np.ndarray]  # group root -> kept channel indices, ascending
    fraction: float  # the f the counts come from
    macs_before: int
    macs_estimate: int
    fallbacks: dict[str, str]  # layer -> importance used instead of bn


def channel_scores(model: Any, graph: ChannelGraph, importance: str) -> tuple[dict[int, np.ndarray], dict[str, str]]:
    """Group root -> mean-normalised importance per channel; layers that fell back from bn."""
    scores, fallbacks = {}, {}
    for root in graph.prunable():
        total = np.zeros(graph.size[root])
        for name in graph.sources[root]:
            values, used = _layer_scores(model, graph, name, importance)
            total += values
            if used != importance:
                fallbacks[name] = used
        scores[root] = total / max(float(total.mean()), 1e-12)
    return scores, fallbacks


def _layer_scores(model: Any, graph: ChannelGraph, name: str, importance: str) -> tuple[np.ndarray, str]:
    if importance == "bn":
        bn = graph.bn_after.get(name)
        gamma = getattr(model.get_layer(bn), "gamma", None) if bn else None
        if gamma is not None:
            return np.abs(gamma.numpy()).astype(np.float64), "bn"
        importance = _FALLBACK
    weights = model.get_layer(name).get_weights()
    kernel = weights[1] if graph.kinds[name].startswith("Separable") else weights[0]
    flat = kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)
    if importance == "l2":
        return np.sqrt((flat**2).sum(axis=0)), "l2"
    return np.abs(flat).sum(axis=0), importance


def rounded(k: int, n: int, min_channels: int, round_to: int) -> int:
    """``k`` of ``n`` channels held >= min_channels and rounded to a multiple of round_to
    (nearest; a group smaller than round_to, or rounding up to n, keeps all n)."""
    floor = min(min_channels, n)
    k = max(k, floor)
    if round_to > 1 and k < n:
        k = max(round_to, math.floor(k / round_to + 0.5) * round_to)
        k = max(k, math.ceil(floor / round_to) * round_to)
    return min(k, n)


def keep_counts(scores: dict[int, np.ndarray], fraction: float, params: Any) -> dict[int, int]:
    """Channels kept per group when ``fraction`` of them (per group, or of all) is removed."""
    if params.scope == "layer":
        raw = {r: len(s) - math.floor(fraction * len(s) + 0.5) for r, s in scores.items()}
    else:
        roots = list(scores)
        values = np.concatenate([scores[r] for r in roots])
        owner = np.concatenate([np.full(len(scores[r]), i) for i, r in enumerate(roots)])
        cut = owner[np.argsort(values, kind="stable")[: math.floor(fraction * len(values) + 0.5)]]
        removed = np.bincount(cut, minlength=len(roots))
        raw = {r: len(scores[r]) - int(removed[i]) for i, r in enumerate(roots)}
    return {r: rounded(k, len(scores[r]), params.min_channels, params.round_to) for r, k in raw.items()}


def make_plan(model: Any, graph: ChannelGraph, params: Any) -> Plan:
    """The channels to keep, for ``params.filter_fraction`` or the mildest f meeting ``params.target``."""
    scores, fallbacks = channel_scores(model, graph, params.importance)
    base = layer_macs(graph.reference)
    before = int(sum(a + b for a, b in base.values()))
    usage = {name: (_usage(graph, i), _usage(graph, o)) for name, (i, o) in graph.io.items() if name in base}

    def estimate(fraction: float) -> int:
        return _estimate(base, usage, keep_counts(scores, fraction, params), graph.size)

    if params.filter_fraction is not None:
        fraction = params.filter_fraction
    else:
        fraction = _mildest(lambda f: estimate(f) <= params.target * before)
    counts = keep_counts(scores, fraction, params)
    keep = {r: np.sort(np.argsort(-scores[r], kind="stable")[:k]) for r, k in counts.items()}
    return Plan(keep, fraction, before, estimate(fraction), fallbacks)


def _mildest(meets: Any) -> float:
    """Smallest f in [0, 1] with meets(f) (meets is monotone); 1.0 when even that falls short."""
    if meets(0.0) or not meets(1.0):
        return 0.0 if meets(0.0) else 1.0
    low, high = 0.0, 1.0
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (low, mid) if meets(mid) else (mid, high)
    return high


def _usage(graph: ChannelGraph, layout: Layout) -> Counter:
    """Group root -> how many times its channels appear along the layout (Flatten repeats them)."""
    return Counter(graph.find(gid) for gid, _ in layout)


def _estimate(base: dict, usage: dict, counts: dict[int, int], size: dict[int, int]) -> int:
    total = 0.0
    for name, (per_in, per_in_out) in base.items():
        if name not in usage:
            total += per_in + per_in_out
            continue
        kept_in, kept_out = (
            sum(m * counts.get(r, size[r]) for r, m in use.items()) / max(sum(m * size[r] for r, m in use.items()), 1)
            for use in usage[name]
        )
        total += per_in * kept_in + per_in_out * kept_in * kept_out
    return int(round(total))
