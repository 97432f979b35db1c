"""`distill`: knowledge distillation of the incoming model (the teacher) into a smaller student.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531).
The student learns from the labels and from the teacher's softened class probabilities::

    p_T = softmax(z_teacher / T),   q_T = softmax(z_student / T)
    loss = alpha * CE(y, softmax(z_student)) + (1 - alpha) * T^2 * KL(p_T || q_T)

A temperature T > 1 lifts the small probabilities of the wrong classes (which digits look
alike: the "dark knowledge"); T^2 keeps the soft term's gradients, which scale as 1/T^2, on
the same footing as the hard term's whatever T is. alpha = 1 trains on the labels alone: the
baseline a distilled student must beat, same code path, same initial weights for a seed::

    compressor compress MODEL --recipe distill-int8 --out OUT --set steps.0.params.alpha=1.0

The student is a reference architecture (``student``, ``student_params``) or, by default, the
teacher's own topology with every Dense/Conv layer but the classifier ``width`` times as wide
(BatchNorm follows), started from the teacher's strongest channels (recipes/distill_init.py; a
random start only where the topology cannot be sliced, and meta.json says why). Training stops when
validation stops improving (``early_stopping``) and keeps the best epoch. With ``baseline`` the
same student is also trained on the labels alone, so the report shows what distillation adds:
student at start, student alone, distilled; the one better on validation data is handed on (a weak
teacher can pull a student below its labels), softmax outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from compressor.datasets.splits import split_of, with_targets
from compressor.recipes.base import progress, register
from compressor.recipes.distill_gap import gap_note
from compressor.recipes.distill_init import init_from_teacher, recalibrate_batch_norm
from compressor.recipes.finetune import FineTuneParams, accuracy_on, fit
from compressor.recipes.rebuild import WIDTH_KEYS, classifier_name, editable_config, name_of, rebuild
from compressor.recipes.stepio import write_info
from compressor.runtime.suggest import unknown_name_message

# Probabilities are clipped here before the log: float32 softmax underflows to 0 only for
# logit gaps > ~87, and log(0) would turn the KL term into NaN.
_TINY = 1e-30
PREDICT_BATCH = 256  # samples a teacher/student prediction holds at once
_Schedule = FineTuneParams.model_fields["lr_schedule"].annotation


class DistillParams(FineTuneParams):
    temperature: float = Field(4.0, gt=0, le=100, description="softmax temperature T of the soft targets")
    alpha: float = Field(
        0.1,
        ge=0,
        le=1,
        description="weight of the label loss; 1 - alpha goes to the teacher's soft targets (1.0 = labels only)",
    )
    student: str | None = Field(
        None, description="reference architecture of the student (compressor models); default: the teacher at `width`"
    )
    student_params: dict[str, Any] = Field({}, description="arguments of the student architecture")
    width: float = Field(
        0.5,
        gt=0,
        le=1,
        description="student = teacher with this many times the filters/units "
        "of every Dense/Conv but the classifier (ignored with student)",
    )
    init: Literal["teacher", "random"] = Field(
        "teacher", description="derived student's start: the teacher's strongest channels, or random weights"
    )
    baseline: bool = Field(
        True, description="also train the same student on the labels alone (alpha=1) and report both accuracies"
    )
    epochs: int = Field(60, ge=1, le=10_000, description="most training epochs of the student")
    early_stopping: int = Field(
        6, ge=0, description="stop after this many epochs without a better val_loss, keep the best; 0 = off"
    )
    learning_rate: float = Field(1e-3, gt=0, le=10, description="peak learning rate")
    lr_schedule: _Schedule = Field("constant", description=FineTuneParams.model_fields["lr_schedule"].description)

    @field_validator("student")
    @classmethod
    def _known_student(cls, name: str | None) -> str | None:
        from compressor.models import model_names  # the registry only: no TensorFlow

        if name is not None and name not in model_names():
            raise ValueError(unknown_name_message("model", name, model_names()))
        return name

    @model_validator(mode="after")
    def _student_params_fit(self) -> DistillParams:
        if self.student_params and self.student is None:
            raise ValueError("student_params needs student (a reference architecture)")
        if self.student is not None:
            from compressor.models import get_spec

            valid = get_spec(self.student).params
            unknown = sorted(set(self.student_params) - set(valid))
            if unknown:
                raise ValueError(f"student {self.student!r} has no argument {unknown[0]!r} (valid: {', '.join(valid)})")
        return self


def widened(teacher: Any, width: float) -> tuple[Any, dict]:
    """The teacher's topology with every Dense/Conv but the classifier scaled by ``width``
    (rounded, at least 1, as the reference builders do); fresh weights. Returns the layer sizes."""
    config = editable_config(teacher, "distill (width)")
    head = classifier_name(config)
    sizes, reshapes = {}, []
    for layer in config["layers"]:
        key = WIDTH_KEYS.get(layer["class_name"])
        if key and name_of(layer) != head:
            old = layer["config"][key]
            layer["config"][key] = max(1, round(old * width))
            sizes[name_of(layer)] = [old, layer["config"][key]]
        elif layer["class_name"] == "Reshape" and _follow_channels(layer["config"]):
            reshapes.append(layer)
    config["name"] = f"{config.get('name', 'model')}_student"
    student = rebuild(teacher, config, "distill (width)")
    if reshapes:  # built once with -1 to learn C; a -1 would leave the next Conv2D's input depth
        for layer in reshapes:  # unknown in the converter's graph (a Flex Conv2D), so write C back
            layer["config"]["target_shape"] = list(student.get_layer(name_of(layer)).output_shape[1:])
        student = rebuild(teacher, config, "distill (width)")
    return student, sizes


def _follow_channels(config: dict) -> bool:
    """A Reshape to (1, ..., 1, C), as squeeze-excite blocks write it after global pooling
    (EfficientNet's ``block1a_se_reshape``), names the teacher's channel count: -1 lets it take the
    student's (its input holds exactly C values per sample). Whether the Reshape was one."""
    shape = list(config.get("target_shape") or [])
    if shape and all(d == 1 for d in shape[:-1]) and shape[-1] not in (-1, None):
        config["target_shape"] = [*shape[:-1], -1]
        return True
    return False


def make_student(teacher: Any, params: DistillParams) -> tuple[Any, dict]:
    from compressor.keras_shim import set_seed

    # The initial weights depend on the seed only, so alpha=1 (labels only) starts where KD does.
    set_seed(params.seed)
    if params.student is None:
        student, sizes = widened(teacher, params.width)
        described = {"student": "derived from the teacher", "width": params.width, "layers": sizes}
        if params.init == "random":
            return student, {**described, "init": "random"}
        try:
            init_from_teacher(teacher, student)
        except ValueError as e:  # a topology the slicing does not follow: say so, train from random
            return student, {**described, "init": f"random (the teacher's channels cannot be copied: {e})"}
        return student, {**described, "init": "teacher's strongest channels (L1 norm)"}
    from compressor.models import build_model

    student = build_model(
        params.student,
        input_shape=tuple(teacher.input_shape[1:]),
        num_classes=int(teacher.output_shape[-1]),
        **params.student_params,
    )
    return student, {"student": params.student, "student_params": dict(params.student_params)}


def soft_targets(teacher: Any, split: Any) -> np.ndarray:
    """[class id, teacher log-probabilities...] of every sample of ``split``, a batch at a time: only
    these N x (1 + classes) floats are held, never the split's inputs (it may be streamed). Computed
    once: the teacher is frozen and the inputs are not augmented, so its outputs never change during
    training (this halves the training cost)."""
    parts = [
        np.concatenate([np.asarray(y).reshape(-1, 1).astype(np.float32), _log(teacher.predict_on_batch(x))], axis=1)
        for x, y in split.batches(PREDICT_BATCH)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 1 + int(teacher.output_shape[-1])), np.float32)


def with_teacher(teacher: Any, data: Any, who: str) -> Any:
    """``data`` whose train and val targets carry the teacher's log-probs (see soft_targets): a Keras
    loss sees only (y_true, y_pred), so this lets the shared fit loop (schedules, early stopping,
    mixed precision, history.json) train a student. Loaded or streamed data alike."""
    splits = {name: split_of(data, name) for name in ("train", "val")}
    progress(f"    {who}: teacher log-probs over {len(splits['train']):,} + {len(splits['val']):,} samples")
    return with_targets(data, {name: soft_targets(teacher, split) for name, split in splits.items()})


def _log(probs: Any) -> np.ndarray:
    return np.log(np.maximum(np.asarray(probs), _TINY)).astype(np.float32)


def distillation_loss(alpha: float, temperature: float) -> Any:
    """Keras loss over y_true = [label, teacher log-probs...] and y_pred = student probabilities.

    Temperature scaling needs logits; log(softmax(z)) = z - logsumexp(z) equals them up to a
    per-sample constant, which softmax(. / T) cancels exactly. So log(probs) gives the same
    soft targets as the logits without rewiring the output layer, for any teacher or student
    that ends in a softmax, and the returned student keeps its softmax output untouched.
    """
    from compressor.keras_shim import keras, tf

    t = float(temperature)

    def distillation(y_true, y_pred):
        hard = keras.losses.sparse_categorical_crossentropy(y_true[:, 0], y_pred)
        teacher = y_true[:, 1:] / t
        student = tf.math.log(tf.maximum(y_pred, _TINY)) / t
        kl = tf.reduce_sum(tf.nn.softmax(teacher) * (tf.nn.log_softmax(teacher) - tf.nn.log_softmax(student)), -1)
        return alpha * hard + (1.0 - alpha) * t * t * kl

    return distillation


def label_accuracy() -> Any:
    from compressor.keras_shim import keras

    def accuracy(y_true, y_pred):  # named so history.json has accuracy/val_accuracy like every step
        return keras.metrics.sparse_categorical_accuracy(y_true[:, :1], y_pred)

    return accuracy


def _accuracy(model: Any, split: Any) -> float:
    return accuracy_on(model, split, batch_size=PREDICT_BATCH)


@register("distill", "knowledge distillation into a smaller student (Hinton et al. 2015)", DistillParams, "train")
def apply(model: Any, data: Any, params: DistillParams, workdir: Path) -> Any:
    student, description = make_student(model, params)
    if description.get("init", "").startswith("teacher"):
        recalibrate_batch_norm(student, split_of(data, "train"))
    teacher_n, student_n = int(model.count_params()), int(student.count_params())
    progress(
        f"    student: {student_n:,} parameters ({student_n / teacher_n:.0%} of the teacher's {teacher_n:,}); "
        f"T={params.temperature:g}, alpha={params.alpha:g}; starts from {description.get('init', 'random')}"
    )

    soft = with_teacher(model, data, "distill")
    test, val = split_of(data, "test"), split_of(data, "val")
    accuracy = {"teacher": _accuracy(model, test), "student_start": _accuracy(student, test)}
    alone = None
    if params.baseline and params.alpha < 1:
        alone = _labels_only(student, soft, params, workdir / "labels_only")
    loss = distillation_loss(params.alpha, params.temperature)
    record = fit(student, soft, params, workdir, loss=loss, metrics=[label_accuracy()])
    accuracy["distilled"] = _accuracy(student, test)
    student, chosen = _hand_on(student, alone, (val, test), accuracy)
    handed = _accuracy(student, test)
    gap = gap_note(accuracy, handed, record, params, student_n / teacher_n)
    if gap:
        progress(f"    the student is {gap['points']:.1f} points below the teacher: {gap['why']}")
    write_info(
        workdir,
        {
            **description,
            "temperature": params.temperature,
            "alpha": params.alpha,
            "teacher_parameters": teacher_n,
            "student_parameters": student_n,
            "parameter_ratio": round(student_n / teacher_n, 4),
            "test_accuracy": accuracy,
            "handed_on": chosen,
            "teacher_test_accuracy": accuracy["teacher"],
            "student_test_accuracy": handed,
            "gap": gap,
        },
    )
    return student


def _hand_on(distilled: Any, alone: Any, splits: tuple, accuracy: dict) -> tuple[Any, str]:
    """The distilled student, or the labels-only one where it does better on validation data (never
    test): a weak teacher can pull its student below what the labels alone give. ``splits``: (val, test)."""
    chosen, model = "distilled", distilled
    val, test = splits
    if alone is not None:
        accuracy["student_alone"] = _accuracy(alone, test)
        if _accuracy(alone, val) > _accuracy(distilled, val):
            chosen, model = "student alone (labels only: better on validation than distilled)", alone
    progress(
        "    test accuracy: "
        + ", ".join(f"{k.replace('_', ' ')} {v:.2%}" for k, v in accuracy.items())
        + f"; handing on the {chosen}"
    )
    return model, chosen


def _labels_only(student: Any, soft: Any, params: DistillParams, workdir: Path) -> Any:
    """The baseline: the same starting student trained on the labels alone (alpha = 1), same budget."""
    from compressor.keras_shim import keras

    alone = keras.models.clone_model(student)
    alone.set_weights(student.get_weights())
    workdir.mkdir(parents=True, exist_ok=True)
    fit(alone, soft, params, workdir, loss=distillation_loss(1.0, params.temperature), metrics=[label_accuracy()])
    return alone
