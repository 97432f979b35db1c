"""Crafted and damaged model files: each is a one-line error with exit code 2, never a crash or a traceback.

The .tflite cases edit a real converted model's flatbuffer in place (the same bounds-checked
reader finds the fields to patch); `compressor-runtime` runs in a subprocess so a crash would
show as a signal, not kill the test run.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from compressor.commands.cli import cli
from compressor.pipeline.model_io import detect_kind, load_model
from compressor.pipeline.model_safety import refuse_untrusted_code
from compressor.runtime.errors import UserError
from compressor.runtime.flatbuffer import root
from compressor.runtime.sandbox import trial_run, vouch
from compressor.runtime.tflite_check import check_tflite_file

RUNTIME = str(Path(sys.executable).with_name("compressor-runtime"))


@pytest.fixture(scope="module")
def dense_tflite(tmp_path_factory) -> Path:
    """Input (4,) -> Dense(4) -> Dense(4) -> Softmax, biases of ones: a bias buffer is exactly one input's bytes."""
    from compressor.export.tflite import convert
    from compressor.keras_shim import keras
    from compressor.pipeline.model_io import LoadedModel

    inp = keras.Input((4,), name="x")  # named: the auto-name counts every Input the session built
    model = keras.Model(inp, keras.layers.Softmax()(keras.layers.Dense(4)(keras.layers.Dense(4)(inp))))
    model.set_weights([w if w.ndim > 1 else np.ones(w.shape, "float32") for w in model.get_weights()])
    path = tmp_path_factory.mktemp("crafted") / "dense.tflite"
    path.write_bytes(convert(LoadedModel(path, "keras-savedmodel", model, (4,), (4,)), "float32", None, "float32"))
    return path


def _graph(content: bytes):
    return root(content).tables(2)[0]  # Model.subgraphs[0]


def _patch(src: Path, out: Path, edit) -> Path:
    content = bytearray(src.read_bytes())
    edit(content, _graph(bytes(content)))
    out.write_bytes(bytes(content))
    return out


def _bias_buffer(content: bytes) -> int:
    tensors = _graph(content).tables(0)
    return next(t.scalar(2, "<I") for t in tensors if t.numbers(0, "i") == (4,))


def _constant_input(content, graph):
    struct.pack_into("<I", content, graph.tables(0)[0].position(2), _bias_buffer(bytes(content)))


def _inflated_shape(content, graph):
    kernel = next(t for t in graph.tables(0) if t.numbers(0, "i") == (4, 4))
    start, _ = kernel.vector(0, 4)
    struct.pack_into("<2i", content, start, 4, 40000)


def _missing_buffer(content, graph):
    struct.pack_into("<I", content, graph.tables(0)[1].position(2), 999)


def _opcode_out_of_range(content, graph):
    softmax = graph.tables(3)[-1]  # opcode index 1: stored (index 0 is the default, left out)
    struct.pack_into("<I", content, softmax.position(0), 99)


def _tensor_index_out_of_range(content, graph):
    start, _ = graph.tables(3)[0].vector(1, 4)  # operator 0's inputs
    struct.pack_into("<i", content, start, 12345)


CASES = {
    "constant_input": (_constant_input, "graph input 'serving_default_x:0' is a constant tensor"),
    "inflated_shape": (_inflated_shape, "is FLOAT32 [4, 40000] (640000 bytes) but its buffer holds 64 bytes"),
    "missing_buffer": (_missing_buffer, "points at buffer 999, but the file has"),
    "opcode_out_of_range": (_opcode_out_of_range, "has opcode index 99, but the file has"),
    "tensor_out_of_range": (_tensor_index_out_of_range, "names a tensor index out of range"),
}


@pytest.fixture(scope="module")
def crafted(dense_tflite, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    root_dir = tmp_path_factory.mktemp("crafted_files")
    files = {n: (_patch(dense_tflite, root_dir / f"{n}.tflite", edit), msg) for n, (edit, msg) in CASES.items()}
    cut = root_dir / "truncated.tflite"
    cut.write_bytes(dense_tflite.read_bytes()[: dense_tflite.stat().st_size * 2 // 3])
    files["truncated"] = (cut, "is not a valid .tflite: the file is corrupt or truncated")
    return files


def _runtime(*args) -> subprocess.CompletedProcess:
    return subprocess.run([RUNTIME, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_the_untouched_model_passes_check_and_bench(dense_tflite):
    model = check_tflite_file(dense_tflite)
    assert len(model.subgraphs) == 1 and len(model.subgraphs[0].operators) == 3
    done = _runtime("bench", dense_tflite, "--runs", "5", "--warmup", "1")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("case", [*CASES, "truncated"])
def test_runtime_refuses_crafted_tflite(crafted, case):
    path, message = crafted[case]
    for command in ("bench", "validate"):
        done = _runtime(command, path)
        assert done.returncode == 2, (command, done.returncode, done.stderr)  # a signal would be negative
        assert message in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize("case", [*CASES, "truncated"])
def test_inspect_and_validate_refuse_crafted_tflite(crafted, case):
    path, message = crafted[case]
    for args in (["inspect", str(path)], ["validate", str(path), "--runs", "5"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output


def test_a_crash_in_the_trial_run_is_a_one_line_error(crafted):
    """Skipping the structural check, the constant-input file kills LiteRT: only the child dies."""
    with pytest.raises(UserError, match=r"crashed the TFLite interpreter \(SIGSEGV\) in a trial run") as err:
        trial_run(crafted["constant_input"][0])
    assert "\n" not in str(err.value)


def test_a_vouch_covers_only_the_file_this_process_wrote(crafted, tmp_path):
    """The converter's own output skips the trial run; the same bytes moved or touched are tried again."""
    own = tmp_path / "own.tflite"
    own.write_bytes(crafted["constant_input"][0].read_bytes())
    vouch(own)
    trial_run(own)  # vouched: no child, so the crash inside is not reached
    stat = own.stat()
    os.utime(own, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # rewritten since the vouch
    with pytest.raises(UserError, match=r"\(SIGSEGV\) in a trial run"):
        trial_run(own)
    moved = own.rename(tmp_path / "moved.tflite")
    with pytest.raises(UserError, match=r"\(SIGSEGV\) in a trial run"):
        trial_run(moved)


def test_absurd_dims_are_refused(dense_tflite, tmp_path):
    def huge(content, graph):
        start, _ = graph.tables(0)[0].vector(0, 4)  # the input's shape (1, 4), no buffer behind it
        struct.pack_into("<2i", content, start, 1 << 30, 1 << 30)

    def negative(content, graph):
        start, _ = graph.tables(0)[0].vector(0, 4)
        struct.pack_into("<2i", content, start, 1, -4)

    with pytest.raises(UserError, match=r"absurd shape \[1073741824, 1073741824\]"):
        check_tflite_file(_patch(dense_tflite, tmp_path / "huge.tflite", huge))
    with pytest.raises(UserError, match="negative dimension"):
        check_tflite_file(_patch(dense_tflite, tmp_path / "neg.tflite", negative))


def test_shared_vectors_cannot_multiply_the_parse():
    """1,000 table entries all pointing at one 200 KB vector: refused after ~4x the file, not read 1,000 times."""
    import flatbuffers

    from compressor.runtime.flatbuffer import Corrupt

    b = flatbuffers.Builder(0)
    b.StartVector(4, 50_000, 4)
    for _ in range(50_000):
        b.PrependInt32(1)
    big = b.EndVector()
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, big, 0)
    shared = b.EndObject()
    b.StartVector(4, 1000, 4)
    for _ in range(1000):
        b.PrependUOffsetTRelative(shared)
    entries = b.EndVector()
    b.StartObject(1)
    b.PrependUOffsetTRelativeSlot(0, entries, 0)
    b.Finish(b.EndObject())
    with pytest.raises(Corrupt, match="over and over"):
        [t.numbers(0, "i") for t in root(bytes(b.Output())).tables(0)]


# --- Keras files: code in the config is found by parsing it, damaged HDF5 is a corrupt model ---


@pytest.fixture(scope="module")
def nested_lambda(tmp_path_factory) -> dict[str, Path]:
    """A Lambda inside a Sequential inside a TimeDistributed wrapper, saved in the three formats."""
    from compressor.keras_shim import keras

    root_dir = tmp_path_factory.mktemp("nested_lambda")
    inner = keras.Sequential([keras.layers.Lambda(lambda t: t * 2.0)], name="inner")
    inp = keras.Input((3, 4))
    x = keras.layers.TimeDistributed(inner)(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    paths = {"savedmodel": root_dir / "sm", "h5": root_dir / "m.h5", "keras": root_dir / "m.keras"}
    for p in paths.values():
        model.save(p)
    return paths


@pytest.mark.parametrize("fmt", ["savedmodel", "h5", "keras"])
def test_nested_lambda_is_refused(nested_lambda, fmt):
    with pytest.raises(UserError, match=r"contains a Lambda layer \('lambda'\).*--trust-code"):
        load_model(nested_lambda[fmt])
    refuse_untrusted_code(nested_lambda[fmt], trust_code=True)  # trusted: no objection


def _encode_proto(fields: list[tuple[int, int | bytes]]) -> bytes:
    def varint(v: int) -> bytes:
        out = b""
        while True:
            out += bytes([(v & 0x7F) | (0x80 if v > 0x7F else 0)])
            v >>= 7
            if not v:
                return out

    body = b""
    for number, value in fields:
        if isinstance(value, bytes):
            body += varint(number << 3 | 2) + varint(len(value)) + value
        else:
            body += varint(number << 3) + varint(value)
    return body


def test_compact_json_lambda_in_keras_metadata_is_refused(nested_lambda, tmp_path):
    """keras_metadata.pb rewritten with compact JSON: the text `"class_name": "Lambda"` is gone, the layer is not."""
    import shutil

    from compressor.pipeline.model_safety import proto_fields

    sm = shutil.copytree(nested_lambda["savedmodel"], tmp_path / "sm")
    nodes = []
    for _, node in proto_fields((sm / "keras_metadata.pb").read_bytes()):
        fields = list(proto_fields(node))
        compact = [
            (n, json.dumps(json.loads(v), separators=(",", ":")).encode() if n == 5 and v else v) for n, v in fields
        ]
        nodes.append((1, _encode_proto(compact)))
    (sm / "keras_metadata.pb").write_bytes(_encode_proto(nodes))
    data = (sm / "keras_metadata.pb").read_bytes()
    assert b'"class_name": "Lambda"' not in data and b'"class_name":"Lambda"' in data
    with pytest.raises(UserError, match="contains a Lambda layer.*--trust-code"):
        load_model(sm)


def test_compact_json_lambda_in_h5_is_refused(nested_lambda, tmp_path):
    import shutil

    import h5py

    h5 = shutil.copy(nested_lambda["h5"], tmp_path / "compact.h5")
    with h5py.File(h5, "r+") as f:
        f.attrs["model_config"] = json.dumps(json.loads(f.attrs["model_config"]), separators=(",", ":"))
    with pytest.raises(UserError, match="contains a Lambda layer.*--trust-code"):
        load_model(h5)


def test_foreign_module_in_keras_config_is_refused(tmp_path):
    import zipfile

    config = {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "activation": {}}}
    config["config"]["activation"] = {"module": "os", "class_name": "function", "config": "system"}
    path = tmp_path / "evil.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
    with pytest.raises(UserError, match="contains an object from module 'os'.*--trust-code"):
        load_model(path)


@pytest.mark.parametrize("damage", ["truncated", "superblock"])
def test_damaged_h5_is_a_corrupt_model(nested_lambda, tmp_path, damage):
    good = nested_lambda["h5"].read_bytes()
    bad = good[: len(good) // 2] if damage == "truncated" else good[:8] + b"\xff" * 40 + good[48:]
    path = tmp_path / "bad.h5"
    path.write_bytes(bad)
    for load in (detect_kind, load_model):
        with pytest.raises(UserError, match="is a corrupt model") as err:
            load(path)
        assert "\n" not in str(err.value)
    result = CliRunner().invoke(cli, ["validate", str(_any_tflite(tmp_path)), "--reference", str(path), "--runs", "5"])
    assert result.exit_code == 2 and "is a corrupt model" in result.output and "Traceback" not in result.output


def _any_tflite(tmp_path: Path) -> Path:
    from compressor.export.tflite import convert
    from compressor.keras_shim import keras
    from compressor.pipeline.model_io import LoadedModel

    inp = keras.Input((8, 8, 1))
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(inp)))
    path = tmp_path / "digits.tflite"
    loaded = LoadedModel(path, "keras-savedmodel", model, (8, 8, 1), (10,))
    path.write_bytes(convert(loaded, "float32", None, "float32"))
    return path
