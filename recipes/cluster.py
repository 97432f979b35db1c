"""Weight clustering (weight sharing): each Dense/Conv2D kernel keeps only ``clusters`` distinct values.

Han et al. 2016, "Deep Compression" (arXiv:1510.00149): the weights W of a layer are partitioned
into k clusters C_1..C_k minimising the within-cluster sum of squares

    argmin_C  sum_i sum_{w in C_i} |w - c_i|^2,

every weight is replaced by its centroid c_i, and fine-tuning trains the centroids (the gradient
of c_i is the sum of the gradients of its weights). A kernel is then k values plus a
log2(k)-bit index per weight: it compresses well (gzip), and a later ``qat`` step keeps the
clusters (CQAT). Built on ``tfmot.clustering.keras.cluster_weights``; wrappers are stripped
before the model leaves the step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from compressor.recipes.base import register
from compressor.recipes.finetune import fit
from compressor.recipes.stepio import write_info
from compressor.recipes.structure import WrapperParams, check_layer_names, fresh_copy, kernel_layers, kernel_stats
from compressor.runtime.errors import UserError

# Keys are recipe-file spellings; values are tfmot's CentroidInitialization attribute names.
CENTROID_INIT = {
    "kmeans++": "KMEANS_PLUS_PLUS",
    "linear": "LINEAR",
    "density-based": "DENSITY_BASED",
    "random": "RANDOM",
}


class ClusterParams(WrapperParams):
    epochs: int = Field(3, ge=1, le=10_000, description="fine-tuning epochs")
    learning_rate: float = Field(1e-4, gt=0, le=10, description="peak learning rate")
    clusters: int = Field(16, ge=2, le=1024, description="distinct values per clustered kernel")
    centroid_init: Literal["kmeans++", "linear", "density-based", "random"] = Field(
        "kmeans++",
        description="initial centroids: kmeans++ | linear (evenly spaced between min and max) | "
        "density-based (CDF quantiles) | random",
    )
    skip_layers: list[str] = Field([], description="layer names left unclustered")
    preserve_sparsity: bool = Field(False, description="keep the zeros of a pruned model (zero stays its own cluster)")


@register(
    "cluster", "weight clustering: k shared values per Dense/Conv2D kernel (Deep Compression)", ClusterParams, "train"
)
def apply(model: Any, data: Any, params: ClusterParams, workdir: Path) -> Any:
    from compressor.keras_shim import keras, tfmot

    clustering = tfmot().clustering.keras
    check_layer_names(model, params.skip_layers, "cluster")
    model = fresh_copy(model, "cluster")
    left = {name: "skip_layers" for name in params.skip_layers}
    layers = []
    for layer in kernel_layers(model, params.skip_layers):
        if layer.kernel.shape.num_elements() <= params.clusters:  # nothing to share
            left[layer.name] = f"{layer.kernel.shape.num_elements()} weights <= {params.clusters} clusters"
        else:
            layers.append(layer.name)
    if not layers:
        raise UserError(
            "cluster: no Dense or Conv2D layer left to cluster "
            f"({', '.join(f'{k}: {v}' for k, v in left.items()) or 'the model has none'})"
        )
    init = getattr(clustering.CentroidInitialization, CENTROID_INIT[params.centroid_init])

    def wrap(layer: Any) -> Any:
        if layer.name not in layers:
            return layer
        return clustering.cluster_weights(
            layer,
            number_of_clusters=params.clusters,
            cluster_centroids_init=init,
            preserve_sparsity=params.preserve_sparsity,
        )

    wrapped = keras.models.clone_model(model, clone_function=wrap)
    fit(wrapped, data, params, workdir)
    clustered = clustering.strip_clustering(wrapped)
    stats = {name: s for name, s in kernel_stats(clustered).items() if name in layers}
    write_info(
        workdir,
        {
            "clusters": params.clusters,
            "centroid_init": params.centroid_init,
            "preserve_sparsity": params.preserve_sparsity,
            "clustered_layers": stats,
            "left_unclustered": left,
            "note": "clustering shrinks the gzip-compressed file, not the raw .tflite",
        },
    )
    return clustered
