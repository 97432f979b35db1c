"""The benchmark sections. Each takes the Context and returns JSON-able figures."""

from __future__ import annotations

import numpy as np

from compressor.recipes import load_recipe, preset_names

from .arch_sections import architectures
from .backend_sections import quant_backends
from .context import Context
from .faster_sections import faster, hard_architectures
from .latency_matrix import artifact_latency
from .mcu_sections import mcu
from .measure import ratio, run_job
from .runtime_sections import footprint, latency_parity, validation_throughput
from .scale_sections import memory, mixed_precision, replicas, storage

TRAINED = {"digits_cnn": 20, "mlp": 20}
RANDOM = {
    "mobilenet_v2_96": ("mobilenet_v2", [96, 96, 3]),
    "mobilenet_v2_224": ("mobilenet_v2", [224, 224, 3]),
    "cifar_resnet": ("cifar_resnet", [32, 32, 3]),
}


def prepare_models(ctx: Context) -> dict:
    for name, epochs in TRAINED.items():
        if ctx.quick and name != "digits_cnn":
            continue
        job = run_job("benchmarks.ours:train_job", model=name, out=str(ctx.work / name), epochs=epochs)
        ctx.models[name] = {
            **job["result"],
            "data": "digits",
            "weights": "trained on digits",
            "train_wall_s": round(job["wall_s"], 1),
        }
    for name, (arch, shape) in RANDOM.items():
        if ctx.quick and name != "mobilenet_v2_96":
            continue
        job = run_job("benchmarks.ours:random_model_job", model=arch, input_shape=shape, out=str(ctx.work / name))
        ctx.models[name] = {**job["result"], "weights": "random (latency and size only)"}
    return ctx.models


def recipes_for(ctx: Context, model: str) -> list[list[str]]:
    """Jobs per model: one recipe per job for trained models (wall time and RSS per recipe); for the
    random-weight models the float PTQ recipes share one job, int16x8 alone (LiteRT may refuse it)."""
    if ctx.quick:
        return [["int8"], ["prune-qat-int8"]] if model == "digits_cnn" else [["int8"]]
    if model in TRAINED:
        return [[name] for name in preset_names()]
    # training recipes on random weights and random labels would measure nothing
    return [["int8", "float16", "dynamic"], ["int16x8"]]


def compress_matrix(ctx: Context) -> dict:
    out = {}
    for model, info in ctx.models.items():
        for recipes in recipes_for(ctx, model):
            key = f"{model}/{'+'.join(recipes)}"
            try:
                job = run_job(
                    "benchmarks.ours:compress_job",
                    model_path=info["model_path"],
                    recipes=recipes,
                    out=str(ctx.work / "runs" / model / recipes[0]),
                    data=info["data"],
                )
            except RuntimeError as e:  # a recipe that fails on a model is a result too; keep going
                out[key] = {"error": str(e)[-400:]}
                continue
            for recipe in recipes:
                ctx.runs[(model, recipe)] = job
            out[key] = {"wall_s": round(job["wall_s"], 1), "peak_rss_mb": round(job["peak_rss_mb"]), **job["result"]}
    return out


def latency_rows(ctx: Context) -> dict:
    rows = {}
    for (model, _recipe), job in ctx.runs.items():
        data = ctx.models[model]["data"]
        sample = _one_sample(data)
        for art in job["result"]["artifacts"]:
            key = f"{model}/{art['artifact']}/{art['format']}"
            if key in rows:
                continue  # float32 rows repeat in every run of a model
            rows[key] = artifact_latency(art["path"], sample)
    return rows


def _one_sample(data: str) -> np.ndarray:
    from compressor.datasets import load_dataset

    return load_dataset(data).x_test[:1]


def baselines(ctx: Context) -> dict:
    info = ctx.models["digits_cnn"]
    work = ctx.work / "baselines"
    work.mkdir(exist_ok=True)
    out = {}
    for optimize in (False, True):
        job = run_job(
            "benchmarks.baselines:default_converter",
            model_path=info["model_path"],
            out=str(work / f"default-{optimize}.tflite"),
            optimize=optimize,
        )
        out["tflite_converter_default" + ("_optimize" if optimize else "")] = {
            "wall_s": round(job["wall_s"], 1),
            "peak_rss_mb": round(job["peak_rss_mb"]),
            **job["result"],
        }
    recipe = load_recipe("prune-qat-int8")
    prune, qat = recipe.steps[0].params.model_dump(), recipe.steps[1].params.model_dump()
    hand = run_job(
        "benchmarks.baselines:handwritten_prune_qat",
        model_path=info["model_path"],
        out=str(work / "handwritten.tflite"),
        data="digits",
        sparsity=prune["sparsity"],
        prune_epochs=prune["epochs"],
        qat_epochs=qat["epochs"],
        batch_size=prune["batch_size"],
        prune_lr=prune["learning_rate"],
        qat_lr=qat["learning_rate"],
    )
    out["handwritten_prune_qat"] = {
        "wall_s": round(hand["wall_s"], 1),
        "peak_rss_mb": round(hand["peak_rss_mb"]),
        **hand["result"],
    }
    # Ours with the same work: TFLite only (the handwritten script exports no ONNX and validates nothing).
    ours = run_job(
        "benchmarks.ours:compress_job",
        model_path=info["model_path"],
        recipes=["prune-qat-int8"],
        out=str(work / "ours"),
        data="digits",
        overrides=["export.formats=[tflite]"],
    )
    row = next(a for a in ours["result"]["artifacts"] if a["artifact"] == "prune-qat-int8")
    out["ours_prune_qat_tflite_only"] = {
        "wall_s": round(ours["wall_s"], 1),
        "peak_rss_mb": round(ours["peak_rss_mb"]),
        "size_bytes": row["size_bytes"],
        "gzip_bytes": row["gzip_bytes"],
        "accuracy": row["accuracy"],
    }
    h, o = out["handwritten_prune_qat"], out["ours_prune_qat_tflite_only"]
    out["ratios_ours_over_handwritten"] = {
        k: ratio(o[k], h[k]) for k in ("wall_s", "peak_rss_mb", "size_bytes", "gzip_bytes", "accuracy")
    }
    return out


def exported_structure(ctx: Context) -> dict:
    """Sparsity and clusters read back from the exported int8 files, and distillation vs labels only."""
    from compressor.inspection.weights import sparsity, tflite_kernels

    def artifact(recipe: str) -> str:
        job = ctx.runs[("digits_cnn", recipe)]
        return next(
            a["path"] for a in job["result"]["artifacts"] if a["artifact"] == recipe and a["format"] == "tflite"
        )

    out: dict = {}
    if ("digits_cnn", "prune-qat-int8") in ctx.runs:
        kernels = tflite_kernels(artifact("prune-qat-int8"))
        per_layer = {name: round(float(sparsity(k)), 4) for name, k in kernels.items()}
        out["prune_qat_sparsity_per_kernel"] = per_layer
        out["prune_qat_min_sparsity"] = min(per_layer.values())
    if ("digits_cnn", "cluster-qat-int8") in ctx.runs:
        kernels = tflite_kernels(artifact("cluster-qat-int8"))
        counts = {name: cluster_values(k) for name, k in kernels.items()}
        out["cluster_values_measure"] = CLUSTER_MEASURE
        out["cluster_values_per_kernel"] = counts
        out["cluster_max_values"] = max(counts.values())
    if ("digits_cnn", "distill-int8") in ctx.runs:
        info = ctx.models["digits_cnn"]
        labels_only = run_job(
            "benchmarks.ours:compress_job",
            model_path=info["model_path"],
            recipes=["distill-int8"],
            out=str(ctx.work / "runs" / "digits_cnn" / "distill-labels-only"),
            data="digits",
            overrides=["steps.0.params.alpha=1.0"],
        )

        def pick(job: dict) -> float:
            return next(a["accuracy"] for a in job["result"]["artifacts"] if a["artifact"] == "distill-int8")

        distilled, plain = pick(ctx.runs[("digits_cnn", "distill-int8")]), pick(labels_only)
        out["distill_student_accuracy"], out["labels_only_student_accuracy"] = distilled, plain
        out["distill_gain_points"] = round((distilled - plain) * 100, 2)
    return out


CLUSTER_MEASURE = "max distinct values per conv output channel / dense kernel"


def cluster_values(kernel: np.ndarray) -> int:
    """Distinct values a clustered kernel kept in the .tflite: the max over output channels for a conv
    kernel, the whole kernel for a Dense one.

    The converter folds BatchNorm's gamma / sigma into a conv kernel per output channel and stores one
    int8 scale per output channel, so a conv kernel clustered to k values keeps k per channel (even in
    the float32 file), not k in all. A Dense kernel has one QAT range and keeps k in the whole kernel.
    Layouts: FULLY_CONNECTED [out, in], CONV_2D [out, h, w, in], DEPTHWISE_CONV_2D [1, h, w, out]
    (the same depthwise rule as ``compressor inspect``).
    """
    from compressor.inspection.weights import unique_values

    if kernel.ndim == 2:
        return unique_values(kernel)
    return unique_values(kernel, axis=3 if kernel.ndim == 4 and kernel.shape[0] == 1 else 0)


def workers(ctx: Context) -> dict:
    """A fixed number of tuning trials with --workers 1, then 2 (same study settings)."""
    job = run_job("compressor.tuning.worker_bench:speedup")
    return job["result"]


def tune_budget(ctx: Context) -> dict:
    """TPE + Hyperband vs a 3x larger random search on digits_cnn, seeds 0-2 (see tune_budget.py)."""
    seeds = [0] if ctx.quick else [0, 1, 2]
    # ~26 min alone on 2 cores (90 random trials of 8 epochs dominate); studies resume if rerun
    job = run_job(
        "benchmarks.tune_budget:tune_vs_random", timeout=3 * 3600, work=str(ctx.work / "tune_budget"), seeds=seeds
    )
    return {"wall_s": round(job["wall_s"], 1), **job["result"]}


def demo(ctx: Context) -> dict:
    job = run_job("benchmarks.ours:demo_job", out=str(ctx.work / "demo"))
    return {"wall_s": round(job["wall_s"], 1), "peak_rss_mb": round(job["peak_rss_mb"]), **job["result"]}


ALL = [
    ("models", prepare_models),
    ("compress", compress_matrix),
    ("latency", latency_rows),
    ("exported_structure", exported_structure),
    ("baselines", baselines),
    ("latency_parity", latency_parity),
    ("throughput", validation_throughput),
    ("footprint", footprint),
    ("workers", workers),
    ("tune_budget", tune_budget),
    ("quant_backends", quant_backends),
    ("mcu", mcu),
    ("storage", storage),
    ("mixed_precision", mixed_precision),
    ("replicas", replicas),
    ("faster", faster),
    ("hard_architectures", hard_architectures),
    ("architectures", architectures),
    ("memory", memory),
    ("demo", demo),
]

# Sections that read nothing from earlier sections (ctx.models / ctx.runs): `--only` may rerun them alone.
STANDALONE = (
    "footprint",
    "workers",
    "tune_budget",
    "quant_backends",
    "mcu",
    "storage",
    "mixed_precision",
    "replicas",
    "faster",
    "hard_architectures",
    "architectures",
    "memory",
    "demo",
)


def targets(bench: dict) -> list[dict]:
    from .targets import evaluate

    return evaluate(bench)
