"""Hostile user files: each is refused with one UserError line, before it can exhaust memory.

Every input here is tiny on disk and would be huge (or infinitely deep) if taken at its word:
YAML alias bombs, 20,000-level nesting, non-UTF-8 text, labels of 2**40, a gzipped IDX bomb,
NaN/out-of-range manifest numbers and zip entries zipfile cannot read. No TensorFlow is imported.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from compressor.datasets import load_dataset
from compressor.recipes.schema import load_recipe
from compressor.runtime.bundle import open_bundle
from compressor.runtime.errors import UserError
from compressor.runtime.manifest import MIN_RUNTIME, SCHEMA, check_manifest
from compressor.runtime.safe_load import parse_json, parse_yaml
from compressor.tuning.space_file import read_space_file

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
# Nine anchors of nine: 9**9 = 387 million strings if the aliases were expanded.
LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else ', '.join(['lol'] * 9)}]\n" for i in range(9))


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


# ---------------------------------------------------------------- YAML and JSON files


def test_alias_bomb_in_a_recipe_is_refused_by_the_cli(tmp_path: Path):
    bomb = "name: bomb\nsteps:\n  - type: distill\n    params:\n      student_params:\n"
    bomb += "".join("        " + line + "\n" for line in LAUGHS.splitlines())
    bomb += "  - type: int8\n"
    (tmp_path / "bomb.yaml").write_text(bomb)
    result = subprocess.run(
        [BIN / "compressor", "compress", "model", "--recipe", "bomb.yaml", "--out", "out"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "bomb.yaml: line 7: YAML aliases (*l0) are not allowed" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_alias_bomb_in_a_tune_space(tmp_path: Path):
    params = "".join("  " + line + "\n" for line in LAUGHS.splitlines())
    (tmp_path / "space.yaml").write_text("epochs: 2\nparams:\n" + params)
    with pytest.raises(UserError) as error:
        read_space_file(tmp_path / "space.yaml")
    assert "space.yaml: line 4: YAML aliases (*l0) are not allowed" in one_line(error)


@pytest.mark.parametrize("flow", [True, False])
def test_deeply_nested_recipe(tmp_path: Path, flow: bool):
    deep = "[" * 20_000 + "]" * 20_000 if flow else "{a: " * 20_000 + "1" + "}" * 20_000
    (tmp_path / "deep.yaml").write_text(f"name: deep\nsteps: [{{type: int8}}]\ndescription: {deep}\n")
    with pytest.raises(UserError) as error:
        load_recipe(str(tmp_path / "deep.yaml"))
    assert "deep.yaml: line 3: nested more than 64 levels deep" in one_line(error)


def test_recipe_that_is_not_utf8_or_too_big_or_has_twice_a_key(tmp_path: Path):
    (tmp_path / "latin1.yaml").write_bytes("name: x\nsteps: [{type: int8}]\ndescription: café\n".encode("latin-1"))
    with pytest.raises(UserError) as error:
        load_recipe(str(tmp_path / "latin1.yaml"))
    assert one_line(error).endswith("latin1.yaml is not UTF-8 text (byte 0xe9 at offset 46); save it as UTF-8")
    (tmp_path / "big.yaml").write_text("name: big\nsteps: [{type: int8}]\ndescription: " + "x" * (1 << 20) + "\n")
    with pytest.raises(UserError, match=r"big.yaml is larger than 1 MiB; refusing it"):
        load_recipe(str(tmp_path / "big.yaml"))
    (tmp_path / "twice.yaml").write_text("name: x\nsteps: [{type: int8}]\nname: y\n")
    with pytest.raises(UserError, match=r"twice.yaml: line 3: key 'name' appears twice in one mapping"):
        load_recipe(str(tmp_path / "twice.yaml"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[" * 20_000 + "]" * 20_000, "nested more than 64 levels deep"),
        ('{"a": 1, "a": 2}', "key 'a' appears twice in one object"),
        ('{"atol": NaN}', "NaN is not a number JSON allows"),
        ('{"atol": 1e999}', "the number 1e999 is out of range"),
        ('{"n": ' + "9" * 5000 + "}", "is not valid JSON: Exceeds the limit"),
    ],
)
def test_hostile_json(text: str, fragment: str):
    with pytest.raises(UserError) as error:
        parse_json(text, "x.json")
    assert fragment in one_line(error)


def test_safe_loader_still_reads_ordinary_files():
    assert parse_yaml("a: &kept 1\nb: {c: [1, 2.5, x]}\n", "ok.yaml") == {"a": 1, "b": {"c": [1, 2.5, "x"]}}
    assert parse_json('{"a": "[[[{{", "b": [1.5, -2]}', "ok.json") == {"a": "[[[{{", "b": [1.5, -2]}
    assert parse_json(b'\xef\xbb\xbf{"a": 1}', "bom.json") == {"a": 1}


# ---------------------------------------------------------------- data files


def test_label_of_2_to_the_40_is_refused_before_allocating(tmp_path: Path):
    """Run with a 1 GiB address-space limit: building 2**40 class names would die, not refuse."""
    x = np.zeros((6, 4, 4), np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.array([0, 1, 2**40, 0, 1, 0]), x_test=x, y_test=np.zeros(6))
    code = f"""
import resource
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from compressor.datasets import load_dataset
from compressor.runtime.errors import UserError
try:
    load_dataset({str(tmp_path / "d.npz")!r})
except UserError as e:
    print(e)
"""
    result = run_python(code)
    assert result.stdout.strip() == (
        "y_train has label 1099511627776 at index 2; labels must be integer class ids from 0 to 65535"
    ), result.stderr


@pytest.mark.parametrize(
    ("y", "shown"), [(np.array([0, 1, -1, 0, 1, 0]), "-1"), (np.array([0, 1, 1e30, 0, 1, 0]), "1e+30")]
)
def test_negative_and_huge_float_labels(tmp_path: Path, y: np.ndarray, shown: str):
    x = np.zeros((6, 4, 4), np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=np.zeros(6))
    with pytest.raises(UserError) as error:
        load_dataset(str(tmp_path / "d.npz"))
    assert f"y_train has label {shown} at index 2; labels must be integer class ids" in one_line(error)


def test_npy_header_announcing_terabytes_is_refused_before_numpy_allocates(tmp_path: Path):
    x = np.zeros((6, 4, 4), np.uint8)
    np.savez(tmp_path / "ok.npz", x_train=x, y_train=np.arange(6) % 2, x_test=x, y_test=np.arange(6) % 2)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (2**40,)})
    with zipfile.ZipFile(tmp_path / "ok.npz") as src, zipfile.ZipFile(tmp_path / "d.npz", "w") as out:
        for name in src.namelist():
            data = src.read(name)
            out.writestr(name, header.getvalue() + data[128:] if name == "y_test.npy" else data)
    with pytest.raises(UserError) as error:
        load_dataset(str(tmp_path / "d.npz"))
    assert "array 'y_test' in" in one_line(error) and "announces shape (1099511627776,) (8796093022208 bytes)" in (
        str(error.value)
    )


def test_cifar_tar_member_bigger_than_any_batch_is_refused_unread(tmp_path: Path):
    """70 MB of zeros behind a tar header, gzipped to a few KiB: refused from the header alone."""
    path = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        member = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        member.size = 70_000_000
        tar.addfile(member, io.BytesIO(bytes(member.size)))
    with pytest.raises(UserError) as error:
        load_dataset("cifar10", data_dir=str(tmp_path))
    assert "data_batch_1.bin is 70000000 bytes, more than any CIFAR-10 file (61460000 at most)" in one_line(error)


def _gzip_bomb(path: Path, header: bytes, zeros: int) -> None:
    """``header`` then ``zeros`` zero bytes, gzipped: a few hundred KiB on disk."""
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header)
        block = bytes(1 << 20)
        for _ in range(zeros >> 20):
            f.write(block)


def test_gzipped_idx_bomb_is_refused_with_small_peak_memory(tmp_path: Path):
    """10 labels announced, 256 MiB of zeros behind them: refused after reading 11 bytes of body."""
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    _gzip_bomb(path, struct.pack(">II", 0x801, 10), 256 << 20)
    assert path.stat().st_size < 2 << 20
    code = f"""
import resource
from pathlib import Path
from compressor.datasets.idx import LABELS_MAGIC, read_idx
from compressor.runtime.errors import UserError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    read_idx(Path({str(path)!r}), LABELS_MAGIC)
except UserError as e:
    print(e)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""
    result = run_python(code)
    message, grown_mib = result.stdout.strip().splitlines()
    assert "is longer than its header says: header announces (10,) = 10 bytes, found more" in message
    assert int(grown_mib) < 32, f"peak memory grew by {grown_mib} MiB while refusing"


def test_idx_header_announcing_terabytes_is_refused(tmp_path: Path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">IIII", 0x803, 60_000, 65_535, 65_535) + bytes(100)))
    from compressor.datasets.idx import IMAGES_MAGIC, read_idx

    with pytest.raises(UserError) as error:
        read_idx(path, IMAGES_MAGIC)
    assert "announces (60000, 65535, 65535) = 257690173500000 bytes, more than the 4 GiB" in one_line(error)


# ---------------------------------------------------------------- bundles


def _manifest(files: dict[str, bytes]) -> dict:
    tensor = {"name": "x", "shape": [1, 8, 8, 1], "dtype": "float32", "scale": 0.0, "zero_point": 0}
    return {
        "schema": SCHEMA,
        "min_runtime": MIN_RUNTIME,
        "signature": None,
        "created": "2024-01-01T00:00:00Z",
        "model": {"name": "m", "version": "1", "recipe": "float32"},
        "tool": {"name": "compressor", "version": "0"},
        "versions": {},
        "labels": ["a", "b"],
        "labels_file": "labels.txt",
        "preprocessing": {
            "scale": 1.0,
            "mean": [0.0],
            "std": [1.0],
            "layout": "NHWC",
            "channel_order": "gray",
            "input_range": [0, 16],
        },
        "raw_input": {"shape": [8, 8, 1], "dtype": "float64"},
        "models": [
            {
                "file": "model.tflite",
                "format": "tflite",
                "inputs": [tensor],
                "outputs": [{**tensor, "shape": [1, 2]}],
                "host": {"accuracy": 0.9, "size_bytes": 12, "gzip_bytes": 30, "latency": {}},
                "self_test": {"expected": "expected_tflite", "atol": 1e-4},
            }
        ],
        "reference": {"artifact": "float32", "accuracy": 0.9, "data": "digits", "test_samples": 10},
        "samples": {"file": "samples.npz", "count": 16, "raw": "raw", "inputs": "x", "labels": "y"},
        "files": {n: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)} for n, b in files.items()},
    }


DEEP = "[" * 20_000 + "]" * 20_000
FILES = {"model.tflite": b"not a model " * 50, "labels.txt": b"a\nb\n", "samples.npz": b"s" * 64}


def _bundle(path: Path, manifest: dict | None = None, manifest_text: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in FILES.items():
            z.writestr(name, data)
        z.writestr("manifest.json", manifest_text or json.dumps(manifest or _manifest(FILES)))
    return path


def _patch_entry(path: Path, name: str, flag: int | None = None, method: int | None = None, garble: bool = False):
    """Set the flag bits / method of ``name`` in both its local and central headers, or garble its data."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    local = info.header_offset
    central = data.index(b"PK\x01\x02")  # the first central header; walk to this entry's
    while data[central + 46 : central + 46 + len(name)] != name.encode():
        central = data.index(b"PK\x01\x02", central + 4)
    if flag is not None:
        struct.pack_into("<H", data, local + 6, flag)
        struct.pack_into("<H", data, central + 8, flag)
    if method is not None:
        struct.pack_into("<H", data, local + 8, method)
        struct.pack_into("<H", data, central + 10, method)
    if garble:  # BTYPE 11 is reserved in deflate: zlib fails with "invalid block type"
        name_len, extra_len = struct.unpack_from("<HH", data, local + 26)
        start = local + 30 + name_len + extra_len
        data[start] = 0xFF
    path.write_bytes(bytes(data))


def test_hand_made_bundle_opens(tmp_path: Path):
    with open_bundle(_bundle(tmp_path / "ok.zip")) as b:
        assert b.file("model.tflite").read_bytes() == FILES["model.tflite"]


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        (dict(name="model.tflite", flag=0x1), "is corrupt: entry 'model.tflite' is encrypted"),
        (dict(name="manifest.json", flag=0x1), "is corrupt: entry 'manifest.json' is encrypted"),
        (dict(name="model.tflite", method=9), "is corrupt: entry 'model.tflite' uses compression method 9"),
        (dict(name="labels.txt", method=12), "is corrupt: entry 'labels.txt' uses compression method 12"),
        (dict(name="model.tflite", garble=True), "bundle is corrupt: file model.tflite cannot be read"),
        (dict(name="manifest.json", garble=True), "bundle is corrupt: entry manifest.json cannot be read"),
    ],
)
def test_unreadable_zip_entries_are_user_errors(tmp_path: Path, patch: dict, fragment: str):
    path = _bundle(tmp_path / "b.zip")
    _patch_entry(path, **patch)
    with pytest.raises(UserError) as error:
        open_bundle(path)
    assert fragment in one_line(error)


def test_cli_reports_a_corrupt_deflate_stream_with_exit_2(tmp_path: Path):
    path = _bundle(tmp_path / "b.zip")
    _patch_entry(path, "model.tflite", garble=True)
    result = subprocess.run([BIN / "compressor-runtime", "verify", str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and "bundle is corrupt: file model.tflite cannot be read" in result.stderr
    assert "Traceback" not in result.stderr


def test_entries_declaring_gigabytes_are_refused_unread(tmp_path: Path):
    path = _bundle(tmp_path / "b.zip")
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")
    for _ in range(2):  # two entries of 3 GiB each, as a zip bomb's directory would say
        struct.pack_into("<I", data, central + 24, 3 << 30)
        central = data.index(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))
    with pytest.raises(UserError) as error:
        open_bundle(path)
    assert "is corrupt: its entries expand to more than 4 GiB" in one_line(error)


def _set(path: str, value):
    def edit(m: dict) -> None:
        *parents, last = path.split("/")
        for key in parents:
            m = m[int(key)] if isinstance(m, list) else m[key]
        m[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (_set("models/0/self_test/atol", float("nan")), "models[0].self_test.atol: nan is not a finite number"),
        (_set("models/0/self_test/atol", -1e-3), "self_test.atol: -0.001 is out of range; expected 0 to 0.01"),
        (_set("models/0/self_test/atol", 5.0), "models[0].self_test.atol: 5.0 is out of range"),
        (_set("preprocessing/std", [float("inf")]), "preprocessing.std[0]: inf is not a finite number"),
        (_set("versions", {"x": float("nan")}), "versions.x: nan is not a finite number"),
        (_set("samples/count", -3), "samples.count: -3 is out of range"),
        (_set("samples/count", 0), "samples.count: 0 is out of range"),
        (_set("reference/accuracy", 7), "reference.accuracy: 7 is out of range"),
        (_set("raw_input/shape", [8, -8, 1]), "raw_input.shape[1]: -8 is out of range"),
        (_set("raw_input/dtype", "object"), "raw_input.dtype: 'object', expected one of"),
        (_set("models/0/outputs/0/shape", [1, 2**40]), "models[0].outputs[0].shape[1]: 1099511627776 is out of range"),
        (_set("files/samples.npz", {"sha256": "0" * 64, "bytes": -1}), "files.samples.npz: expected"),
        (_set("labels", [str(i) for i in range(70_000)]), "labels (count): 70000 is out of range"),
    ],
)
def test_manifest_numbers_out_of_range(edit, fragment: str):
    manifest = _manifest(FILES)
    edit(manifest)
    with pytest.raises(UserError) as error:
        check_manifest(manifest)
    assert fragment in one_line(error)


def test_quantized_atol_may_be_one_output_step():
    manifest = _manifest(FILES)
    manifest["models"][0]["outputs"][0]["scale"] = 0.5
    manifest["models"][0]["self_test"]["atol"] = 1.01 * 0.5
    assert check_manifest(manifest) is manifest


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (json.dumps(_manifest(FILES)).replace('"atol": 0.0001', '"atol": NaN'), "NaN is not a number JSON allows"),
        (json.dumps({**_manifest(FILES), "versions": "@"}).replace('"@"', DEEP), "nested more than 64 levels deep"),
    ],
)
def test_hostile_manifest_json_in_a_bundle(tmp_path: Path, text: str, fragment: str):
    with pytest.raises(UserError) as error:
        open_bundle(_bundle(tmp_path / "b.zip", manifest_text=text))
    assert f"manifest.json in b.zip: {fragment}" in one_line(error)


@pytest.mark.parametrize("char", ["\x00", "\x7f"])
def test_yaml_with_a_control_character_is_a_user_error(char: str):
    """PyYAML's reader rejects these while the loader is built: found by make fuzz (exit 70 before)."""
    with pytest.raises(UserError, match="is not valid YAML: unacceptable character"):
        parse_yaml(f"name: a{char}b\n", "recipe file r.yaml")


def test_onnx_runtime_writes_nothing_under_home(tmp_path: Path, tiny_run):
    """ONNX Runtime 1.32 drops a telemetry device id in ~/.cache unless told not to (found by make fuzz)."""
    from compressor.export.onnx import tflite_to_onnx
    from compressor.export.tflite import export_float32
    from compressor.pipeline.model_io import load_model

    onnx_path = tflite_to_onnx(
        export_float32(load_model(tiny_run[1]["model_path"]), tmp_path / "m.tflite"), tmp_path / "m.onnx"
    )
    home = tmp_path / "home"
    home.mkdir()
    code = "from compressor.runtime.interpreters import open_model; import sys; open_model(sys.argv[1])"
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code, str(onnx_path)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert list(home.rglob("*")) == []


def test_search_space_whose_steps_are_not_a_list(tmp_path: Path):
    """Found by make fuzz: `steps: .nan` reached a loop over the steps (TypeError, exit 70)."""
    from compressor.tuning.recipe_space import load_search_space

    space = tmp_path / "space.yaml"
    space.write_text("steps: .nan\nconvert:\n  int8: {}\n")
    with pytest.raises(UserError, match=r"steps: must be a valid list"):
        load_search_space(str(space))
