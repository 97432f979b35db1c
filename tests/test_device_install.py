"""The device distribution: `pip install ./runtime` into a fresh venv pulls numpy + ai-edge-litert +
cryptography, never TF, and checks a signed bundle there.

One test, because it is slow (~30 s: a venv, a wheel build, an install from the package registry or
pip's cache). It prints the installed size, which the README quotes (run with -s to see it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compressor.runtime import __version__ as RUNTIME_VERSION

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
NEVER = {"tensorflow", "tensorflow-cpu", "tf-keras", "keras", "tensorflow-model-optimization", "tflite-support"}
PACKAGING = {"pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence.pth"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from compressor.bundle.signing import keygen

    return keygen(tmp_path_factory.mktemp("device-keys") / "release.key")


@pytest.fixture(scope="module")
def bundle(int8_run, keys):
    from compressor.bundle.package import package

    return Path(package(int8_run, int8_run.parent / "device-bundle.zip", sign=keys["private_key"])["bundle"])


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


def test_pip_install_runtime_on_a_device_without_tensorflow(bundle, keys, tmp_path):
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
    assert {"compressor-runtime", "numpy", "ai-edge-litert", "cryptography"} <= installed
    assert not NEVER & installed and "onnxruntime" not in installed  # onnxruntime only with [onnx]
    requires = json.loads(
        sh(py, "-c", "import json, importlib.metadata as m; print(json.dumps(m.requires('compressor-runtime')))").stdout
    )
    assert sorted(requires) == [
        "ai-edge-litert>=2.3",
        "cryptography",
        "numpy",
        'onnxruntime; extra == "onnx"',
        'pillow; extra == "images"',
    ]
    for module in ("tensorflow", "compressor"):  # stand-alone: neither TF nor the toolchain is there
        probe = sh(py, "-c", f"import {module}")
        assert probe.returncode == 1 and f"No module named '{module}'" in probe.stderr

    verified = sh(bin_dir / "compressor-runtime", "verify", bundle, "--key", keys["public_key"])
    assert verified.returncode == 0 and f"signature: verified, Ed25519 key {keys['key_id']}" in verified.stdout
    started = time.perf_counter()
    done = sh(bin_dir / "compressor-runtime", "validate", bundle, "--json", "--quiet", "--key", keys["public_key"])
    validate_s = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["self_test"]["passed"] and report["self_test"]["max_abs_diff"] == 0.0
    assert report["signature"] == {"key_id": keys["key_id"], "verified": True}
    assert report["versions"]["compressor-runtime"] == RUNTIME_VERSION and "compressor" not in report["versions"]
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
