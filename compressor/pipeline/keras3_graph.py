"""A Keras 3 model config -> a tf_keras functional config: the graph half of the bridge.

Keras 3 writes each call of a layer as ``{"args": [...], "kwargs": {...}}`` whose tensors are
``{"class_name": "__keras_tensor__", "config": {"keras_history": [layer, node, tensor]}}``;
tf_keras wants ``[[layer, node, tensor, kwargs], ...]``. A Sequential becomes the same chain as
a functional graph. Keras ops recorded in the graph (``keras.src.ops.numpy`` Add/Multiply... as
MobileNetV3's hard-sigmoid writes them) become Rescaling (tensor with a constant) or the merge
layer (two tensors); activations tf_keras lacks become standard layers: relu6 = ReLU(6),
hard_sigmoid = Rescaling(1/6)(ReLU(6)(Rescaling(1, 3)(x))) (Keras 3's relu6(x + 3) / 6, in a form
the TFLite converter fuses into HARD_SWISH), hard_silu = x * hard_sigmoid(x), leaky_relu =
LeakyReLU(0.2). Every such rewrite is listed in the bridge record.
"""

from __future__ import annotations

import copy
from typing import Any

from compressor.pipeline.keras3_layers import (
    ACTIVATION_RENAMES,
    REWRITTEN_ACTIVATIONS,
    activation_name,
    dtype_name,
    translate_layer,
    unsupported,
)

_MODELS = ("Functional", "Model")
_OPS = {"Add": "Add", "Subtract": "Subtract", "Multiply": "Multiply"}  # op on two tensors -> merge layer


def tf_keras_config(config: dict) -> tuple[dict, list[str]]:
    """(tf_keras Functional config, rewrites made) for a Keras 3 Functional or Sequential config."""
    class_name, inner = config.get("class_name"), config.get("config") or {}
    if class_name == "Sequential":
        inner = _sequential_as_functional(inner)
    elif class_name not in _MODELS:
        raise unsupported(str(inner.get("name")), str(class_name), "only Functional and Sequential models are bridged")
    graph = _Graph({str(entry.get("name")) for entry in inner.get("layers", [])})
    for entry in inner.get("layers", []):
        graph.add(entry)
    return {
        "name": inner.get("name", "model"),
        "layers": graph.layers,
        "input_layers": graph.endpoints(inner.get("input_layers")),
        "output_layers": graph.endpoints(inner.get("output_layers")),
    }, graph.rewrites


def _sequential_as_functional(inner: dict) -> dict:
    layers = copy.deepcopy(inner.get("layers", []))
    if not layers or layers[0].get("class_name") != "InputLayer":
        shape = inner.get("build_input_shape")
        if not shape:
            raise unsupported(str(inner.get("name")), "Sequential", "it was saved without an input shape")
        first = {"batch_shape": shape, "dtype": "float32", "name": f"{inner.get('name', 'sequential')}_input"}
        layers.insert(0, {"class_name": "InputLayer", "config": first})
    previous = None
    for layer in layers:
        layer["name"] = layer["config"]["name"]
        tensor = {"class_name": "__keras_tensor__", "config": {"keras_history": [previous, 0, 0]}}
        layer["inbound_nodes"] = [] if previous is None else [{"args": [tensor], "kwargs": {}}]
        previous = layer["name"]
    return {"name": inner.get("name"), "layers": layers, "input_layers": [[layers[0]["name"], 0, 0]],
            "output_layers": [[previous, 0, 0]]}  # fmt: skip


def _is_tensor(arg: Any) -> bool:
    return isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__"


class _Graph:
    """The tf_keras layer list being built, with where each Keras 3 layer's output now comes from."""

    def __init__(self, names: set[str]):
        self.layers: list[dict] = []
        self.rewrites: list[str] = []
        self.names = set(names)
        self.redirect: dict[str, str] = {}  # a layer whose activation was split off -> the activation's last layer

    def add(self, entry: dict) -> None:
        name, class_name = str(entry.get("name")), str(entry.get("class_name"))
        config = entry.get("config") or {}
        nodes = entry.get("inbound_nodes") or []
        if str(entry.get("module") or "").startswith("keras.src.ops"):
            return self._op(name, class_name, nodes)
        if class_name in ("Functional", "Sequential", "Model"):
            raise unsupported(name, class_name, "nested models are not bridged (save the inner model's layers flat)")
        if class_name == "Activation":
            act = activation_name(config.get("activation"), name, class_name)
            if act in REWRITTEN_ACTIVATIONS:
                (node,) = self._single_node(name, class_name, nodes)
                return self._activation(act, self._refs(node, name, class_name)[0], name, config, final=name)
        translated, pending = translate_layer(class_name, config)
        if class_name == "Activation":
            act = activation_name(translated.get("activation"), name, class_name)
            translated["activation"] = ACTIVATION_RENAMES.get(act, act)
        inbound = [self._refs(node, name, class_name) for node in nodes]
        self.layers.append({"class_name": class_name, "config": translated, "name": name, "inbound_nodes": inbound})
        if pending != "linear":
            self._single_node(name, class_name, nodes)
            final = self._fresh(f"{name}_{pending}")
            self._activation(pending, [name, 0, 0, {}], name, config, final=final)
            self.redirect[name] = final

    def endpoints(self, value: Any) -> list[list]:
        items = value if value and isinstance(value[0], list) else [value]
        return [[self.redirect.get(str(n), str(n)) if i == 0 else n, i, t] for n, i, t in items]

    def _single_node(self, name: str, class_name: str, nodes: list) -> list:
        if len(nodes) != 1:
            raise unsupported(name, class_name, f"a rewritten layer must be called once, not {len(nodes)} times")
        return nodes

    def _refs(self, node: dict, name: str, class_name: str) -> list[list]:
        """One Keras 3 call -> tf_keras [[layer, node, tensor, {}], ...]."""
        args, kwargs = node.get("args") or [], node.get("kwargs") or {}
        extra = {k: v for k, v in kwargs.items() if v is not None and k != "training"}
        first = args[0] if args else None
        tensors = first if isinstance(first, list) else [first]
        if len(args) != 1 or extra or not all(_is_tensor(t) for t in tensors):
            raise unsupported(name, class_name, f"a call with arguments {_describe(args, extra)} is not bridged")
        return [self._ref(t) for t in tensors]

    def _ref(self, tensor: dict) -> list:
        layer, node_index, tensor_index = tensor["config"]["keras_history"]
        if node_index == 0 and layer in self.redirect:
            layer = self.redirect[layer]
        return [layer, node_index, tensor_index, {}]

    def _fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def _emit(self, class_name: str, config: dict, name: str, inputs: list[list]) -> list:
        self.layers.append({"class_name": class_name, "config": {"name": name, **config}, "name": name,
                            "inbound_nodes": [inputs]})  # fmt: skip
        return [name, 0, 0, {}]

    def _activation(self, act: str, ref: list, owner: str, config: dict, final: str) -> None:
        """Apply a Keras 3 activation tf_keras lacks to ``ref`` as standard layers, the last named ``final``."""
        dtype = {"dtype": dtype_name(config.get("dtype"), owner, "Activation"), "trainable": False}
        self.rewrites.append(f"{owner}: activation {act} as standard layers")
        if act == "relu6":
            self._emit("ReLU", {"max_value": 6.0, **dtype}, final, [ref])
        elif act == "leaky_relu":
            self._emit("LeakyReLU", {"alpha": 0.2, **dtype}, final, [ref])
        else:  # Keras 3: hard_sigmoid(x) = relu6(x + 3) / 6; the converter fuses x * that into HARD_SWISH
            shift = self._fresh(f"{owner}_hs_shift")
            shifted = self._emit("Rescaling", {"scale": 1.0, "offset": 3.0, **dtype}, shift, [ref])
            clipped = self._emit("ReLU", {"max_value": 6.0, **dtype}, self._fresh(f"{owner}_hs_relu6"), [shifted])
            gate_name = final if act == "hard_sigmoid" else self._fresh(f"{owner}_hs_gate")
            gate = self._emit("Rescaling", {"scale": 1 / 6, "offset": 0.0, **dtype}, gate_name, [clipped])
            if act != "hard_sigmoid":  # hard_silu / hard_swish: x * hard_sigmoid(x)
                self._emit("Multiply", dtype, final, [ref, gate])

    def _op(self, name: str, op: str, nodes: list) -> None:
        """A Keras op in the graph: Add/Subtract/Multiply/Divide of a tensor and a constant, or of two tensors."""
        (node,) = self._single_node(name, f"keras.ops.{op}", nodes)
        args = node.get("args") or []
        tensors = [self._ref(a) for a in args if _is_tensor(a)]
        constants = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        if len(args) != 2 or len(tensors) + len(constants) != 2 or node.get("kwargs"):
            raise unsupported(name, f"keras.ops.{op}", f"a call with arguments {_describe(args, node.get('kwargs'))}")
        if len(tensors) == 2 and op in _OPS:
            self._emit(_OPS[op], {}, name, tensors)
        elif len(tensors) == 1:
            c = float(constants[0])
            scale_offset = _affine(op, c, tensor_first=_is_tensor(args[0]))
            if scale_offset is None:
                raise unsupported(name, f"keras.ops.{op}", "only +, -, * and / by a constant become a Rescaling")
            self._emit("Rescaling", {"scale": scale_offset[0], "offset": scale_offset[1]}, name, tensors)
        else:
            raise unsupported(name, f"keras.ops.{op}", "this operation has no tf_keras layer")
        self.rewrites.append(f"{name}: keras.ops.{op} as a layer")


def _affine(op: str, c: float, tensor_first: bool) -> tuple[float, float] | None:
    """(scale, offset) with op(x, c) == x * scale + offset, or None."""
    if op == "Add":
        return 1.0, c
    if op == "Multiply":
        return c, 0.0
    if op == "Subtract":
        return (1.0, -c) if tensor_first else (-1.0, c)
    if op in ("Divide", "TrueDivide") and tensor_first and c != 0:
        return 1.0 / c, 0.0
    return None


def _describe(args: list, kwargs: Any) -> str:
    shown = ["tensor" if _is_tensor(a) else "[tensors]" if isinstance(a, list) else repr(a)[:40] for a in args]
    return f"({', '.join(shown)}{', ' if kwargs else ''}{', '.join(f'{k}=...' for k in kwargs or {})})"
