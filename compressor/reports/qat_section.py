"""The HTML report's QAT layer table: which layers a qat step simulated in int8, and which it left float.

Layers tfmot wraps with its own 8-bit config are counted, not listed (an EfficientNet has hundreds);
every other decision (left float, output range only, our Conv1D config) is one row with its reason.
"""

from __future__ import annotations

import html

from compressor.reports.html_blocks import table

_HEADER = ["recipe", "layer", "class", "in QAT", "why"]
_SHOWN = {"float": "float", "output": "output range", "conv1d": "int8 (Conv1D config)"}


def qat_layer_table(steps: dict) -> str | None:
    """The table over every recipe's qat steps (report.json "steps"), or None when no step ran QAT."""
    rows, notes = [], []
    for recipe, metas in steps.items():
        for meta in metas:
            info = meta.get("info") or {}
            layers = info.get("layers")
            if meta.get("step") != "qat" or not isinstance(layers, dict):
                continue
            wrapped = sum(1 for d in layers.values() if d.get("qat") == "tfmot")
            notes.append(
                f"{html.escape(recipe)}: {len(layers)} layers, {wrapped} by tfmot's 8-bit configs{_start(info)}"
            )
            rows += [
                [recipe, name, d.get("class", ""), _SHOWN[d["qat"]], d.get("reason", "")]
                for name, d in layers.items()
                if d.get("qat") in _SHOWN
            ]
    if not notes:
        return None
    listed = table(_HEADER, rows) if rows else "<p>Every layer int8-simulated by tfmot's configs.</p>"
    return f"<p>{'; '.join(notes)}.</p>" + listed


def _start(info: dict) -> str:
    """The start check (recipes/qat.py check_start): validation accuracy before any QAT training."""
    start = info.get("start") or {}
    if "qat_val_accuracy" not in start:
        return ""
    return (
        f"; before training {start['qat_val_accuracy']:.2%} int8-simulated vs "
        f"{start['float_val_accuracy']:.2%} float on validation"
    )
