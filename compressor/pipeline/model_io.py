"""Load the user's trained model safely, whatever form it comes in.

Accepted: a tf_keras SavedModel folder (has keras_metadata.pb), a .keras or .h5 file saved by
tf_keras, a plain SavedModel without Keras metadata (post-training recipes only), and Keras 3
files: a .keras or .h5 saved by Keras 3 is rebuilt in tf_keras by the bridge (keras3_bridge.py;
checked against Keras 3's own outputs before any step), or, when the bridge cannot translate a
layer, exported by Keras 3 in a child process for post-training recipes; a Keras 3
``model.export()`` SavedModel is converted as it is (it holds no layer config to train).
Lambda layers carry Python bytecode; they are refused unless the user passes ``trust_code``
(model_safety.py parses the saved config for them before Keras reads it).
"""

from __future__ import annotations

import dataclasses
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compressor.pipeline.keras3_files import is_keras3_export, is_keras3_file
from compressor.pipeline.layout import MODEL_CARD, TrainLayout, mark_output
from compressor.pipeline.model_safety import h5_attribute, refuse_untrusted_code
from compressor.runtime.errors import UserError
from compressor.runtime.safe_load import load_json_file

# Written next to a model by `compressor train`: dataset, preprocessing and labels it was trained with.


@dataclass
class LoadedModel:
    """A model ready for the recipe steps and exporters.

    ``keras`` is None for a plain SavedModel: such a model can be converted but not trained.
    """

    path: Path
    kind: str  # "keras-savedmodel" | "keras-v3" | "h5" | "savedmodel" | "keras3-keras" | "keras3-h5" | "keras3-export"
    keras: Any | None
    input_shape: tuple[int | None, ...]
    output_shape: tuple[int | None, ...]
    card: dict = field(default_factory=dict)
    saved_model_dir: Path | None = None
    bridge: dict | None = None  # a Keras 3 file rebuilt in tf_keras: keras3_bridge's record (and its check)
    untrainable: str | None = None  # why training recipes cannot run on it, when they cannot

    @property
    def trainable(self) -> bool:
        return self.keras is not None


def resolve_model_path(path: str | Path) -> Path:
    """The model a path stands for: a `compressor train` output folder (``model/`` next to the
    card) stands for its ``model/``; any other path for itself."""
    path = Path(path)
    run = TrainLayout(path)
    if path.is_dir() and not (path / "saved_model.pb").is_file() and run.card.is_file() and run.model.exists():
        return run.model
    return path


def detect_kind(path: Path) -> str:
    """Tell what kind of model ``path`` is without importing TensorFlow."""
    path = resolve_model_path(path)
    if not path.exists():
        raise UserError(f"model path {path} does not exist")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise UserError(
                f"{path} is a folder but not a SavedModel (no saved_model.pb); "
                "pass a SavedModel folder, a .keras or a .h5 file"
            )
        if (path / "keras_metadata.pb").is_file():
            return "keras-savedmodel"
        return "keras3-export" if is_keras3_export(path) else "savedmodel"
    suffix = path.suffix.lower()
    if suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise UserError(f"{path} is not a valid .keras file (not a zip archive); is it corrupt?")
        return "keras3-keras" if is_keras3_file(path) else "keras-v3"
    if suffix in (".h5", ".hdf5"):
        with open(path, "rb") as f:
            if f.read(8) != b"\x89HDF\r\n\x1a\n":
                raise UserError(f"{path} is not a valid HDF5 file; is it corrupt?")
        h5_attribute(path, "model_config")  # opening it checks the superblock and the file's length
        return "keras3-h5" if is_keras3_file(path) else "h5"
    raise UserError(f"{path} is not a model: expected a SavedModel folder, a .keras or a .h5 file")


def read_card(path: Path) -> dict:
    """The training card next to a model from `compressor train`, or {} for foreign models."""
    path = resolve_model_path(path)
    for candidate in (path.parent / MODEL_CARD, path / MODEL_CARD):
        if candidate.is_file():
            return load_json_file(candidate, "model card")
    return {}


def write_trained_model(
    out: Path,
    model: Any,
    *,
    name: str,
    params: dict,
    data: str,
    dataset: Any,
    training: dict,
    test_accuracy: float,
    history: dict,
    overwrite: bool = False,
) -> dict:
    """Save a trained reference architecture as `compressor train` lays it out; returns its card.

    ``out/model`` (SavedModel), ``out/compressor-model.json`` (the card: architecture, data set
    spec, preprocessing, labels, training settings, test accuracy) and ``out/history.json``,
    written atomically. ``data`` is the data set spec as given (``digits``, a path...).
    """
    from compressor.runtime.atomic import output_dir, write_json
    from compressor.runtime.quiet import native_stderr_silenced

    card = {
        "schema": "compressor.model-card/1",
        "model": name,
        "model_params": params,
        "parameters": int(model.count_params()),
        "data": data,
        "dataset": dataset.summary(),
        "labels": list(dataset.labels),
        "preprocessing": dataset.preprocessing.to_dict(),
        "training": training,
        "test_accuracy": float(test_accuracy),
    }
    with output_dir(Path(out), overwrite=overwrite) as tmp:
        run = TrainLayout(tmp)
        with native_stderr_silenced():
            model.save(run.model, save_format="tf")
        write_json(run.card, card)
        write_json(run.history, history)
        mark_output(tmp, "train")  # inside the folder before its rename: --overwrite may replace it later
    return card


def load_model(path: str | Path, trust_code: bool = False) -> LoadedModel:
    """Load a model file or folder, or the ``model/`` of a `compressor train` output folder."""
    path = resolve_model_path(path)
    kind = detect_kind(path)
    from compressor.keras_shim import keras, tf
    from compressor.runtime.quiet import native_stderr_silenced

    with native_stderr_silenced():
        if kind in ("savedmodel", "keras3-export"):
            loaded = _load_plain_savedmodel(path, tf)
            return dataclasses.replace(loaded, kind=kind, untrainable=_export_untrainable(path, kind))
        if kind.startswith("keras3-"):
            return _load_keras3(path, kind, trust_code)
        model = _load_keras(path, kind, keras, trust_code)
    return LoadedModel(
        path=path,
        kind=kind,
        keras=model,
        input_shape=tuple(model.input_shape[1:]),
        output_shape=tuple(model.output_shape[1:]),
        card=read_card(path),
        saved_model_dir=path if kind == "keras-savedmodel" else None,
    )


def _load_keras(path: Path, kind: str, keras: Any, trust_code: bool) -> Any:
    from compressor.keras_shim import safe_mode_scope

    refuse_untrusted_code(path, trust_code)
    try:
        # SafeModeScope also covers SavedModel/H5 configs, where Lambda bytecode would otherwise run.
        with safe_mode_scope(not trust_code):
            model = keras.models.load_model(path, compile=False, safe_mode=not trust_code)
    except ValueError as e:
        if "Lambda" in str(e) or "lambda" in str(e):
            raise UserError(
                f"{path} contains a Lambda layer (arbitrary Python code); loading it is refused. "
                "If you trust this file, pass --trust-code"
            ) from None
        raise UserError(f"cannot load {path}: {_first_line(e)}") from None
    except Exception as e:  # corrupt files surface as many exception types
        raise UserError(
            f"cannot load {path}: a corrupt model, or not saved by tf_keras ({_first_line(e)}); "
            "re-save it with tf_keras or use the original file"
        ) from None
    if not isinstance(model, keras.Model):
        raise UserError(f"{path} did not load as a Keras model")
    _check_single_io(path, model)
    return model


def _check_single_io(path: Path, model: Any) -> None:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(
            f"{path} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "compressor handles single-input, single-output classifiers"
        )


def _export_untrainable(path: Path, kind: str) -> str:
    if kind == "keras3-export":
        return (
            f"{path} is a Keras 3 model.export() SavedModel, which holds no layer config to train; pass the "
            "Keras 3 .keras file it was exported from (the Keras 3 bridge rebuilds it in tf_keras) or use a "
            "post-training recipe"
        )
    return (
        f"{path} is a plain SavedModel without Keras metadata, which cannot be trained; "
        "use a tf_keras model or a post-training recipe"
    )


def _load_keras3(path: Path, kind: str, trust_code: bool) -> LoadedModel:
    """The bridge's tf_keras rebuild; when it cannot translate a layer, Keras 3's own export (in a
    child) for post-training recipes, with the bridge's one-line error kept for training recipes."""
    from compressor.keras_shim import tf
    from compressor.pipeline.keras3_bridge import rebuild
    from compressor.pipeline.keras3_layers import BridgeError

    refuse_untrusted_code(path, trust_code)
    try:
        model, record = rebuild(path)
    except BridgeError as e:
        exported = _keras3_exported(path, trust_code, e)
        loaded = _load_plain_savedmodel(exported, tf)
        return dataclasses.replace(loaded, path=path, kind=kind, card=read_card(path), untrainable=str(e))
    _check_single_io(path, model)
    shapes = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    return LoadedModel(path, kind, model, *shapes, card=read_card(path), bridge=record)


def _keras3_exported(path: Path, trust_code: bool, why: Exception) -> Path:
    """Keras 3's model.export() of ``path`` in a folder removed when this process exits."""
    import atexit
    import shutil
    import tempfile

    from compressor.pipeline.keras3_reference import keras3_export

    tmp = Path(tempfile.mkdtemp(prefix="compressor-keras3-export-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    try:
        return keras3_export(path, tmp, trust_code)
    except UserError:
        raise why from None  # Keras 3 cannot run it either: the bridge's error says more


def _load_plain_savedmodel(path: Path, tf: Any) -> LoadedModel:
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:
        raise UserError(f"cannot load SavedModel {path}: {_first_line(e)}") from None
    fn = loaded.signatures.get("serving_default")
    if fn is None:
        raise UserError(f"SavedModel {path} has no 'serving_default' signature; re-export it with one")
    (spec,) = fn.structured_input_signature[1].values() if len(fn.structured_input_signature[1]) == 1 else (None,)
    outputs = list(fn.structured_outputs.values())
    if spec is None or len(outputs) != 1:
        raise UserError(f"SavedModel {path} must have one input and one output in 'serving_default'")
    return LoadedModel(
        path=path,
        kind="savedmodel",
        keras=None,
        input_shape=tuple(spec.shape[1:]),
        output_shape=tuple(outputs[0].shape[1:]),
        card=read_card(path),
        saved_model_dir=path,
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
