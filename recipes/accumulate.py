"""Gradient accumulation: one optimizer update from the gradients of N micro-batches.

With ``accumulate_steps = N`` the shared fit loop (finetune.fit) hands Keras batches of
B = N * batch_size samples, and the train step below splits each into micro-batches of
``batch_size``, so only one micro-batch's activations are alive at a time. For a batch of
B samples cut into micro-batches b_1..b_k (k = ceil(B / batch_size), the last one possibly
smaller), the update uses

    g = sum_j (|b_j| / B) * grad L(b_j),    L(b) = (1/|b|) sum_{i in b} loss_i + R(w)

which is exactly grad L of the whole batch when the loss is a mean over samples (Keras'
default reduction) and R the weight regularisers: the same update as a batch of B, equal
micro-batches or not. A "step" (the optimizer's ``iterations``, tfmot's pruning step, one
``on_train_batch_*`` callback) is therefore one update of B samples; the last group of an
epoch holds the remaining n mod B samples and is one update whose gradient is their mean,
like Keras' own last partial batch. Nothing is dropped or carried into the next epoch.

What is not the big batch's: BatchNorm normalises with micro-batch statistics, and moving
averages (BatchNorm, QAT ranges) take one update per micro-batch, as in any accumulation.
"""

from __future__ import annotations

import functools
from typing import Any

from compressor.runtime.errors import UserError


def updates_per_epoch(samples: int, batch_size: int, accumulate_steps: int) -> int:
    """Optimizer updates (= schedule steps) in one epoch: ceil(n / (N * batch_size))."""
    return -(-samples // (batch_size * accumulate_steps))


def accumulating(model: Any, micro_batch: int) -> Any:
    """A functional model over ``model``'s own layers (weights, tfmot wrappers and all shared)
    whose train step accumulates micro-batches of ``micro_batch``; ``model`` itself is unchanged."""
    if not getattr(model, "inputs", None) or not getattr(model, "outputs", None):
        raise UserError("accumulate_steps > 1 needs a functional or sequential model with known inputs")
    wrapper = _model_class()(inputs=model.inputs, outputs=model.outputs, name=model.name)
    wrapper.micro_batch = int(micro_batch)
    return wrapper


@functools.cache
def _model_class() -> type:
    """Built on first use: recipes import TensorFlow only when a step trains."""
    from compressor.keras_shim import keras

    class Accumulating(keras.Model):
        micro_batch = 1

        def train_step(self, data: Any) -> dict:
            return _train_step(self, data)

    return Accumulating


def _train_step(model: Any, data: Any) -> dict:
    """One update from the micro-batches of ``data`` (see the module docstring for the formula).

    The loop is a ``tf.while_loop`` with ``parallel_iterations=1``: micro-batches run one after
    the other, or their activations would be alive together and nothing would be saved.
    ``optimizer.compute_gradients`` scales/unscales the loss under a LossScaleOptimizer.
    """
    from compressor.keras_shim import keras, tf

    x, y, weight = keras.utils.unpack_x_y_sample_weight(data)
    variables = model.trainable_variables
    total = tf.shape(tf.nest.flatten(x)[0])[0]
    size = model.micro_batch
    connected: list[bool] = []  # which variables get a gradient at all, seen while tracing the body

    def body(i: Any, sums: list) -> tuple:
        part = functools.partial(_rows, start=i * size, size=size)
        xb, yb, wb = tf.nest.map_structure(part, (x, y, weight))
        share = tf.shape(tf.nest.flatten(xb)[0])[0] / total  # |b_j| / B, float64
        with tf.GradientTape() as tape:
            pred = model(xb, training=True)
            loss = model.compute_loss(xb, yb, pred, wb)
            loss = loss * tf.cast(share, loss.dtype)
        grads = [g for g, _ in model.optimizer.compute_gradients(loss, variables, tape)]
        model.compute_metrics(xb, yb, pred, wb)
        connected[:] = [g is not None for g in grads]
        return i + 1, [s if g is None else s + tf.convert_to_tensor(g) for s, g in zip(sums, grads)]

    count = (total + size - 1) // size
    zeros = [tf.zeros_like(v) for v in variables]
    _, sums = tf.while_loop(lambda i, _: i < count, body, (tf.constant(0), zeros), parallel_iterations=1)
    model.optimizer.apply_gradients([(g, v) for g, v, used in zip(sums, variables, connected) if used])
    return model.get_metrics_result()


def _rows(tensor: Any, start: Any, size: int) -> Any:
    return None if tensor is None else tensor[start : start + size]
