"""Open a .tflite or .onnx artifact and run it: one ``Runner`` interface over LiteRT and ONNX Runtime.

TFLite runs on ``ai_edge_litert``, else on ``tflite_runtime`` (last release 2.14: no numpy 2, no
Python >= 3.12, but some older boards ship it). onnxruntime is optional, imported for .onnx only.
Files are checked before their bytes reach native code: mistakes end in a one-line ``UserError``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError
from .quiet import is_verbose, native_stderr_silenced
from .safe_load import parse_json
from .sandbox import trial_run
from .tflite_check import check_tflite_file


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output. ``shape`` uses -1 for dynamic dims; scale 0.0 means not quantized."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name
    scale: float
    zero_point: int

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}


def open_model(path: str | Path, threads: int = 1, xnnpack: bool = True) -> Runner:
    """Load a .tflite/.onnx file on ``threads`` CPU threads; ``xnnpack=False``: TFLite builtin kernels only."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"model file {path} does not exist")
    if path.is_dir():
        raise UserError(f"{path} is a directory (a SavedModel?); pass a .tflite or .onnx file")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return _TFLiteRunner(path, threads, xnnpack)
    if suffix == ".onnx":
        return _OnnxRunner(path, threads)
    raise UserError(f"{path} is not a .tflite or .onnx file")


class Runner:
    """A loaded model; backends subclass it and fill ``_load``, ``_invoke``, ``_bind``, ``invoke_only``.

    ``run`` takes a batch already in the input dtype and returns the first output raw. Models with
    a fixed batch dim (``batchable`` False) run in chunks of that size, the last one zero-padded.
    """

    backend: str  # "litert" | "tflite_runtime" | "onnxruntime"
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    batchable: bool
    invoke_only: Callable[[], None]  # run the model on the input last set (what latency times)
    _fixed_batch: int  # batch size the model was built with (1 when dynamic)
    _load: Callable[[], None]  # open the file; set inputs, outputs, batchable, _fixed_batch
    _bind: Callable[[np.ndarray], None]  # set this batch as the input, without invoking
    _invoke: Callable[[np.ndarray], np.ndarray]  # run exactly this batch, return the first output

    def __init__(self, path: Path, threads: int):
        self.path, self.threads = path, threads
        start = time.perf_counter_ns()
        with native_stderr_silenced():  # LiteRT's XNNPACK delegate announces itself on fd 2
            self._load()
        self.init_ms = (time.perf_counter_ns() - start) / 1e6  # load + allocate

    def run(self, x: np.ndarray) -> np.ndarray:
        x = self._checked(x)
        if self.batchable:
            try:
                y = self._invoke(x)
                # A Reshape to a literal batch of 1 can fail here, or worse, silently fold the
                # batch into another dim: only one output row per sample proves batching works.
                if len(y) == len(x):
                    return y
            except Exception:  # any failure: a real fault resurfaces in the one-by-one run below
                pass
            self.batchable = False
        b = self._fixed_batch
        return np.concatenate([self._invoke(_pad(x[i : i + b], b))[: len(x[i : i + b])] for i in range(0, len(x), b)])

    def set_batch(self, x: np.ndarray) -> None:
        """Set the input without invoking, so latency can time ``invoke_only`` alone."""
        x = self._checked(x)
        self._bind(x if self.batchable else _pad(x, self._fixed_batch))

    def _checked(self, x: np.ndarray) -> np.ndarray:
        info, x = self.inputs[0], np.asarray(x)
        want, got = info.shape[1:], x.shape[1:]
        if x.ndim != len(info.shape) or any(w not in (-1, g) for w, g in zip(want, got)):
            raise UserError(
                f"data shape {got} does not match the model input {want}; "
                f"pass a batch shaped (N, {', '.join(map(str, want))}) (-1 = any size)"
            )
        if x.dtype != np.dtype(info.dtype):
            raise TypeError(
                f"run() takes data in the input dtype {info.dtype}, got {x.dtype}; "
                "convert it with quantization.quantize_input first"
            )
        if len(x) == 0:
            raise UserError("no samples to run")
        return np.ascontiguousarray(x)


def _pad(x: np.ndarray, batch: int) -> np.ndarray:
    """Cut or zero-pad ``x`` to ``batch`` samples, for models whose batch dim is fixed."""
    x = x[:batch]
    missing = batch - len(x)
    return np.concatenate([x, np.zeros((missing, *x.shape[1:]), x.dtype)]) if missing else x


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__


def _refuse_blockwise_int4(model, path: Path) -> None:
    """Blockwise int4 weights (ai-edge-quantizer's aeq_int4: an INT4 kernel with no per-channel scales,
    its block scales in a separate tensor) are computed correctly only by XNNPACK. ai-edge-litert
    2.3's builtin kernels run them without an error and return wrong outputs (digits_cnn: 83% with
    the optimized kernels, 10% with the reference ones, 98.3% with XNNPACK), so they are refused."""
    for graph in model.subgraphs:
        for t in graph.tensors:
            if t.type_name == "INT4" and not t.scales:
                raise UserError(
                    f"{path.name} has blockwise int4 weights ({t.name}), which LiteRT computes correctly "
                    "only with XNNPACK; drop --no-xnnpack"
                )


class _TFLiteRunner(Runner):
    def __init__(self, path: Path, threads: int, xnnpack: bool):
        model = check_tflite_file(path)  # LiteRT's C++ trusts the file: structural faults are refused first
        if not xnnpack:
            _refuse_blockwise_int4(model, path)
        trial_run(path, threads, xnnpack)  # what no check can rule out crashes a child, not us
        self._xnnpack = xnnpack
        super().__init__(path, threads)

    def _load(self) -> None:
        api, self.backend = _tflite_api()
        resolvers = api.OpResolverType
        resolver = resolvers.AUTO if self._xnnpack else resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self._interp = api.Interpreter(
                model_path=str(self.path), num_threads=self.threads, experimental_op_resolver_type=resolver
            )
        except (ValueError, RuntimeError) as e:
            raise UserError(f"{self.path} is corrupt or truncated: {_first_line(e)}") from e
        try:
            self._interp.allocate_tensors()
        except RuntimeError as e:
            raise UserError(f"{self.path} cannot be prepared by {self.backend}: {_first_line(e)}") from e
        ins, outs = self._interp.get_input_details(), self._interp.get_output_details()
        self.inputs, self.outputs = [_tflite_info(d) for d in ins], [_tflite_info(d) for d in outs]
        self._in_index, self._out_index = ins[0]["index"], outs[0]["index"]
        self._sample_shape = list(ins[0]["shape"][1:])
        self._batch = self._fixed_batch = int(ins[0]["shape"][0])  # _batch: the one allocated now
        self.batchable = self.inputs[0].shape[0] in (1, -1)

    def invoke_only(self) -> None:
        with native_stderr_silenced(), self._model_errors("run"):  # lazy kernel setup may still log here
            self._interp.invoke()
        self.invoke_only = self._interp.invoke  # later calls (the timed ones) go straight to LiteRT

    @contextmanager
    def _model_errors(self, doing: str) -> Iterator[None]:
        """A kernel that refuses the model's tensors (a crafted or damaged file) is the file's fault."""
        try:
            yield
        except (RuntimeError, ValueError) as e:  # LiteRT raises both ("Tensor data is null" is a ValueError)
            raise UserError(f"{self.path} cannot be {doing} by {self.backend}: {_first_line(e)}") from None

    def _bind(self, x: np.ndarray) -> None:
        if len(x) != self._batch:
            self._batch = -1  # unknown until allocation succeeds
            with self._model_errors("prepared for a batch"):
                self._interp.resize_tensor_input(self._in_index, [len(x), *self._sample_shape], strict=False)
                self._interp.allocate_tensors()
            self._batch = len(x)
        with self._model_errors("given its input"):
            self._interp.set_tensor(self._in_index, x)

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        self._bind(x)
        with self._model_errors("run"):
            self.invoke_only()
            return self._interp.get_tensor(self._out_index)


def _tflite_api() -> tuple[Any, str]:
    for module, backend in (("ai_edge_litert.interpreter", "litert"), ("tflite_runtime.interpreter", "tflite_runtime")):
        try:
            return importlib.import_module(module), backend
        except ImportError:
            continue
    raise UserError("no TFLite interpreter installed; pip install ai-edge-litert")


def _tflite_info(d: dict) -> TensorInfo:
    scale, zero_point = d["quantization"]
    shape = tuple(int(s) for s in d.get("shape_signature", d["shape"]))
    return TensorInfo(d["name"], shape, np.dtype(d["dtype"]).name, float(scale), int(zero_point))


class _OnnxRunner(Runner):
    backend = "onnxruntime"

    def _load(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError(
                f"{self.path} is an ONNX model but onnxruntime is missing; pip install onnxruntime"
            ) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = self.threads, 1
        options.log_severity_level = 0 if is_verbose() else 3
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's error types share no base class below Exception
            raise UserError(f"{self.path} is not a valid ONNX model: {_first_line(e)}") from e
        meta = self._session.get_modelmeta().custom_metadata_map
        self.inputs = [_onnx_info(a, meta.get("compressor.input_quantization")) for a in self._session.get_inputs()]
        self.outputs = [_onnx_info(a, meta.get("compressor.output_quantization")) for a in self._session.get_outputs()]
        batch_dim = self.inputs[0].shape[0]
        self.batchable, self._fixed_batch = batch_dim == -1, max(batch_dim, 1)

    def invoke_only(self) -> None:
        self._session.run_with_iobinding(self._binding)

    def _bind(self, x: np.ndarray) -> None:
        # IOBinding keeps the feed copy out of invoke_only, as set_tensor does for TFLite.
        self._binding = self._session.io_binding()
        self._binding.bind_cpu_input(self.inputs[0].name, x)
        self._binding.bind_output(self.outputs[0].name)

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        return self._session.run([self.outputs[0].name], {self.inputs[0].name: x})[0]


def _onnx_info(arg: Any, quantization: str | None) -> TensorInfo:
    # Symbolic dims come back as strings ("unk__13", "batch") or None.
    shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape)
    element = arg.type.removeprefix("tensor(").removesuffix(")")
    dtype = {"float": "float32", "double": "float64"}.get(element, element)
    # ONNX tensors carry no scale/zero point (they sit on the QDQ nodes); our exporter records
    # them in the model metadata so integer inputs can be quantized without the onnx package.
    q = (
        parse_json(quantization, f"quantization metadata of {arg.name}")
        if quantization and dtype in ("int8", "uint8", "int16")
        else {}
    )
    return TensorInfo(arg.name, shape, dtype, float(q.get("scale", 0.0)), int(q.get("zero_point", 0)))
