"""Pass/fail gates for a device run: the CI contract of ``compressor-runtime validate`` and ``bench``.

Accuracy figures are fractions (0.01 = one percentage point), as in recipe gates. The accuracy
drop is measured against the reference recorded in the bundle: the float32 model's accuracy on
the host test set (``manifest.reference.accuracy``). Latency gates use p90, not the median: a
model that is fast on average but often slow still makes an app stutter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import UserError


@dataclass(frozen=True)
class Gates:
    min_accuracy: float | None = None
    max_accuracy_drop: float | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_accuracy", "max_accuracy_drop"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise UserError(f"--{name.replace('_', '-')} is a fraction in [0, 1] (0.01 = 1 point), got {value}")
        if self.max_latency_ms is not None and not self.max_latency_ms > 0:
            raise UserError(f"--max-latency-ms must be > 0, got {self.max_latency_ms}")

    @property
    def need_accuracy(self) -> bool:
        return self.min_accuracy is not None or self.max_accuracy_drop is not None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def failures(gates: Gates, accuracy: float | None, reference_accuracy: float | None, p90_ms: float | None) -> list[str]:
    """One line per failed gate; an empty list means every requested gate passed."""
    failed = []
    if gates.min_accuracy is not None and accuracy is not None and accuracy < gates.min_accuracy:
        failed.append(f"accuracy {accuracy:.2%} < min {gates.min_accuracy:.2%}")
    if gates.max_accuracy_drop is not None and accuracy is not None:
        if reference_accuracy is None:
            raise UserError("--max-accuracy-drop needs a reference accuracy: validate a bundle, not a bare model")
        drop = reference_accuracy - accuracy
        if drop > gates.max_accuracy_drop + 1e-9:  # float noise must not fail an exactly-met gate
            failed.append(
                f"accuracy drop {drop * 100:.2f} pt (from reference {reference_accuracy:.2%}) "
                f"> max {gates.max_accuracy_drop * 100:.2f} pt"
            )
    if gates.max_latency_ms is not None and p90_ms is not None and p90_ms > gates.max_latency_ms:
        failed.append(f"latency p90 {p90_ms:.3f} ms > max {gates.max_latency_ms:g} ms")
    return failed
