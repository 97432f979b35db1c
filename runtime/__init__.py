"""Device-side runtime: run .tflite/.onnx artifacts, measure accuracy and latency, verify bundles.

Runs on a device with numpy + ai-edge-litert (or tflite-runtime) and, optionally, onnxruntime.
It NEVER imports tensorflow, tf_keras or tensorflow_model_optimization. Modules here use
relative imports only, so the same files work as ``compressor.runtime`` (inside the full
toolchain) and as the stand-alone device distribution.
"""

import os as _os

# The one place the runtime's version is written: runtime/pyproject.toml reads it, bundles name it
# as the least version that reads them (manifest min_runtime).
__version__ = "0.2.0"

# ONNX Runtime (1.32) writes a telemetry device id and database under ~/.cache/Microsoft when a
# session starts, even with telemetry events disabled; we write nothing outside the output folder.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
