"""The device distribution: `pip install ./runtime` into a fresh venv pulls numpy + ai-edge-litert, never TF.

One test, because it is slow (~30 s: a venv, a wheel build, an install from the package registry or
pip's cache). It records the installed size, which the README quotes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
NEVER = {"tensorflow", "tensorflow-cpu", "tf-keras", "keras", "tensorflow-model-optimization", "tflite-support"}
PACKAGING = {"pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence.pth"}


@pytest.fixture(scope="module")
def bundle(tiny_model_path, tmp_path_factory):
    from compressor.bundle.package import package
    from compressor.pipeline.compress import compress

    out = tmp_path_factory.mktemp("device") / "run"
    compress(tiny_model_path, ["int8"], out, latency_runs=5)
    return Path(package(out, out.parent / "bundle.zip")["bundle"])


def sh(*cmd, timeout=600):
    # Run outside the repository: `python -c "import compressor"` would find ./compressor otherwise.
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, cwd="/")


def du_mb(path: Path, skip=frozenset()) -> float:
    total = 0
    for top in path.iterdir():
        if top.name in skip or top.name.split("-")[0] in skip:
            continue
        files = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file() and not p.is_symlink()]
        total += sum(p.stat().st_size for p in files)
    return total / 2**20


def test_pip_install_runtime_on_a_device_without_tensorflow(bundle, tmp_path):
    source = tmp_path / "runtime"  # a copy: an in-tree build would leave build/ and *.egg-info in the repo
    shutil.copytree(RUNTIME, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    venv = tmp_path / "device-venv"
    base = getattr(sys, "_base_executable", sys.executable)
    assert sh(base, "-m", "venv", venv).returncode == 0
    py, bin_dir = venv / "bin" / "python", venv / "bin"
    started = time.perf_counter()
    done = sh(py, "-m", "pip", "install", "--disable-pip-version-check", "--quiet", source)
    install_s = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-2000:]

    installed = {
        d["name"].lower().replace("_", "-") for d in json.loads(sh(py, "-m", "pip", "list", "--format", "json").stdout)
    }
    assert {"compressor-runtime", "numpy", "ai-edge-litert"} <= installed
    assert not NEVER & installed and "onnxruntime" not in installed  # onnxruntime only with [onnx]
    requires = json.loads(
        sh(py, "-c", "import json, importlib.metadata as m; print(json.dumps(m.requires('compressor-runtime')))").stdout
    )
    assert sorted(requires) == ["ai-edge-litert>=2.3", "numpy", 'onnxruntime; extra == "onnx"']
    for module in ("tensorflow", "compressor"):  # stand-alone: neither TF nor the toolchain is there
        probe = sh(py, "-c", f"import {module}")
        assert probe.returncode == 1 and f"No module named '{module}'" in probe.stderr

    assert sh(bin_dir / "compressor-runtime", "verify", bundle).returncode == 0
    started = time.perf_counter()
    done = sh(bin_dir / "compressor-runtime", "validate", bundle, "--json", "--quiet")
    validate_s = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["self_test"]["passed"] and report["self_test"]["max_abs_diff"] == 0.0
    assert report["versions"]["compressor-runtime"] == "0.1.0" and "compressor" not in report["versions"]
    no_onnx = sh(bin_dir / "compressor-runtime", "validate", bundle, "--model", "onnx")
    assert no_onnx.returncode == 2 and "pip install onnxruntime" in no_onnx.stderr and "Traceback" not in no_onnx.stderr

    site = next((venv / "lib").glob("python3*/site-packages"))
    size_mb, runtime_only_mb = du_mb(site), du_mb(site, PACKAGING)
    print(
        f"\ndevice install: {install_s:.0f} s; site-packages {size_mb:.0f} MB, without pip/setuptools "
        f"{runtime_only_mb:.0f} MB; `compressor-runtime validate bundle.zip` {validate_s:.2f} s wall"
    )
    assert runtime_only_mb < 250  # numpy + ai-edge-litert and their small deps; TensorFlow alone is > 500 MB
    assert validate_s < 3.0
