"""Whether a compressed artifact is slower than float32 on this machine, so nobody ships a slower
model by accident: int8 is not faster on every CPU, int16x8 often runs on reference kernels
(tens of times slower than float), and dynamic-range models dequantize at run time.

Compared per format (a .tflite with the float32 .tflite, an .onnx with the float32 .onnx), medians
measured in the same run, single-sample latency at the run's thread count.
"""

from __future__ import annotations

# Medians of the same run differ by a few percent from timing noise alone: only more is "slower",
# and by more than a few microseconds (the timer's resolution on a model that takes one).
SLOWER = 1.10
MIN_GAP_MS = 0.005


def annotate_speed(rows: list[dict]) -> None:
    """Set ``speed_vs_float32`` (median ms / float32's median ms, same format) on each row."""
    reference = {r["format"]: r["latency"]["median_ms"] for r in rows if r["artifact"] == "float32"}
    for r in rows:
        base = reference.get(r["format"])
        if r["artifact"] == "float32" or not base:
            continue
        r["speed_vs_float32"] = round(r["latency"]["median_ms"] / base, 3)


def slower_lines(report: dict) -> list[str]:
    """One warning per artifact slower than float32 on this machine."""
    out = []
    for r in report.get("artifacts", []):
        ratio = r.get("speed_vs_float32")
        gap = r["latency"]["median_ms"] * (1 - 1 / ratio) if ratio else 0.0
        if ratio is not None and ratio > SLOWER and gap > MIN_GAP_MS:
            out.append(
                f"warning: {r['artifact']} ({r['format']}) is {ratio:.2f}x slower than float32 here "
                f"({r['latency']['median_ms']:.3f} ms vs {r['latency']['median_ms'] / ratio:.3f} ms): "
                "smaller, not faster; measure on the target before shipping it for speed"
            )
    return out
