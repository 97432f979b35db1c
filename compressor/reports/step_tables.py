"""HTML report tables read off the training steps' info (report.json "steps").

- QAT layers: which layers a qat step simulated in int8 and which it left float. Layers tfmot wraps
  with its own 8-bit config are counted, not listed (an EfficientNet has hundreds); every other
  decision (left float, output range only, our Conv1D config) is one row with its reason.
- Distillation: teacher, student at start, student alone (labels only), distilled, which one was
  handed on, and why the student stays well below its teacher when it does (recipes/distill_gap.py).
"""

from __future__ import annotations

import html

from compressor.reports.html_blocks import pct, table

_HEADER = ["recipe", "layer", "class", "in QAT", "why"]
_SHOWN = {"float": "float", "output": "output range", "conv1d": "int8 (Conv1D config)"}


def _step_infos(steps: dict, step: str, key: str):
    """(recipe, info) of every ``step`` step whose info holds the dict ``key``."""
    for recipe, metas in steps.items():
        for meta in metas:
            info = meta.get("info") or {}
            if meta.get("step") == step and isinstance(info.get(key), dict):
                yield recipe, info


def qat_layer_table(steps: dict) -> str | None:
    """The table over every recipe's qat steps (report.json "steps"), or None when no step ran QAT."""
    rows, notes = [], []
    for recipe, info in _step_infos(steps, "qat", "layers"):
        layers = info["layers"]
        wrapped = sum(1 for d in layers.values() if d.get("qat") == "tfmot")
        notes.append(f"{html.escape(recipe)}: {len(layers)} layers, {wrapped} by tfmot's 8-bit configs{_start(info)}")
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


_DISTILL_HEADER = ["recipe", "student / teacher params", "teacher", "student start", "labels alone", "distilled"]


def distill_table(steps: dict) -> str | None:
    """Every distill step's test accuracies (its info.json), or None when no step distilled."""
    rows, notes = [], []
    for recipe, info in _step_infos(steps, "distill", "test_accuracy"):
        acc, ratio = info["test_accuracy"], info.get("parameter_ratio")
        cells = [acc.get(k) for k in ("teacher", "student_start", "student_alone", "distilled")]
        rows.append([recipe, f"{ratio:.0%}" if ratio else "", *(pct(c) for c in cells)])
        note = f"{recipe}: handed on the {info.get('handed_on', 'distilled')}"
        if info.get("gap"):
            note += f"; {info['gap']['points']:.1f} points below the teacher: {info['gap']['why']}"
        notes.append(html.escape(note))
    if not rows:
        return None
    return table(_DISTILL_HEADER, rows) + "".join(f"<p>{n}.</p>" for n in notes)
