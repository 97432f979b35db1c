"""What the benchmark sections share: the work folder, quick mode, the models and compress runs so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Context:
    work: Path
    quick: bool
    bench: dict
    models: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)  # (model, recipe) -> compress job figures
