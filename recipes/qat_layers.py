"""Which layers QAT simulates int8 on, and how: one pass over the model, before any training.

tfmot's 8-bit registry knows Dense, Conv2D, DepthwiseConv2D, Add, Concatenate, pooling, ReLU and
a few more; its layout transforms also split SeparableConv2D and take a BatchNormalization that
follows a linear Conv2D/DepthwiseConv2D/Dense (no fake-quant between them, as TFLite folds them).
Every other layer used to stop ``quantize_apply`` with one error per layer. Here each layer gets
one decision up front:

- ``tfmot``: the registry's own config (or the conv/dense + BatchNorm transform);
- ``output``: a config that fake-quantizes only the layer's output, as TFLite's int8 kernel
  requantizes it (Multiply, Subtract, Rescaling, Normalization, a standalone BatchNormalization,
  an Activation tfmot does not list, ...);
- ``conv1d``: kernel per tensor + activation, tfmot's generic 8-bit config (it has none for Conv1D);
- ``float``: not simulated in training (TF op layers, nested models, layers with weights and no
  config, skip_layers). The int8 step still quantizes them from calibration data where TFLite has
  an int8 kernel.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

_Q = "tensorflow_model_optimization.python.core.quantization.keras."
# Weightless (or statistics-only) layers whose int8 kernel just requantizes the output.
OUTPUT_ONLY = {
    "Multiply",
    "Subtract",
    "Maximum",
    "Minimum",
    "Average",
    "Rescaling",
    "Normalization",
    "BatchNormalization",
    "Activation",
    "UpSampling1D",
    "Resizing",
    "MaxPooling1D",
    "ELU",
    "Softmax",
}
# A BatchNormalization right after one of these (linear, single consumer) is tfmot's fold pattern.
FOLDS_BN = {"Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense"}
TF_OP_LAYERS = {"TFOpLambda", "SlicingOpLambda", "Lambda"}


def _tfmot(module: str) -> Any:
    from compressor.keras_shim import tfmot

    tfmot()  # the shim sets TF_USE_LEGACY_KERAS and silences the import first
    return importlib.import_module(_Q + module)


def supported_activations() -> frozenset:
    qaa = _tfmot("quantize_aware_activation").QuantizeAwareActivation
    return qaa._PRE_QUANT_ACTIVATIONS | qaa._POST_QUANT_ACTIVATIONS | qaa._NO_QUANTIZE_ACTIVATIONS


def _activation_name(layer: Any) -> str | None:
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    return getattr(act, "__name__", type(act).__name__)


def _inbound(model: Any) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Layer name -> the layers feeding its first call; and how many calls consume each layer."""
    from compressor.keras_shim import tf

    producers: dict[str, list[str]] = {}
    uses: dict[str, int] = {}
    for layer in model.layers:
        nodes = layer.inbound_nodes[:1]
        names = [inbound.name for node in nodes for inbound in tf.nest.flatten(node.inbound_layers)]
        producers[layer.name] = names
        for name in names:
            uses[name] = uses.get(name, 0) + 1
    return producers, uses


def _bn_folds(layer: Any, model: Any, producers: dict, uses: dict, skip: set) -> bool:
    source = producers.get(layer.name, [])
    if len(source) != 1 or source[0] in skip or uses.get(source[0], 0) != 1:
        return False
    prev = model.get_layer(source[0])
    return type(prev).__name__ in FOLDS_BN and _activation_name(prev) == "linear"


def plan(model: Any, skip: list[str]) -> dict[str, dict]:
    """Layer name -> {"class", "qat": tfmot|output|conv1d|float, "reason"} (InputLayers left out)."""
    from compressor.keras_shim import keras

    registry = _tfmot("default_8bit.default_8bit_quantize_registry").Default8BitQuantizeRegistry()
    activations = supported_activations()
    producers, uses = _inbound(model)
    left = set(skip)
    out = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.InputLayer):
            continue
        act = _activation_name(layer)
        if layer.name in left:
            decision = ("float", "skip_layers")
        elif isinstance(layer, keras.Model):
            decision = ("float", "nested model: tfmot cannot wrap it")
        elif kind in TF_OP_LAYERS:
            decision = ("float", "TF op layer: tfmot cannot wrap it")
        elif kind == "BatchNormalization" and _bn_folds(layer, model, producers, uses, left):
            decision = ("tfmot", "folded into the layer before it")
        elif kind in OUTPUT_ONLY and (kind != "Activation" or act not in activations):
            decision = ("output", "output range only (tfmot has no config for it)")
        elif act is not None and act not in activations and kind != "Activation":
            decision = ("float", f"activation {act} has no fake-quant rule in tfmot")
        elif kind in ("SeparableConv2D", "SeparableConv1D") and act in activations:
            decision = ("tfmot", "split by tfmot into a depthwise and a 1x1 convolution")
        elif kind == "Conv1D":
            decision = ("conv1d", "kernel per tensor + activation (tfmot has no Conv1D config)")
        elif registry.supports(layer):
            decision = ("tfmot", "tfmot 8-bit registry")
        else:
            decision = ("float", f"tfmot has no 8-bit config for {kind}")
        if decision[0] == "float":
            left.add(layer.name)
        out[layer.name] = {"class": kind, "qat": decision[0], "reason": decision[1]}
    return out


def config_for(decision: str) -> Any:
    """The QuantizeConfig passed to quantize_annotate_layer (None: the scheme's registry decides).

    Both are tfmot's own classes, so quantize_scope() revives a saved QAT model without ours."""
    if decision == "output":
        return _tfmot("default_8bit.default_8bit_quantize_configs").Default8BitOutputQuantizeConfig()
    if decision == "conv1d":
        registry = _tfmot("default_8bit.default_8bit_quantize_registry")
        return registry.Default8BitQuantizeConfig(["kernel"], ["activation"], False)
    return None


def annotate(model: Any, decisions: dict[str, dict]) -> Any:
    """A clone with every non-float layer wrapped in QuantizeAnnotate (with its config)."""
    from compressor.keras_shim import keras, tfmot

    q = tfmot().quantization.keras

    def wrap(layer: Any) -> Any:  # the layer itself (its weights): quantize_apply clones and copies them
        entry = decisions.get(layer.name)
        if entry is None or entry["qat"] == "float":
            return layer
        return q.quantize_annotate_layer(layer, quantize_config=config_for(entry["qat"]))

    return keras.models.clone_model(model, clone_function=wrap)


def reserve_names(model: Any) -> None:
    """Make Keras' automatic names skip every name the model uses.

    tfmot's transforms create layers without names (SeparableConv2D becomes a new DepthwiseConv2D
    and Conv2D): Keras names them ``conv2d``, ``conv2d_1``... from a per-session counter, so a
    user layer still called ``conv2d`` collided with the new one and received its weights
    ("Depth of input (16) is not a multiple of input depth of filter (3)").
    """
    from compressor.keras_shim import keras

    uids = importlib.import_module(keras.__name__ + ".src.backend").get_default_graph_uid_map()
    for layer in model.layers:
        found = re.fullmatch(r"(.+?)(?:_(\d+))?", layer.name)
        base, number = found.group(1), int(found.group(2) or 0)
        uids[("", base)] = max(uids[("", base)], number + 1)
        uids[("", layer.name)] = max(uids[("", layer.name)], 1)


def guarded(scheme: Any) -> Any:
    """``scheme`` whose registry claims only layers tfmot's default 8-bit registry can configure.

    quantize_apply gives a float layer feeding a quantized one an output range when the scheme's
    registry ``supports`` it; the collaborative registries (PQAT, CQAT) claim every layer and then
    fail inside tfmot on a TFOpLambda ("get_quantize_config() called on an unsupported layer").
    """
    from compressor.keras_shim import tfmot

    default = _tfmot("default_8bit.default_8bit_quantize_registry").Default8BitQuantizeRegistry()

    class Guarded(tfmot().quantization.keras.QuantizeScheme):
        def get_layout_transformer(self):
            return scheme.get_layout_transformer()

        def get_quantize_registry(self):
            registry = scheme.get_quantize_registry()
            claims = registry.supports
            registry.supports = lambda layer: claims(layer) and default.supports(layer)
            return registry

    return Guarded()
