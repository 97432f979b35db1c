"""The seeds every mutation starts from: real files made by the real commands, built once per session."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compressor.recipes.schema import PRESETS_DIR
from compressor.tuning.space_file import SPACES_DIR


@dataclass
class Seeds:
    bundle: bytes  # the zip made by `compressor package`
    entries: dict[str, bytes]  # its entries by name, manifest.json included
    tflite: dict[str, bytes]  # artifact name (int8, float32) -> .tflite bytes
    data_npz: bytes  # raw labelled digits (x_test, y_test) for `validate MODEL.tflite --data`
    recipes: dict[str, str] = field(default_factory=dict)  # preset name -> YAML text
    spaces: dict[str, str] = field(default_factory=dict)  # built-in space name -> YAML text

    @property
    def manifest(self) -> dict:
        return json.loads(self.entries["manifest.json"])

    def all_bytes(self) -> list[bytes]:
        """Every seed as bytes: material to splice into another."""
        texts = [t.encode() for t in (*self.recipes.values(), *self.spaces.values())]
        return [self.bundle, *self.entries.values(), *self.tflite.values(), *texts]


def build_seeds(tiny_model_path: str | None, workdir: Path, run_dir: Path | None = None) -> Seeds:
    """Compress the tiny model with the int8 recipe (unless ``run_dir`` is such a run already), package the
    run, read everything back."""
    from compressor.bundle.package import package
    from compressor.datasets import load_dataset

    if run_dir is None:
        from compressor.pipeline.compress import compress

        run_dir = workdir / "run"
        compress(tiny_model_path, ["int8"], run_dir, latency_runs=5)
    report = json.loads((run_dir / "report.json").read_text())
    built = package(run_dir, workdir / "bundle.zip")
    bundle = Path(built["bundle"]).read_bytes()
    with zipfile.ZipFile(Path(built["bundle"])) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    tflite = {
        row["artifact"]: Path(row["path"]).read_bytes()
        for row in report["artifacts"]
        if row["format"] == "tflite" and row["artifact"] in ("int8", "float32")
    }
    data = load_dataset("digits", seed=0)
    npz = workdir / "data.npz"
    np.savez(npz, x_test=data.raw_test[:32], y_test=data.y_test[:32])
    return Seeds(
        bundle=bundle,
        entries=entries,
        tflite=tflite,
        data_npz=npz.read_bytes(),
        recipes={p.stem: p.read_text() for p in sorted(PRESETS_DIR.glob("*.yaml"))},
        spaces={p.stem: p.read_text() for p in sorted(SPACES_DIR.glob("*.yaml"))},
    )
