"""tools/predict.py, tools/embed.py and tools/attribute.py --images on image files.

The test images of the session's tiny workdir (trained on 4 devices) are written as the files a
microscope user has: PNG, JPEG (quality 95) and 48-bit TIFF, at their stored size (512x384,
larger than the 32-pixel input: the tools resize and crop them). predict.py classifies them in a
1-device process. PNG and TIFF are lossless (TIFF holds x * 257, whose top 8 bits are x), so
they must give the run's own test logits; JPEG is lossy: its images differ from the run's by
about one grey level on average (asserted below 1.5), which moves this model's probabilities
by well under 0.02 (asserted), and its predicted class may flip only where two classes are
that close: at most one image of the four may differ.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cervix_jax import analysis, data, train
from tests.image_files import write_rgb16_tiff

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUFFIXES = ("png", "jpg", "tif")


def _run(tool: str, *args: str, devices: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(devices)}
    command = [sys.executable, os.path.join(REPO, "tools", tool), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def test_files(tiny_trained_workdir, tmp_path_factory):
    """``(folder, {image_id: stem})``: the test split's stored images as .png, .jpg, .tif."""
    config = train.load_config_json(tiny_trained_workdir)
    module = data.build_data_module(config, tiny_trained_workdir)
    folder = tmp_path_factory.mktemp("test_images")
    stems = {}
    for index in module.splits["test"]:
        record = module.source[int(index)]
        image = np.asarray(Image.open(io.BytesIO(record["image"])).convert("RGB"))
        image_id = str(module.metadata.image_ids[int(index)])
        stems[image_id] = stem = image_id.replace("/", "_")
        Image.fromarray(image).save(folder / f"{stem}.png")
        Image.fromarray(image).save(folder / f"{stem}.jpg", quality=95)
        write_rgb16_tiff(folder / f"{stem}.tif", image.astype(np.uint16) * 257)
    return folder, stems


@pytest.mark.slow
def test_predict_on_files_in_one_device_classifies_as_the_run(
    tiny_trained_workdir, test_files, tmp_path
):
    folder, stems = test_files
    out = tmp_path / "predictions.json"
    done = _run(
        "predict.py",
        f"--workdir={tiny_trained_workdir}",
        f"--images={folder}",
        f"--out={out}",
        devices=1,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{3 * len(stems)} images -> {out}" in done.stdout
    assert "predict: 12/12 images" in done.stderr
    result = json.loads(out.read_text())
    rows = {row["path"]: row for row in result["images"]}
    names = result["class_names"]
    saved = np.load(tiny_trained_workdir / "predictions_test.npz")
    expected = analysis.predictions_from_logits(saved["logits"], names)
    model_inputs = analysis.load(tiny_trained_workdir)
    split = model_inputs.read_split("test")
    jpeg_changes, flips = [], 0
    for k, image_id in enumerate(saved["image_id"]):
        stem = stems[str(image_id)]
        for suffix in SUFFIXES:
            row = rows[os.fspath(folder / f"{stem}.{suffix}")]
            probabilities = np.asarray([row[f"p({name})"] for name in names])
            assert row["image_id"] == f"{stem}_{suffix}"
            assert row["probability"] == probabilities.max()
            if suffix != "jpg":  # lossless: the run's own numbers
                assert row["predicted"] == names[int(saved["pred"][k])]
                np.testing.assert_allclose(probabilities, expected.probabilities[k], rtol=1e-5)
                continue
            flips += row["predicted"] != names[int(saved["pred"][k])]
            jpeg_changes.append(np.abs(probabilities - expected.probabilities[k]).max())
            jpeg_input = model_inputs.inputs([folder / f"{stem}.jpg"])[0].astype(float)
            assert np.abs(jpeg_input - split["image"][k]).mean() < 1.5
    print(f"JPEG: largest probability change {max(jpeg_changes):.2e}, {flips} flips")
    assert max(jpeg_changes) < 0.02 and flips <= 1


@pytest.mark.slow
def test_predict_writes_a_csv_and_a_summary(tiny_trained_workdir, test_files, tmp_path):
    folder, stems = test_files
    out = tmp_path / "predictions.csv"
    done = _run(
        "predict.py",
        f"--workdir={tiny_trained_workdir}",
        f"--images={folder}/*.png",
        f"--out={out}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert list(rows[0]) == [
        "path",
        "image_id",
        "predicted",
        "probability",
        *[f"p({c})" for c in data.CLASS_NAMES],
    ]
    assert sorted(r["image_id"] for r in rows) == sorted(stems.values())  # stems are unique
    counts = {name: sum(r["predicted"] == name for r in rows) for name in data.CLASS_NAMES}
    for name, count in counts.items():
        assert f"  {name:<26} {count:6d}  ({100 * count / len(rows):.1f}%)" in done.stdout


@pytest.mark.slow
def test_embed_a_split_and_files(tiny_trained_workdir, test_files, tmp_path):
    model = analysis.load(tiny_trained_workdir)
    split = model.read_split("test")
    out = tmp_path / "split" / "embeddings.npz"
    done = _run("embed.py", f"--workdir={tiny_trained_workdir}", "--split=test", f"--out={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    saved = np.load(out)
    np.testing.assert_allclose(saved["features"], model.embed(split["image"]), rtol=1e-5, atol=1e-6)
    assert saved["label"].tolist() == split["label"].tolist()
    assert saved["image_id"].tolist() == split["image_id"].tolist()
    assert saved["class_names"].tolist() == list(data.CLASS_NAMES)
    with Image.open(out.with_suffix(".png")) as plot:
        assert plot.size[0] > 300 and plot.size[1] > 300

    folder, _ = test_files
    files_out = tmp_path / "files.npz"
    done = _run(
        "embed.py",
        f"--workdir={tiny_trained_workdir}",
        f"--images={folder}/*.png",
        f"--out={files_out}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    files = np.load(files_out)
    assert files["features"].shape == saved["features"].shape
    assert (files["label"] == data.UNKNOWN_LABEL).all()
    paths = files["path"].tolist()
    assert paths == sorted(paths) and all(p.endswith(".png") for p in paths)
    np.testing.assert_array_equal(files["predicted"], model.predict(paths).classes)
    assert files_out.with_suffix(".png").exists()


@pytest.mark.slow
def test_attribute_explains_files(tiny_trained_workdir, test_files, tmp_path):
    folder, stems = test_files
    out = tmp_path / "maps"
    done = _run(
        "attribute.py",
        f"--workdir={tiny_trained_workdir}",
        f"--images={folder}/*.tif",
        f"--out={out}",
        "--steps=4",
        "--baseline=black",
        "--deletion_steps=4",
        "--num_images=2",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "attribution_metrics.json").read_text())
    assert metrics["split"] is None and metrics["num_images"] == 2
    first_two = sorted(stems.values())[:2]
    assert sorted(metrics["images"]) == first_two
    for stem in first_two:
        entry = metrics["images"][stem]
        assert entry["source"] == os.fspath(folder / f"{stem}.tif")
        assert entry["label"] is None and entry["label_name"] is None
        assert entry["predicted_name"] == data.CLASS_NAMES[entry["predicted"]]
        assert (out / entry["panel"]).exists() and np.load(out / entry["map"]).shape == (32, 32, 3)
        for key in ("localization_cells", "localization_nuclei", "pointing_game"):
            assert metrics[key]["per_image"][stem] is None
        assert metrics["deletion_auc"]["per_image"][stem] is not None
    assert "images of image files" in (out / "attribution_metrics.md").read_text()
