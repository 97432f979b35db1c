"""TF operations written into a functional model (``x * tf.nn.relu6(x + 3) / 6``) that channels pass through.

The functional API wraps each such call in a ``TFOpLambda`` layer whose config names the function
and keeps its other arguments as keyword arguments. An elementwise function whose other arguments
are scalars (or tensors, merged like an ``Add``) acts on each channel alone, so removing channels
before it leaves it valid. Anything else -- a constant vector, a reshape, a reduction -- stays
untraced, and channel_prune keeps the channels around it whole.
"""

from __future__ import annotations

from typing import Any

ELEMENTWISE = {
    *("__operators__.add", "math.add", "math.subtract", "math.multiply", "math.truediv", "math.divide"),
    *("math.maximum", "math.minimum", "math.pow", "math.square", "math.sqrt", "math.abs", "math.negative"),
    *("nn.relu", "nn.relu6", "nn.silu", "nn.swish", "nn.gelu", "nn.elu", "nn.leaky_relu", "nn.sigmoid"),
    *("math.sigmoid", "math.tanh", "math.exp", "identity", "clip_by_value", "compat.v1.identity"),
}


def elementwise(layer: dict) -> bool:
    """A TFOpLambda called once, on an elementwise function, with only scalars besides tensors."""
    if layer["class_name"] != "TFOpLambda":
        return False
    nodes = layer.get("inbound_nodes") or []
    if layer["config"].get("function") not in ELEMENTWISE or len(nodes) != 1:
        return False
    node = nodes[0]
    if not (isinstance(node, list) and len(node) == 4 and isinstance(node[3], dict)):
        return False
    return all(_scalar_or_ref(value) for value in node[3].values())


def _scalar_or_ref(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
