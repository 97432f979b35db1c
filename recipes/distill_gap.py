"""Why a distilled student stays well below its teacher: one sentence for the report.

A student more than ``GAP_POINTS`` below the teacher on the test split gets a reason read off its
own training: the epoch budget ran out while validation was still improving (more epochs help), or
validation stopped improving early, so the student is too small for the task at this width (a wider
or larger student helps); and whether the teacher's soft targets helped at all (student alone).
"""

from __future__ import annotations

GAP_POINTS = 0.03  # "within a few points of the teacher"


def gap_note(accuracy: dict, handed_on: float, record: dict, params: object, parameter_ratio: float) -> dict | None:
    """{"points", "why"} when the handed-on student is more than GAP_POINTS below the teacher, else None.

    ``accuracy``: teacher / student_alone / distilled test accuracies; ``record``: the distilled fit's
    history (finetune.fit: epochs_run, val_loss); ``params``: the step's epochs, early_stopping, width."""
    gap = accuracy["teacher"] - handed_on
    if gap <= GAP_POINTS:
        return None
    epochs, run = int(getattr(params, "epochs", 0)), int(record.get("epochs_run", 0))
    losses = record.get("val_loss") or []
    best = 1 + min(range(len(losses)), key=losses.__getitem__) if losses else run
    if run >= epochs and best > run - max(int(getattr(params, "early_stopping", 0)), 1):
        why = (
            f"validation was still improving when the {epochs} epoch{'s' if epochs != 1 else ''} ran out "
            f"(best at epoch {best}): "
            "raise the step's epochs"
        )
    else:
        size = f"{parameter_ratio:.0%} of the teacher's parameters"
        if getattr(params, "student", None) is None:
            size += f" (width {getattr(params, 'width', 1.0):g})"
        why = (
            f"validation stopped improving at epoch {best} of {run}: at {size} the student is too small "
            "for this task; raise width or choose a larger student"
        )
    alone = accuracy.get("student_alone")
    if alone is not None and alone >= accuracy.get("distilled", 0.0):
        why += f"; the teacher's soft targets did not help here (labels alone: {alone:.2%})"
    return {"points": round(gap * 100, 2), "why": why}
