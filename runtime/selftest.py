"""The bundle self-test: do this device's preprocessing and interpreter reproduce the host's outputs?

The packager stores a few RAW test inputs, the host's preprocessed inputs and the artifact's own
dequantized outputs on the host. Here the raw inputs go through the manifest's preprocessing and
the model again; both steps must match within tolerances (the model's from the manifest: about
one quantization step for integer outputs, since ARM and x86 kernels may round differently).
"""

from __future__ import annotations

import numpy as np

from .accuracy import agreement, predict
from .bundle import Bundle
from .errors import UserError
from .image_fit import refit_check
from .interpreters import Runner
from .preprocess import apply, check_raw

# Same float32 formula on both sides: anything beyond rounding noise is a preprocessing bug.
PREPROCESSING_ATOL = 1e-6


def run_self_test(bundle: Bundle, model: dict, runner: Runner, batch_size: int = 256) -> dict:
    manifest, names = bundle.manifest, bundle.manifest["samples"]
    arrays = bundle.samples()
    wanted = (names["raw"], names["inputs"], names["labels"], model["self_test"]["expected"])
    missing = [k for k in wanted if k not in arrays]
    if missing:
        raise UserError(f"self-test samples in {bundle.path.name} lack the array {missing[0]!r} named in manifest.json")
    raw, host_x, labels, expected = (arrays[k] for k in wanted)
    check_raw(raw, manifest["raw_input"], manifest["preprocessing"], name="self-test raw inputs")
    x = apply(manifest["preprocessing"], raw)
    if x.shape != host_x.shape:
        raise UserError(f"self-test inputs have shape {host_x.shape} but preprocessing gives {x.shape}")
    prep_diff = float(np.abs(x - host_x).max())
    outputs = predict(runner, x, batch_size)
    figures = agreement(outputs, np.asarray(expected, dtype=np.float32).reshape(len(raw), -1))
    # The manifest is not authenticated: its tolerance may not exceed one quantization step of the
    # output scale the interpreter itself reports (1e-2 for float outputs).
    atol = min(float(model["self_test"]["atol"]), max(1e-2, 1.01 * runner.outputs[0].scale))
    failures = []
    if prep_diff > PREPROCESSING_ATOL:
        failures.append(f"preprocessing differs from the host's by {prep_diff:.3g} > {PREPROCESSING_ATOL:g}")
    if figures["max_abs_diff"] > atol:
        failures.append(f"outputs differ from the host's by {figures['max_abs_diff']:.3g} > {atol:.3g}")
    # Image bundles: the original files, fitted on this device, must give the host's raw samples.
    images = refit_check(manifest["preprocessing"].get("image"), names.get("images") or [], arrays, raw)
    failures += images.get("failures", [])
    return {
        "samples": int(len(raw)),
        "preprocessing_max_abs_diff": prep_diff,
        **figures,
        "atol": atol,
        "top1_vs_labels": float(np.mean(outputs.argmax(1) == labels)),
        **({"image_fit": images} if images else {}),
        "failures": failures,
        "passed": not failures,
    }
