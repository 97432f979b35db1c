"""Trials of a study as plain JSON rows: what tune.json / search.json and the HTML report show."""

from __future__ import annotations

import math
from typing import Any


def _num(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def trial_rows(study: Any, space: Any = None) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        objectives = [_num(v) for v in t.values] if t.values else None
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": objectives[0] if objectives and len(objectives) == 1 else None,
                "objectives": objectives,
                "values": attrs.get("values", dict(t.params)),
                "params": dict(t.params),
                "epochs_run": len(t.intermediate_values),
                "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
                "seconds": attrs.get("seconds"),
                "worker": attrs.get("worker"),
                "error": attrs.get("error"),
                "history": attrs.get("history"),
                "result": attrs.get("result"),
                "feasible": attrs.get("feasible"),
                "label": attrs.get("label"),
                "recipe": attrs.get("recipe"),
                "reference_val_accuracy": attrs.get("reference_val_accuracy"),
                "reused_from": attrs.get("reused_from"),
            }
        )
    return rows
