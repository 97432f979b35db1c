"""Issue 17: real photo folders. Images of any size are fitted to the model input (resize, centre
crop, pad), converted to its channel count, EXIF orientation applied; recorded with the run and
reproduced on the device (the bundle's self-test fits the original files again)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compressor.datasets import load_dataset
from compressor.datasets.model_input import ModelInput
from compressor.runtime.errors import UserError
from compressor.runtime.image_fit import fit_image, image_spec


def save(path: Path, pixels: np.ndarray, mode: str | None = None, exif_orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels, mode) if mode else Image.fromarray(pixels)
    if exif_orientation is None:
        image.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(path, exif=exif)
    return path


def test_resize_crop_and_pad_geometry():
    wide = np.full((4, 8), 200, np.uint8)  # 8 wide, 4 high
    wide[:, :2] = 0  # the left quarter is black
    image = Image.fromarray(wide)
    # crop: the shorter side already fits; the centre 4 columns (2..5) are cut out: no black left.
    cropped = fit_image(image, image_spec("crop", 4, 4, 1))
    assert cropped.shape == (4, 4, 1) and (cropped == 200).all()
    # pad: scaled to 4x2, centred; rows 0 and 3 are the zero padding.
    padded = fit_image(Image.fromarray(np.full((4, 8), 200, np.uint8)), image_spec("pad", 4, 4, 1))
    assert (padded[[0, 3]] == 0).all() and (padded[1:3] == 200).all()
    # resize: stretched, the black quarter stays a quarter.
    resized = fit_image(image, image_spec("resize", 4, 4, 1))
    assert resized.shape == (4, 4, 1) and resized[:, 0].max() < 100 and (resized[:, 2:] == 200).all()


def test_exif_orientation_is_applied(tmp_path: Path):
    pixels = np.zeros((2, 4), np.uint8)  # stored 4 wide, 2 high
    pixels[0, 0] = 255  # top-left as stored
    path = save(tmp_path / "rotated.jpg", pixels, exif_orientation=6)  # "rotate 90° clockwise to view"
    with Image.open(path) as image:
        upright = fit_image(image, image_spec("resize", 4, 2, 1))  # viewed: 2 wide, 4 high
    assert upright.shape == (4, 2, 1)
    assert int(np.argmax(upright[..., 0].max(axis=0))) == 1  # the bright corner is now top-right
    assert upright[0, 1, 0] > 100 and upright[3, 0, 0] < 100


def test_folder_of_mixed_sizes_and_modes_fits_the_model(tmp_path: Path, seed: int):
    rng = np.random.default_rng(seed)
    for c, name in enumerate(("dark", "light")):
        for i in range(6):
            h, w = rng.integers(5, 30, size=2)
            value = 40 if c == 0 else 210
            pixels = np.full((h, w, 3), value, np.uint8)
            save(tmp_path / "photos" / name / f"{i}.png", pixels if i % 3 else pixels[..., 0], None)
        save(tmp_path / "photos" / name / "alpha.png", np.full((9, 7, 4), value, np.uint8), "RGBA")
    root = str(tmp_path / "photos")
    for channels, order in ((1, "gray"), (3, "RGB"), (4, "RGBA")):
        ds = load_dataset(root, model=ModelInput(shape=(8, 8, channels)), image_fit="crop")
        assert ds.input_shape == (8, 8, channels) and ds.preprocessing.channel_order == order
        assert ds.preprocessing.image == {
            "fit": "crop",
            "size": [8, 8],
            "color": {1: "L", 3: "RGB", 4: "RGBA"}[channels],
            "resample": "bilinear",
            "exif_orientation": True,
        }
        raw, labels = ds.raw_test, ds.y_test
        # Every pixel keeps its class's grey level through crop and colour conversion.
        np.testing.assert_array_equal(raw[..., 0].reshape(len(raw), -1).max(axis=1), np.where(labels, 210, 40))
        np.testing.assert_array_equal(raw[..., 0].reshape(len(raw), -1).min(axis=1), np.where(labels, 210, 40))
        if channels == 4:  # opaque images get alpha 255, the RGBA file keeps its own
            assert set(np.unique(raw[..., 3]).tolist()) <= {40, 210, 255}
    with pytest.raises(UserError, match="takes 2 channels per pixel but image files give 1"):
        load_dataset(root, model=ModelInput(shape=(8, 8, 2)))
    with pytest.raises(UserError, match="image folders give \\(height, width, channels\\) images"):
        load_dataset(root, model=ModelInput(shape=(64,)))


def test_image_bundle_is_reproduced_on_the_device(tmp_path: Path, seed: int):
    """A tiny RGB model on a folder of mixed-size photos: compress, package, and the device self-test
    fits the bundled original files again and gets the host's pixels; --data takes the folder."""
    from compressor.bundle.package import package
    from compressor.keras_shim import keras, set_seed
    from compressor.pipeline.compress import compress
    from compressor.runtime.commands import validate

    rng = np.random.default_rng(seed)
    for c, name in enumerate(("blue", "red")):
        for i in range(12):
            h, w = rng.integers(12, 40, size=2)
            pixels = rng.integers(0, 60, size=(h, w, 3)).astype(np.uint8)
            pixels[..., 2 - 2 * c] += 150
            save(tmp_path / "photos" / name / f"{i:02d}.jpg", pixels)
    set_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.save(tmp_path / "m.keras")
    out = tmp_path / "run"
    report = compress(
        str(tmp_path / "m.keras"),
        ["float16"],
        out,
        data=str(tmp_path / "photos"),
        latency_runs=5,
        overrides=["export.formats=[tflite]"],
        image_fit="pad",
    )
    recorded = json.loads((out / "run.json").read_text())["data"]["preprocessing"]
    assert recorded["image"]["fit"] == "pad" and recorded["mode"] == "none" and report["data"]["test_samples"] == 5
    built = package(out, tmp_path / "b.zip")
    assert built["manifest"]["samples"]["images"] == [f"image_{i}" for i in range(4)]
    device = validate(tmp_path / "b.zip", data=str(tmp_path / "photos"), runs=5, warmup=1)
    assert device["self_test"]["passed"] and device["self_test"]["image_fit"] == {"checked": 4, "failures": []}
    assert device["accuracy"]["samples"] == 24
    # A bundle whose image record was altered no longer reproduces the host's pixels.
    altered = tmp_path / "altered.zip"
    _rewrite_samples(tmp_path / "b.zip", altered)
    bad = validate(altered, runs=5, warmup=1)["self_test"]
    assert not bad["passed"] and "image image_0 fitted here differs" in " ".join(bad["failures"])


def _rewrite_samples(src: Path, dst: Path) -> None:
    """Swap image_0 for image_1 in samples.npz and fix the manifest's hash (unsigned bundle)."""
    import hashlib

    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    with np.load(io.BytesIO(files["samples.npz"])) as arrays:
        arrays = dict(arrays)
    arrays["image_0"] = arrays["image_1"]
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    files["samples.npz"] = buf.getvalue()
    manifest = json.loads(files["manifest.json"])
    manifest["files"]["samples.npz"] = {
        "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
        "bytes": len(buf.getvalue()),
    }
    files["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


def test_device_side_checks_of_the_image_record(tmp_path: Path):
    from compressor.runtime.image_fit import check_image_spec
    from compressor.runtime.preprocess import load_data

    good = image_spec("pad", 8, 6, 3)
    check_image_spec(good, "x")
    for bad in (
        {**good, "fit": "zoom"},
        {**good, "size": [0, 6]},
        {**good, "size": [8.0, 6]},
        {**good, "color": "CMYK"},
    ):
        with pytest.raises(UserError, match="expected"):
            check_image_spec(bad, "manifest.json: preprocessing.image")
    save(tmp_path / "cat" / "a.png", np.zeros((5, 9, 3), np.uint8))
    save(tmp_path / "dog" / "b.png", np.full((9, 5, 3), 99, np.uint8))
    info = {"preprocessing": {"image": good}, "labels": ["cat", "dog"]}
    x, y = load_data(tmp_path, info)
    assert x.shape == (2, 8, 6, 3) and list(y) == [0, 1]
    with pytest.raises(UserError, match="not made from image files"):
        load_data(tmp_path, {"preprocessing": {}, "labels": ["cat", "dog"]})
    with pytest.raises(UserError, match="folder .*cat is not one of the model's labels"):
        load_data(tmp_path, {**info, "labels": ["dog", "owl"]})
