"""Recognise files saved by Keras 3 and read their config and weights, without TensorFlow.

What Keras 3 writes (measured with Keras 3.15):
- ``.keras``: a zip of ``metadata.json`` (``keras_version`` "3.x"), ``config.json`` and
  ``model.weights.h5``. In the weights file each layer's variables are ``layers/<path>/vars/<i>``
  in the layer's own order (trainable then non-trainable: kernel, bias; gamma, beta, moving mean,
  moving variance), where ``<path>`` is the snake-cased class name numbered per class in
  ``model.layers`` order (``conv2d``, ``conv2d_1``...; Keras ops are not layers) and the ``vars``
  group's ``name`` attribute holds the layer's own name.
- ``.h5``: root attributes ``keras_version`` "3.x" and ``model_config`` (the same JSON);
  ``model_weights/<layer name>`` lists its arrays in ``weight_names`` order.
- ``model.export()``: a SavedModel without keras_metadata.pb whose root object has the export
  archive's ``_all_variables`` and ``_misc_assets`` children. It holds no layer config.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from compressor.pipeline.model_safety import corrupt_model, h5_attribute, proto_fields, saved_configs

_EXPORT_CHILDREN = {b"_all_variables", b"_misc_assets"}
_MAX_PB_BYTES = 2 << 30


def keras_version(path: Path) -> str | None:
    """The Keras version a .keras or .h5 file was saved with, or None when it does not say."""
    if path.suffix.lower() == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                if "metadata.json" not in archive.namelist():
                    return None
                meta = json.loads(archive.read("metadata.json"))
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise corrupt_model(path, f"metadata.json: {e}") from None
        version = meta.get("keras_version") if isinstance(meta, dict) else None
    else:
        version = h5_attribute(path, "keras_version")
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    return version if isinstance(version, str) else None


def is_keras3_file(path: Path) -> bool:
    version = keras_version(path)
    return bool(version) and version.split(".")[0] == "3"


def is_keras3_export(folder: Path) -> bool:
    """True for a SavedModel written by Keras 3's ``model.export()`` (or ExportArchive)."""
    pb = folder / "saved_model.pb"
    if not pb.is_file() or pb.stat().st_size > _MAX_PB_BYTES:
        return False
    try:
        for number, meta_graph in proto_fields(pb.read_bytes()):
            if number != 2 or not isinstance(meta_graph, bytes):
                continue  # SavedModel.meta_graphs = 2
            for field, graph in proto_fields(meta_graph):
                if field == 7 and isinstance(graph, bytes):  # MetaGraphDef.object_graph_def = 7
                    return _root_children(graph) >= _EXPORT_CHILDREN
    except Exception:  # an unreadable graph is reported by the loader itself
        return False
    return False


def _root_children(object_graph: bytes) -> set[bytes]:
    """Names of the root object's children: SavedObjectGraph.nodes = 1 (the root first),
    SavedObject.children = 1 (ObjectReference.local_name = 2)."""
    for number, node in proto_fields(object_graph):
        if number == 1 and isinstance(node, bytes):
            names = set()
            for field, ref in proto_fields(node):
                if field == 1 and isinstance(ref, bytes):
                    names |= {v for f, v in proto_fields(ref) if f == 2 and isinstance(v, bytes)}
            return names
    return set()


def read_config(path: Path) -> dict:
    """The Keras 3 model config (already checked for code by model_safety when loading)."""
    config = next(iter(saved_configs(path)), None)
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise corrupt_model(path, "no model config")
    return config


def read_weights(path: Path, config: dict) -> dict[str, list[np.ndarray]]:
    """Layer name -> its arrays in the layer's own variable order."""
    import h5py

    try:
        if path.suffix.lower() == ".keras":
            with zipfile.ZipFile(path) as archive:
                data = archive.read("model.weights.h5")
            with h5py.File(io.BytesIO(data), "r") as f:
                return _keras_v3_weights(f, config)
        with h5py.File(path, "r") as f:
            return _h5_weights(f.get("model_weights", f))
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise corrupt_model(path, f"weights: {type(e).__name__}: {e}") from None


def _arrays(vars_group: Any) -> list[np.ndarray]:
    return [np.asarray(vars_group[str(i)]) for i in range(len(vars_group))]


def _keras_v3_weights(f: Any, config: dict) -> dict[str, list[np.ndarray]]:
    layers = f.get("layers")
    if layers is None:
        return {}
    by_path = {key: group for key, group in layers.items() if "vars" in group}
    named = {}
    for group in by_path.values():
        name = group["vars"].attrs.get("name")
        named[name.decode() if isinstance(name, bytes) else name] = group
    out = {}
    for layer_name, storage_path in saved_layer_paths(config).items():
        group = named.get(layer_name) or by_path.get(storage_path)
        if group is not None:
            _check_nested(group, layer_name)
            out[layer_name] = _arrays(group["vars"])
    return out


def _check_nested(group: Any, layer_name: str) -> None:
    from compressor.pipeline.keras3_layers import BridgeError

    nested = [k for k in group if k != "vars"]
    if nested:
        raise BridgeError(
            f"layer {layer_name!r} holds nested layers ({', '.join(nested)}), which the bridge does not copy"
        )


def saved_layer_paths(config: dict) -> dict[str, str]:
    """Layer name -> the path Keras 3 stores its weights under (snake-cased class, numbered per class)."""
    inner = config["config"]
    sequential = config.get("class_name") == "Sequential"
    used: dict[str, int] = {}
    paths = {}
    for layer in inner.get("layers", []):
        module = str(layer.get("module") or "")
        if module.startswith("keras.src.ops") or (sequential and layer.get("class_name") == "InputLayer"):
            continue
        base = snake_case(str(layer.get("class_name")))
        used[base] = used.get(base, -1) + 1
        name = layer.get("name") or layer.get("config", {}).get("name")
        paths[name] = base if used[base] == 0 else f"{base}_{used[base]}"
    return paths


def snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _h5_weights(group: Any) -> dict[str, list[np.ndarray]]:
    out = {}
    for layer_name, layer_group in group.items():
        names = layer_group.attrs.get("weight_names", [])
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        if names:
            out[layer_name] = [np.asarray(layer_group[n]) for n in names]
    return out
