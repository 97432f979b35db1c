"""Pass/fail gates: the one check behind recipe gates (host report) and device gates (CI contract).

The same ``Gates`` judges a row of the host report (``compressor compress``: recipe-file gates,
see recipes/schema.Gates.to_runtime) and a device run (``compressor-runtime validate`` and
``bench``: command-line gates). Accuracy figures are fractions (0.01 = one percentage point). The
accuracy drop is measured against a reference accuracy: the float32 model's on the same test set
(on the host, the report's float32 row; on the device, ``manifest.reference.accuracy``). Latency
gates use p90, not the median: a model that is fast on average but often slow still makes an
app stutter. Size gates use the file size in KB (1024 bytes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import UserError

DROP_TOLERANCE = 1e-9  # float noise must not fail an exactly-met accuracy-drop gate


@dataclass(frozen=True)
class Failure:
    """One failed gate: the measured figure and the limit it broke (both in the gate's unit)."""

    gate: str  # the Gates field that failed
    measured: float
    limit: float
    reference: float | None = None  # for max_accuracy_drop: the accuracy the drop is measured from

    def __str__(self) -> str:
        """The device report's wording (compressor-runtime): units and reference spelled out."""
        if self.gate == "min_accuracy":
            return f"accuracy {self.measured:.2%} < min {self.limit:.2%}"
        if self.gate == "max_accuracy_drop":
            return (
                f"accuracy drop {self.measured * 100:.2f} pt (from reference {self.reference:.2%}) "
                f"> max {self.limit * 100:.2f} pt"
            )
        if self.gate == "max_size_kb":
            return f"size {self.measured:.1f} KB > max {self.limit:g} KB"
        return f"latency p90 {self.measured:.3f} ms > max {self.limit:g} ms"

    def brief(self) -> str:
        """The host report's wording: one row per artifact next to its float32 reference row."""
        if self.gate == "min_accuracy":
            return f"accuracy {self.measured:.2%} < {self.limit:.2%}"
        if self.gate == "max_accuracy_drop":
            return f"accuracy drop {self.measured:.2%} > {self.limit:.2%}"
        if self.gate == "max_size_kb":
            return f"size {self.measured:.1f} KB > {self.limit} KB"
        return f"latency p90 {self.measured:.3f} ms > {self.limit:g} ms"


@dataclass(frozen=True)
class Gates:
    """The limits to check; None leaves a figure unchecked."""

    min_accuracy: float | None = None
    max_accuracy_drop: float | None = None
    max_latency_ms: float | None = None
    max_size_kb: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_accuracy", "max_accuracy_drop"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise UserError(f"--{name.replace('_', '-')} is a fraction in [0, 1] (0.01 = 1 point), got {value}")
        for name in ("max_latency_ms", "max_size_kb"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UserError(f"--{name.replace('_', '-')} must be > 0, got {value}")

    @property
    def need_accuracy(self) -> bool:
        return self.min_accuracy is not None or self.max_accuracy_drop is not None

    def accuracy_only(self) -> Gates:
        """The accuracy gates alone (e.g. to judge a candidate before its size and latency exist)."""
        return Gates(min_accuracy=self.min_accuracy, max_accuracy_drop=self.max_accuracy_drop)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def check(
        self,
        accuracy: float | None = None,
        reference_accuracy: float | None = None,
        p90_ms: float | None = None,
        size_bytes: int | None = None,
    ) -> list[Failure]:
        """Every failed gate; an empty list means every requested gate passed.

        A figure that was not measured (None) passes its gate; an accuracy-drop gate without a
        reference accuracy is an error (the drop cannot be known).
        """
        failed = []
        if self.min_accuracy is not None and accuracy is not None and accuracy < self.min_accuracy:
            failed.append(Failure("min_accuracy", accuracy, self.min_accuracy))
        if self.max_accuracy_drop is not None and accuracy is not None:
            if reference_accuracy is None:
                raise UserError("--max-accuracy-drop needs a reference accuracy: validate a bundle, not a bare model")
            drop = reference_accuracy - accuracy
            if drop > self.max_accuracy_drop + DROP_TOLERANCE:
                failed.append(Failure("max_accuracy_drop", drop, self.max_accuracy_drop, reference_accuracy))
        if self.max_size_kb is not None and size_bytes is not None and size_bytes / 1024 > self.max_size_kb:
            failed.append(Failure("max_size_kb", size_bytes / 1024, self.max_size_kb))
        if self.max_latency_ms is not None and p90_ms is not None and p90_ms > self.max_latency_ms:
            failed.append(Failure("max_latency_ms", p90_ms, self.max_latency_ms))
        return failed
