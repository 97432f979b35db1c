"""TFLM lookup-table weight compression on the session's tiny digits CNN, clustered and plain int8.

Both models come from the real pipeline (``compress``); the compressed flatbuffer runs in the TFLite
Micro interpreter next to the original on the digits test set.
"""

from __future__ import annotations

import numpy as np
import pytest

from compressor.inspection.tflite import TFLiteFile
from compressor.mcu.weight_compression import check_compressed, compress_weights
from compressor.runtime.errors import UserError


@pytest.fixture(scope="module")
def clustered_run(pcq_run):
    """A cluster-qat-int8 run (1 epoch per training step, TFLite only): conftest.py's session run, which
    holds prune-qat-int8 too (so packaging names the artifact)."""
    return pcq_run[0]


@pytest.fixture(scope="module")
def models(clustered_run, int8_run) -> dict[str, bytes]:
    """The clustered and a plain int8 .tflite, as bytes."""
    return {
        "clustered": (clustered_run / "cluster-qat-int8" / "model.tflite").read_bytes(),
        "plain": (int8_run / "int8" / "model.tflite").read_bytes(),
    }


@pytest.fixture(scope="module")
def clustered(models):
    compressed, info = compress_weights(models["clustered"])
    assert compressed is not None, info.get("reason")
    return compressed, info


def _quantized_inputs(model: bytes, x: np.ndarray) -> np.ndarray:
    f = TFLiteFile(model)
    t = f.tensors[f.graph.inputs[0]]
    scale, zero_point = float(t["scales"][0]), int(t["zero_points"][0])
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)


def test_clustered_dense_kernel_becomes_a_4_bit_lookup_table(models, clustered):
    compressed, info = clustered
    names = [t["name"] for t in info["tensors"]]
    # The 32x128 Dense kernel (4096 of the file's ~9.8 KB) has 16 values: 4-bit indices + one 16-entry table.
    dense = next(t for t in info["tensors"] if "dense" in t["name"])
    assert (dense["bits"], dense["distinct_values"], dense["lut"]) == (4, 16, "per_tensor")
    assert (dense["bytes_before"], dense["bytes_after"]) == (4096, 2048 + 16 + 16)
    # conv1 (72 bytes) is too small to pay for its tables and the ~400 bytes of DECODE metadata.
    assert not any("conv1" in n for n in names)
    assert any("conv1" in r["name"] and r["why"].startswith("would grow the file") for r in info["refused"])
    assert info["flash_bytes_before"] == len(models["clustered"])
    assert info["flash_bytes_after"] == len(compressed) < len(models["clustered"])
    assert info["ratio"] == pytest.approx(len(compressed) / len(models["clustered"]))
    assert info["ratio"] < 0.9  # measured 0.835: 9792 -> 8176 bytes
    ops = [op for op, _, _ in TFLiteFile(compressed).ops]
    assert ops.count("TFLM_DECODE") == len(info["tensors"]) and "FULLY_CONNECTED" in ops


def test_decoding_costs_ram_the_size_of_the_decoded_kernel(clustered):
    ram = clustered[1]["ram"]
    assert ram["arena_bytes_after"] - ram["arena_bytes_before"] == ram["decode_ram_bytes"] > 0
    # In alternate decompression memory: exactly the largest decoded tensor, and a little arena bookkeeping.
    assert ram["alt_decompression_memory_bytes"] == 4096
    assert 0 < ram["arena_bytes_with_alt_memory"] - ram["arena_bytes_before"] < 1024


def test_compressed_outputs_are_identical_in_tflm(models, clustered, digits):
    x = _quantized_inputs(models["clustered"], digits.x_test)
    result = check_compressed(models["clustered"], clustered[0], x)
    assert result["samples"] == len(digits.x_test)
    assert result["identical"] and result["max_abs_diff"] == 0 and result["top1_agreement"] == 1.0


def test_plain_int8_model_is_not_compressed(models):
    compressed, info = compress_weights(models["plain"])
    assert compressed is None
    assert "too many distinct values" in info["reason"]
    dense = next(r for r in info["refused"] if "dense" in r["name"])
    assert dense["why"].startswith("too many distinct values") and "(max 4)" in dense["why"]


def test_narrower_index_than_the_clusters_need_compresses_nothing(models):
    compressed, info = compress_weights(models["clustered"], max_bits=3)
    assert compressed is None and "too many distinct values" in info["reason"]
    with pytest.raises(UserError, match="max_bits must be 1 to 7"):
        compress_weights(models["clustered"], max_bits=8)


def test_float_inputs_are_a_user_error(models, clustered, digits):
    with pytest.raises(UserError, match="quantize them"):
        check_compressed(models["clustered"], clustered[0], digits.x_test)
    with pytest.raises(UserError, match="do not match"):
        check_compressed(models["clustered"], clustered[0], np.zeros((2, 4, 4, 1), np.int8))


def test_package_mcu_ships_the_compressed_weights_on_request(clustered_run, int8_run, tmp_path):
    from compressor.mcu.package_mcu import package_mcu

    offered = package_mcu(clustered_run, tmp_path / "plain", artifact="cluster-qat-int8")
    lut = offered["weight_compression"]
    assert not lut["applied"] and lut["outputs_identical"] and lut["flash_bytes_after"] < lut["flash_bytes_before"]
    assert offered["flash"]["model_bytes"] == lut["flash_bytes_before"] and "TFLM_DECODE" not in offered["ops"]
    shipped = package_mcu(clustered_run, tmp_path / "lut", artifact="cluster-qat-int8", compress_weights=True)
    assert shipped["weight_compression"]["applied"] and "TFLM_DECODE" in shipped["ops"]
    assert (
        shipped["flash"]["model_bytes"]
        == lut["flash_bytes_after"]
        == (tmp_path / "lut" / "model.tflite").stat().st_size
    )
    assert (
        shipped["arena"]["measured_bytes"]
        == lut["decode_ram"]["arena_bytes_after"]
        > offered["arena"]["measured_bytes"]
    )
    assert "resolver.AddDecode()" in (tmp_path / "lut" / "op_resolver.h").read_text()
    assert shipped["accuracy"] == offered["accuracy"]  # the outputs are identical: so is every figure
    with pytest.raises(UserError, match="--compress-weights: .*distinct values"):
        package_mcu(int8_run, tmp_path / "refused", compress_weights=True)
    assert not (tmp_path / "refused").exists()
