"""The verdict of a `compressor search`: its trials as candidates, the Pareto front, the choice.

Everything here works on the rows of the study (trial_rows) and is a pure function of them, so
a finished study can be summarised again, and tested, without running anything.
"""

from __future__ import annotations

from compressor.tuning.pareto import closest, front_mask, pick


def summarize(rows: list[dict], max_drop: float, baseline_number: int | None, confidence: float = 0.5) -> dict:
    """search.json's verdict part: candidates (front marked), baseline, chosen or closest, failures."""
    done = [r for r in rows if r["state"] == "COMPLETE" and r.get("result")]
    cands = [_candidate(r) for r in done]
    mask = front_mask([(c["val_accuracy"], c["gzip_bytes"], c["latency_ms"]) for c in cands], [True, False, False])
    for c, on in zip(cands, mask):
        c["front"] = on
    ref = done[0]["reference_val_accuracy"] if done else None
    base = next((c for c in cands if c["number"] == baseline_number), None)
    chosen = pick(cands)
    near = None if chosen else closest(cands, "drop_bound")
    better = [
        c
        for c in cands
        if base and c["feasible"] and c["gzip_bytes"] < base["gzip_bytes"] and c["val_accuracy"] >= base["val_accuracy"]
    ]
    failed = [{"number": r["number"], "error": r["error"]} for r in rows if r["state"] == "FAIL"]
    return {
        "schema": "compressor.search/1",
        "max_accuracy_drop": max_drop,
        "confidence": confidence,
        "reference_val_accuracy": ref,
        "validation_samples": done[0]["result"].get("val_samples") if done else None,
        "candidates": cands,
        "baseline": base,
        "chosen": chosen,
        "closest": near,
        "smaller_than_int8_at_no_worse_accuracy": min(better, key=lambda c: c["gzip_bytes"]) if better else None,
        "failed": failed,
        "verdict": _verdict(chosen, near, base, max_drop, len(cands)),
        "notes": [f"{len(failed)} trial(s) failed; reasons in search.json 'failed'"] if failed else [],
    }


def _candidate(r: dict) -> dict:
    """One completed trial as the search compares it (drops are fractions of the reference accuracy)."""
    res = r["result"]
    return {
        "number": r["number"],
        "label": _label(r),
        "recipe": r.get("recipe"),
        "val_accuracy": res["val_accuracy"],
        "size_bytes": res["size_bytes"],
        "gzip_bytes": res["gzip_bytes"],
        "latency_ms": res["latency_ms"],
        "macs": res.get("macs"),  # trials of studies from before MACs were counted have none
        "accuracy_drop": r["reference_val_accuracy"] - res["val_accuracy"],
        "drop_bound": res.get("drop_bound", r["reference_val_accuracy"] - res["val_accuracy"]),
        "losses": res.get("val_losses"),
        "gains": res.get("val_gains"),
        "feasible": bool(r["feasible"]),
        "seconds": r["seconds"],
        "ran_in": r["reused_from"] if r.get("reused_from") is not None else r["number"],
        "mcu": res.get("mcu"),  # with --max-arena-kb / --max-flash-kb: arena and flash on TFLite Micro
    }


def _label(row: dict) -> str:
    return (row.get("label") or "").strip() or f"trial {row['number']}"


def _verdict(chosen: dict | None, near: dict | None, base: dict | None, max_drop: float, n: int) -> str:
    if not n:
        return "no trial completed: nothing to compare (see the failed trials)"
    if chosen is None:
        limits = " and the microcontroller limits" if near.get("mcu") else ""
        return (
            f"no trial met --max-accuracy-drop {max_drop:.2%}{limits}: the closest in accuracy is trial "
            f"{near['number']} ({near['label']}) with a drop of {near['accuracy_drop']:.2%} (upper bound "
            f"{near['drop_bound']:.2%}); every result is kept in search.json"
        )
    text = (
        f"chosen: trial {chosen['number']} ({chosen['label']}): validation accuracy {chosen['val_accuracy']:.2%} "
        f"(drop {chosen['accuracy_drop']:+.2%}, bound {chosen['drop_bound']:+.2%}, limit {max_drop:.2%}), "
        f"gzip {chosen['gzip_bytes'] / 1024:.1f} KB, "
        f"{chosen['latency_ms']:.3f} ms"
    )
    if base is not None:
        text += (
            f"; plain int8 PTQ: {base['val_accuracy']:.2%}, gzip {base['gzip_bytes'] / 1024:.1f} KB, "
            f"{base['latency_ms']:.3f} ms (chosen is {base['gzip_bytes'] / chosen['gzip_bytes']:.2f}x smaller)"
        )
    return text
