"""Recipe steps (one module per technique) and the recipe schema.

Importing this package registers every step type; it does not import TensorFlow (steps
import the Keras shim inside ``apply``).
"""

from compressor.recipes import (  # noqa: F401  (registers distill, regularize)  # noqa: F401  (registers cluster, prune, qat)
    aeq,  # noqa: F401  (registers aeq_int8, aeq_a16w8, aeq_int4)
    bias_correction,  # noqa: F401  (registers bias_correct)
    channel_prune,  # noqa: F401  (registers channel_prune)
    cluster,
    distill,
    equalize,  # noqa: F401  (registers equalize)
    prune,
    ptq,  # noqa: F401  (registers float16, dynamic, int8, int16x8)
    qat,
    regularize,
    sparse_float,  # noqa: F401  (registers sparse_float)
)
from compressor.recipes.base import StepParams, StepType, get_step, register, step_types
from compressor.recipes.schema import Recipe, load_recipe, preset_names, validate_recipe

__all__ = [
    "StepParams",
    "StepType",
    "get_step",
    "register",
    "step_types",
    "Recipe",
    "load_recipe",
    "preset_names",
    "validate_recipe",
]
