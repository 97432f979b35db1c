"""Per-tensor int8 quantization error from TensorFlow Lite's quantization debugger.

The debugger (``tf.lite.experimental.QuantizationDebugger``) calibrates the model once, then
builds a debug model where every quantized op is followed by a NumericVerify op that runs the
float op on the same (dequantized) input and records the difference. Per tensor we report the
RMSE and RMSE / scale: pure rounding noise is uniform on [-scale/2, scale/2], so a healthy
tensor sits near 1/sqrt(12) = 0.29; values far above mean the int8 grid cannot represent that
layer (outlier weights or activations). The same calibrated model is re-quantized with chosen
nodes left in float ("denylisted") for selective quantization, without calibrating again.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from compressor.runtime.atomic import write_json, write_text
from compressor.runtime.errors import UserError
from compressor.runtime.quiet import native_stderr_silenced

ROUNDING_NOISE = 1 / math.sqrt(12)  # RMSE / scale of ideal rounding


class QuantDebugger:
    """One calibrated int8 model of ``model`` plus its debugger; ``statistics`` runs it once."""

    def __init__(self, model: Any, sample: np.ndarray, io_dtype: str = "int8", activation_ranges: str = "minmax"):
        from compressor.export.tflite import make_converter
        from compressor.keras_shim import tf

        # The debugger instruments a float-I/O model; int8 I/O is applied when re-quantizing.
        converter = make_converter(model, "int8", sample, "float32")
        self._sample, self.io_dtype, self._tf = sample, io_dtype, tf
        try:
            with native_stderr_silenced(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=converter, debug_dataset=lambda: ([row[None, ...]] for row in sample)
                )
        except Exception as e:
            from compressor.export.tflite import conversion_error

            raise UserError(f"quantization debugger (int8) failed: {conversion_error(str(e))}") from None
        self.nodes = node_names(self._debugger.calibrated_model)
        self._stats: list[dict] | None = None
        self.ranges: dict | None = None
        if activation_ranges != "minmax":  # ranges chosen on the same sample replace the calibrated min/max
            from compressor.export.ranges import with_ranges

            calibrated, self.ranges = with_ranges(self._debugger.calibrated_model, sample, activation_ranges)
            self._debugger.calibrated_model = calibrated
            with native_stderr_silenced(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._debugger.options = self._debugger.options  # rebuilds the debug model on the new ranges

    @classmethod
    def for_recipe(cls, model: Any, data: Any, recipe: Any, steps_dir: Path, trust_code: bool = False) -> QuantDebugger:
        """Debug what the recipe's int8 step converted, calibrated exactly as that step was."""
        params = recipe.steps[-1].params
        source = conversion_input(model, recipe, steps_dir, trust_code)
        return cls(source, params.calibration(data), params.io_dtype, params.activation_ranges)

    def statistics(self) -> list[dict]:
        """One row per quantized tensor, worst RMSE/scale first."""
        if self._stats is None:
            with native_stderr_silenced(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._debugger.run()
            dump = io.StringIO()
            self._debugger.layer_statistics_dump(dump)
            self._stats = sorted(
                (self._row(r) for r in csv.DictReader(io.StringIO(dump.getvalue()))),
                key=lambda r: -r["rmse_over_scale"],
            )
        return self._stats

    def _row(self, r: dict) -> dict:
        scale, mse = float(r["scale"]), float(r["mean_squared_error"])
        rmse = math.sqrt(max(mse, 0.0))
        node = r["tensor_name"] if r["tensor_name"] in self.nodes else None
        return {
            "layer": layer_label(r["tensor_name"], r["op_name"]),
            "op": r["op_name"],
            "tensor": r["tensor_name"],
            "rmse": rmse,
            "rmse_over_scale": rmse / scale if scale > 0 else float("inf"),
            "scale": scale,
            "zero_point": int(float(r["zero_point"])),
            "max_abs_error": float(r["max_abs_error"]),
            "mean_error": float(r["mean_error"]),
            "stddev": float(r["stddev"]),
            "num_elements": int(float(r["num_elements"])),
            "node": node,
        }

    def quantized_model(self, float_nodes: list[str] = ()) -> bytes:
        """The int8 model (the step's io_dtype) with ``float_nodes`` (op output names) kept in float."""
        options = self._tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=list(float_nodes) or None, fully_quantize=self.io_dtype == "int8"
        )
        with native_stderr_silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._debugger.options = options  # re-quantizes the calibrated model; no new calibration
            return self._debugger.get_nondebug_quantized_model()


def conversion_input(model: Any, recipe: Any, steps_dir: Path, trust_code: bool = False) -> Any:
    """The model the recipe's conversion step received: the original, or the last training step's output
    (reloaded in safe mode unless the user vouched for the input model's code with ``trust_code``)."""
    if len(recipe.steps) == 1:
        return model
    from compressor.pipeline.layout import step_dir
    from compressor.recipes.stepio import load_step_model

    i = len(recipe.steps) - 2
    workdir = step_dir(steps_dir, i, recipe.steps[i].type)
    return dataclasses.replace(model, keras=load_step_model(workdir, trust_code), saved_model_dir=None)


def node_names(calibrated: bytes) -> list[str]:
    """Output tensor names of the calibrated model's ops: what denylisted_nodes matches."""
    from compressor.inspection.tflite import TFLiteFile

    f = TFLiteFile(calibrated, "calibrated model")
    return [f.tensors[outs[0]]["name"] for _, _, outs in f.ops if outs]


def layer_label(tensor: str, op: str) -> str:
    """'model/dense1/MatMul;model/dense1/Relu' -> 'dense1': the Keras layers fused into this op."""
    layers: list[str] = []
    for piece in tensor.split(";"):
        parts = piece.split("/")
        if len(parts) >= 3 and parts[1] not in layers:
            layers.append(parts[1])
    # The converter lists the fused activation first; the kernel layer reads better in front.
    return "+".join(reversed(layers)) if layers else f"{op} ({tensor})"


def write_report(stats: list[dict], folder: Path, top: int = 5) -> dict:
    """quant_debug.json and .csv in ``folder``; returns the summary the report embeds."""
    write_json(folder / "quant_debug.json", {"rounding_noise_rmse_over_scale": ROUNDING_NOISE, "tensors": stats})
    fields = [
        "layer",
        "op",
        "rmse",
        "rmse_over_scale",
        "scale",
        "zero_point",
        "max_abs_error",
        "mean_error",
        "stddev",
        "num_elements",
        "tensor",
    ]
    text = io.StringIO()
    writer = csv.DictWriter(text, fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(stats)
    write_text(folder / "quant_debug.csv", text.getvalue())
    worst = [{k: r[k] for k in ("layer", "op", "rmse", "rmse_over_scale", "scale")} for r in stats[:top]]
    return {"tensors": len(stats), "worst": worst, "files": ["quant_debug.json", "quant_debug.csv"]}
