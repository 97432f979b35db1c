"""The Keras 3 model itself, run in a child process: its outputs (the bridge's check) or its export.

Keras 3 cannot be imported here (the shim set TF_USE_LEGACY_KERAS=1 before TensorFlow), so a
child with that variable unset loads the file with Keras 3's own loader, in safe mode unless the
user passed --trust-code (this process has already refused Lambda layers and foreign modules in
the config by then), and either writes its outputs on the given inputs (.npy in, .npy out, no
pickle) or writes ``model.export()`` to a folder, which post-training recipes convert when the
bridge cannot rebuild the model. The child is ``python -c`` with the script below, so nothing of
this package is imported there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from compressor.runtime.errors import UserError

TIMEOUT_S = 900.0  # TensorFlow's import alone takes ~7 s; a big model on a slow CPU takes minutes

_SCRIPT = r"""
import sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import keras
mode, path, safe, io = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
model = keras.saving.load_model(path, compile=False, safe_mode=safe)
if mode == "predict":
    x = np.load(io + "/inputs.npy", allow_pickle=False)
    y = model.predict(x, batch_size=256, verbose=0)
    np.save(io + "/outputs.npy", np.asarray(y, dtype=np.float32), allow_pickle=False)
else:
    model.export(io + "/export", format="tf_saved_model", verbose=False)
"""


def child_env() -> dict[str, str]:
    """This environment with Keras 3 selected: TF_USE_LEGACY_KERAS unset, TensorFlow quiet and
    oneDNN off as in this process (bit-stable float results)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update({"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1"})
    env["TF_ENABLE_ONEDNN_OPTS"] = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "0")
    return env


def keras3_outputs(path: Path, x: np.ndarray, trust_code: bool = False) -> np.ndarray:
    """The Keras 3 model's outputs on ``x`` (float32), computed by Keras 3 in a child process."""
    with tempfile.TemporaryDirectory(prefix="compressor-keras3-") as tmp:
        np.save(Path(tmp, "inputs.npy"), np.ascontiguousarray(x, dtype=np.float32), allow_pickle=False)
        _run("predict", path, trust_code, Path(tmp))
        return np.load(Path(tmp, "outputs.npy"), allow_pickle=False)


def keras3_export(path: Path, into: Path, trust_code: bool = False) -> Path:
    """``model.export()`` of the Keras 3 file, written by Keras 3 in a child under ``into``."""
    _run("export", path, trust_code, into)
    return into / "export"


def _run(mode: str, path: Path, trust_code: bool, io: Path) -> None:
    command = [sys.executable, "-c", _SCRIPT, mode, str(path), "0" if trust_code else "1", str(io)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=child_env(), check=False)
    except subprocess.TimeoutExpired:
        raise UserError(f"Keras 3 did not finish with {path} within {TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        last = lines[-1][:300] if lines else f"exit code {done.returncode}"
        if "No module named 'keras'" in last:
            raise UserError(f"{path} was saved by Keras 3, which checking it needs: pip install 'keras>=3'")
        raise UserError(f"Keras 3 cannot load {path}: {last}")
