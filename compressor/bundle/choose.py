"""Which TFLite artifact of a compress run a bundle ships.

Named with ``--artifact``: that one (its failed checks are stated). Otherwise among the artifacts
whose gates and export checks passed: with ``--max-latency-ms``, those whose median latency in the
run meets it come first (a faster-but-bigger model beats a smaller one too slow for the product),
and the smallest of them is shipped; when none meets it the fastest passing one is shipped and the
reason says by how much it misses. Without a latency limit: the smallest passing artifact.
"""

from __future__ import annotations

from compressor.runtime.errors import UserError


def tflite_row(report: dict, artifact: str) -> dict:
    """The report's TFLite row of ``artifact``; a one-line error listing the others when there is none."""
    rows = [r for r in report["artifacts"] if r["format"] == "tflite"]
    row = next((r for r in rows if r["artifact"] == artifact), None)
    if row is None:
        available = ", ".join(r["artifact"] for r in rows)
        raise UserError(f"no TFLite artifact named {artifact!r} in this run; available: {available}")
    return row


def choose_artifact(report: dict, artifact: str | None, max_latency_ms: float | None = None) -> tuple[dict, str]:
    """The TFLite row to ship and the reason, in words (see the module docstring)."""
    rows = [r for r in report["artifacts"] if r["format"] == "tflite"]
    if artifact is not None:
        row = tflite_row(report, artifact)
        problems = row["gates_failed"] + row["export_mismatches"]
        return row, "chosen with --artifact" + (f" (its checks FAILED: {'; '.join(problems)})" if problems else "")
    if max_latency_ms is not None and not max_latency_ms > 0:
        raise UserError(f"--max-latency-ms must be > 0, got {max_latency_ms}")
    passed = [r for r in rows if not r["gates_failed"] and not r["export_mismatches"]]
    if not passed:
        raise UserError(
            "no TFLite artifact of this run passed its gates; pick one with --artifact NAME "
            f"(available: {', '.join(r['artifact'] for r in rows)})"
        )
    if max_latency_ms is None:
        best = min(passed, key=lambda r: r["size_bytes"])
        return best, _reason("smallest TFLite whose gates passed", best, passed)
    fast = [r for r in passed if _ms(r) <= max_latency_ms]
    if fast:
        best = min(fast, key=lambda r: r["size_bytes"])
        return best, _reason(f"smallest TFLite whose gates passed within {max_latency_ms:g} ms", best, fast)
    best = min(passed, key=_ms)
    return best, (
        f"no passing TFLite meets --max-latency-ms {max_latency_ms:g}: shipping the fastest, "
        f"{_ms(best):.3f} ms median on the machine that ran compress ({best['size_bytes'] / 1024:.1f} KB)"
    )


def _ms(row: dict) -> float:
    return float(row["latency"]["median_ms"])


def _reason(what: str, best: dict, candidates: list[dict]) -> str:
    others = ", ".join(f"{r['artifact']} {r['size_bytes'] / 1024:.1f} KB" for r in candidates if r is not best)
    head = f"{what} ({best['size_bytes'] / 1024:.1f} KB, {_ms(best):.3f} ms"
    return head + (f"; also passed: {others})" if others else ")")
