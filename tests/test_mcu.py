"""`compressor package --target mcu`: TFLite Micro's own interpreter, the arena it needs, C sources that compile."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from compressor.commands.cli import cli
from compressor.mcu import ops, tflm
from compressor.mcu.package_mcu import package_mcu
from compressor.runtime.errors import UserError

CC, CXX = shutil.which("cc"), shutil.which("c++") or shutil.which("g++")


@pytest.fixture(scope="module")
def mcu(int8_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("mcu") / "digits-mcu"
    return out, package_mcu(int8_run, out)


@pytest.fixture(scope="module")
def gelu_run(tmp_path_factory):
    """A full-int8 model with GELU, an op LiteRT runs in int8 and TFLite Micro has no kernel for."""
    from compressor.keras_shim import keras, set_seed
    from compressor.pipeline.compress import compress

    set_seed(0)
    inputs = keras.Input((8, 8, 1), name="input")
    x = keras.layers.Dense(16)(keras.layers.Flatten()(inputs))
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Activation("gelu")(x))
    folder = tmp_path_factory.mktemp("gelu")
    keras.Model(inputs, outputs).save(folder / "model", save_format="tf")
    compress(folder / "model", ["int8"], folder / "run", data="digits", overrides=["export.formats=[tflite]"])
    return folder / "run"


def test_tflm_accuracy_equals_litert_on_the_test_split(mcu, int8_run):
    out, info = mcu
    acc = info["accuracy"]
    report = json.loads((int8_run / "report.json").read_text())
    int8 = next(r for r in report["artifacts"] if r["artifact"] == "int8" and r["format"] == "tflite")
    assert info["artifact"] == "int8" and acc["samples"] == sum(map(sum, int8["confusion_matrix"]))
    assert acc["litert"] == pytest.approx(int8["accuracy"], abs=1e-12)  # the same file, the run's own figure
    # TFLM runs reference kernels, LiteRT optimized ones: they may round one step apart, which can
    # flip a near-tie; the accuracy itself must not move on this split.
    assert acc["tflm"] == acc["litert"] and acc["top1_agreement"] >= 0.99
    assert 0 <= acc["max_abs_diff_int8"] <= 2 and 0 <= acc["outputs_differing"] <= acc["samples"]
    assert json.loads((out / "mcu.json").read_text()) == json.loads(json.dumps(info))
    if acc["outputs_differing"]:  # traced op by op on one sample that differs
        explanation = acc["explanation"]
        rows, first = explanation["ops"], explanation["first_divergence"]
        assert [r["op"] for r in rows][-1] == "SOFTMAX" and all(r["values"] > 0 for r in rows)
        assert first is None or (first["max_abs_diff"] > 0 and first == next(r for r in rows if r["max_abs_diff"]))
        assert "where they part ways | sample" in (out / "README.md").read_text()
    else:
        assert "explanation" not in acc


def test_arena_is_the_least_that_runs(mcu):
    from tflite_micro import runtime

    out, info = mcu
    model = (out / "model.tflite").read_bytes()
    measured = info["arena"]["measured_bytes"]
    sample = np.zeros([1, 8, 8, 1], np.int8)
    interpreter = runtime.Interpreter.from_bytes(model, arena_size=measured)
    interpreter.set_input(sample, 0)
    interpreter.invoke()
    with pytest.raises(RuntimeError):
        runtime.Interpreter.from_bytes(model, arena_size=measured - 16)
    recommended = info["arena"]["recommended_bytes"]
    assert recommended % 1024 == 0 and measured * 1.1 <= recommended < measured * 1.1 + 1024


@pytest.mark.skipif(CC is None or CXX is None, reason="no C/C++ compiler on this machine")
def test_generated_sources_compile_and_hold_the_model(mcu, tmp_path):
    out, info = mcu
    # `cc -c`, the system C compiler driver, as firmware builds invoke it (it compiles .cc as C++).
    subprocess.run([CC, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-c", out / "model_data.cc", "-o",
                    tmp_path / "model_data.o"], check=True)  # fmt: skip
    (tmp_path / "main.cc").write_text(
        '#include <cstdio>\n#include "model_data.h"\n#include "model_settings.h"\n'
        "int main(int, char** argv) {\n"
        '  FILE* f = std::fopen(argv[1], "wb");\n'
        "  std::fwrite(g_model_data, 1, g_model_data_len, f);\n  std::fclose(f);\n"
        '  std::printf("%d %d %d %d %.9g %d %.9g %d %s\\n", kTensorArenaSize, kInputElements, kOutputElements,\n'
        "              (int)(reinterpret_cast<unsigned long>(g_model_data) % 16), kInputScale, kInputZeroPoint,\n"
        "              kOutputScale, kOutputZeroPoint, kCategoryLabels[kCategoryCount - 1]);\n}\n"
    )
    binary = tmp_path / "check"
    subprocess.run([CXX, "-std=c++17", "-Wall", "-Werror", f"-I{out}", tmp_path / "main.cc", tmp_path / "model_data.o",
                    "-o", binary], check=True)  # fmt: skip
    printed = subprocess.run([binary, tmp_path / "dump.bin"], capture_output=True, text=True, check=True).stdout
    assert (tmp_path / "dump.bin").read_bytes() == (out / "model.tflite").read_bytes()
    arena, n_in, n_out, misaligned, in_scale, in_zero, out_scale, out_zero, last_label = printed.split()
    assert int(arena) == info["arena"]["recommended_bytes"] and int(misaligned) == 0
    assert (int(n_in), int(n_out)) == (int(np.prod(info["input"]["shape"])), int(np.prod(info["output"]["shape"])))
    assert (
        float(in_scale) == pytest.approx(info["input"]["scale"], rel=1e-6)
        and int(in_zero) == info["input"]["zero_point"]
    )
    assert float(out_scale) == pytest.approx(info["output"]["scale"], rel=1e-6)
    assert int(out_zero) == info["output"]["zero_point"] and last_label == info["labels"][-1]


def test_op_resolver_lists_exactly_the_models_ops(mcu):
    out, info = mcu
    header = (out / "op_resolver.h").read_text()
    assert info["ops"] == ["CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE", "SOFTMAX"]
    assert "tflite::MicroMutableOpResolver<5>" in header
    for call in ("AddConv2D()", "AddFullyConnected()", "AddMaxPool2D()", "AddReshape()", "AddSoftmax()"):
        assert f"resolver.{call}" in header
    # Names as micro_mutable_op_resolver.h spells them, including the irregular ones.
    expected = {"DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
                "PADV2": "AddPadV2", "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
                "L2_POOL_2D": "AddL2Pool2D", "RELU6": "AddRelu6", "CUMSUM": "AddCumSum",
                "ADD_N": "AddAddN"}  # fmt: skip
    assert {op: ops.method(op) for op in expected} == expected


def test_an_op_tflm_lacks_is_refused_by_name(gelu_run, tmp_path):
    result = CliRunner().invoke(cli, ["package", str(gelu_run), "--target", "mcu", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "TFLite Micro has no kernel for GELU; replace it" in result.output
    assert not (tmp_path / "m").exists()
    with pytest.raises(UserError, match="TFLite Micro has no kernel for GELU"):  # the interpreter says the same
        tflm.run_micro(gelu_run / "int8" / "model.tflite", np.zeros([1, 8, 8, 1], np.int8))


def test_limits_and_wrong_artifacts_are_one_line_errors(int8_run, mcu, tmp_path):
    info = mcu[1]
    runner = CliRunner()

    def refused(*args):
        result = runner.invoke(cli, ["package", str(int8_run), "--target", "mcu", "--out", str(tmp_path / "o"), *args])
        assert result.exit_code == 2 and not (tmp_path / "o").exists(), result.output
        return result.output

    arena_kb = info["arena"]["recommended_bytes"] / 1024
    assert "over --arena-limit-kb" in refused("--arena-limit-kb", str(arena_kb - 1))
    assert "over --flash-limit-kb" in refused("--flash-limit-kb", "10")
    assert "needs a full-int8 model" in refused("--artifact", "float32")
    result = runner.invoke(cli, ["package", str(int8_run), "--out", str(tmp_path / "b.zip"), "--arena-limit-kb", "8"])
    assert result.exit_code == 2 and "apply to --target mcu" in result.output
    ok = runner.invoke(cli, ["package", str(int8_run), "--target", "mcu", "--out", str(tmp_path / "fits"),
                             "--arena-limit-kb", str(arena_kb), "--flash-limit-kb", "1000", "--json"])  # fmt: skip
    assert ok.exit_code == 0 and json.loads(ok.stdout)["arena"] == info["arena"]


def test_recipe_arena_gate_is_measured_on_tflite_micro(tiny_model_path, mcu, tmp_path):
    from compressor.pipeline.compress import compress

    report = compress(tiny_model_path, ["int8", "dynamic"], tmp_path / "run", latency_runs=3,
                      overrides=["gates.max_arena_kb=2", "export.formats=[tflite]"])  # fmt: skip
    rows = {r["artifact"]: r for r in report["artifacts"] if r["format"] == "tflite"}
    int8, dynamic = rows["int8"], rows["dynamic"]
    assert int8["mcu"]["full_int8"] and int8["mcu"]["arena_bytes"] == mcu[1]["arena"]["measured_bytes"]
    kb = int8["mcu"]["recommended_arena_bytes"] / 1024
    assert kb > 2 and int8["gates_failed"] == [f"arena {kb:.1f} KB > 2 KB (TFLite Micro)"]
    assert dynamic["gates_failed"] == ["not full-int8: does not run on TFLite Micro"]
    assert "mcu" not in rows["float32"] and not report["passed"]


def test_without_tflite_micro_the_app_path_works_and_mcu_says_what_to_install(int8_run, tmp_path):
    """tflite-micro is an optional extra: a Python where it cannot be imported still packages for apps."""
    import sys

    script = (
        "import sys; sys.modules['tflite_micro'] = None\n"  # import tflite_micro now raises ImportError
        "from compressor.commands.cli import main; main()\n"
    )

    def run(*args):
        return subprocess.run([sys.executable, "-c", script, "package", str(int8_run), *args],
                              capture_output=True, text=True, cwd=tmp_path)  # fmt: skip

    app = run("--out", str(tmp_path / "b.zip"))
    assert app.returncode == 0 and (tmp_path / "b.zip").is_file(), app.stderr
    micro = run("--target", "mcu", "--out", str(tmp_path / "m"))
    assert micro.returncode == 2 and "pip install 'compressor[mcu]'" in micro.stderr and "Traceback" not in micro.stderr
    assert not (tmp_path / "m").exists()
