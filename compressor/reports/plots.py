"""Figures for the HTML report, drawn headless with matplotlib and returned as PNG bytes.

Every function takes plain numbers (from report.json / tune.json / search.json), so a report can
be redrawn from its JSON alone, on a machine without TensorFlow.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display here or in CI; must be chosen before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullFormatter  # noqa: E402

DPI = 90


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def pareto_scatter(*args: Any, **kwargs: Any) -> bytes:
    """:func:`pareto_figure` as PNG bytes."""
    return _png(pareto_figure(*args, **kwargs))


def pareto_figure(
    xs: Sequence[float],
    ys: Sequence[float],
    labels: Sequence[str],
    front: Sequence[bool],
    xlabel: str,
    ylabel: str,
    title: str,
    feasible: Sequence[bool] | None = None,
    hline: float | None = None,
    hline_label: str = "",
    logx: bool = False,
    keys: Sequence[str] | None = None,
):
    """The figure of :func:`pareto_scatter`. Every point is marked with a short key (default 1, 2, ...),
    and the legend names each key (``labels``): points stay identifiable where names would overlap."""
    fig, ax = plt.subplots(figsize=(8.4, 4.2))
    feasible = list(feasible) if feasible is not None else [True] * len(xs)
    keys = list(keys) if keys is not None else [str(n) for n in range(1, len(xs) + 1)]
    for key, x, y, name, on, ok in zip(keys, xs, ys, labels, front, feasible):
        ax.scatter(
            x,
            y,
            s=46 if on else 22,
            c="tab:red" if on else ("tab:blue" if ok else "lightgray"),
            edgecolors="black" if on else "none",
            zorder=3 if on else 2,
            label=f"{key}: {name}",
        )
        ax.annotate(key, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    pts = sorted((x, y) for x, y, on in zip(xs, ys, front) if on)
    if len(pts) > 1:
        ax.step(
            [p[0] for p in pts], [p[1] for p in pts], where="post", c="tab:red", lw=1, zorder=1, label="Pareto front"
        )
    if hline is not None:
        ax.axhline(hline, ls="--", c="gray", lw=1, label=hline_label)
    if logx:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, ncols=1 + len(xs) // 24)
    return fig


def param_scatter(
    values: Sequence,
    scores: Sequence[float],
    states: Sequence[str],
    name: str,
    log: bool = False,
    score_label: str = "validation accuracy",
) -> bytes:
    """One hyperparameter against the score; pruned trials (score = last epoch reached) hollow."""
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    categorical = any(isinstance(v, (str, bool)) or v is None for v in values)
    xs = [str(v) for v in values] if categorical else values
    if categorical:  # a stable, sorted category order instead of first-seen order
        order = sorted(set(xs), key=lambda v: (len(v), v))
        ax.scatter(order, [min(scores)] * len(order), s=0)
    for x, y, st in zip(xs, scores, states):
        done = st == "COMPLETE"
        ax.scatter(
            x, y, s=24, facecolors="tab:blue" if done else "none", edgecolors="tab:blue", alpha=0.9 if done else 0.6
        )
    if log and not categorical:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log range overlap
    ax.set(xlabel=name, ylabel=score_label)
    ax.grid(alpha=0.3)
    return _png(fig)


def training_curves(history: dict[str, Sequence[float]], title: str) -> bytes:
    """Loss (left) and accuracy (right) per epoch, train and validation."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.6, 3.0))
    for key, series in history.items():
        target = left if "loss" in key else right if "acc" in key else None
        if target is not None and len(series):
            target.plot(range(1, len(series) + 1), series, marker="o", ms=3, label=key)
    epochs = max((len(v) for v in history.values()), default=1)
    for ax, what in ((left, "loss"), (right, "accuracy")):
        ax.set(xlabel="epoch", ylabel=what)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if epochs <= 3:  # a 1-2 epoch step would get fractional ticks around its point
            ax.set_xlim(0.5, epochs + 0.5)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def intermediate_curves(curves: dict[str, Sequence[float]], pruned: set[str], title: str) -> bytes:
    """Validation accuracy per epoch of every trial; pruned trials dashed, where pruning stopped them."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, series in curves.items():
        ax.plot(
            range(1, len(series) + 1),
            series,
            ls="--" if name in pruned else "-",
            lw=1,
            marker="o",
            ms=3,
            c="gray" if name in pruned else None,
            alpha=0.7,
        )
    ax.set(xlabel="epoch", ylabel="validation accuracy", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    return _png(fig)


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str) -> bytes:
    n = len(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * n, 1.0 + 0.42 * n))
    ax.imshow(matrix, cmap="Blues")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > peak / 2 else "black")
    ticks = list(range(n))
    names = [str(lab) for lab in labels][:n] if labels else [str(t) for t in ticks]
    ax.set_xticks(ticks, names, fontsize=7, rotation=90 if n > 12 else 0)
    ax.set_yticks(ticks, names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _png(fig)


def layer_bars(names: Sequence[str], values: Sequence[float], xlabel: str, title: str) -> bytes:
    """Horizontal bars, one per layer, in model order (top = first layer)."""
    fig, ax = plt.subplots(figsize=(6.8, 0.9 + 0.26 * len(names)))
    ax.barh(range(len(names)), values, color="tab:orange")
    ax.set_yticks(range(len(names)), [n[-48:] for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel=xlabel, title=title)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)
