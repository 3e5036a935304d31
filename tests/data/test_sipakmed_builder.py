"""The TFDS builder on the synthetic replica: content, layouts, variants and every bad input."""

import os
import shutil
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from cervix_jax.data import CLASS_NAMES, DataError, ManualDownloadError, annotations, synthetic
from cervix_jax.data.sipakmed import sipakmed_dataset_builder as sb
from tests.data.conftest import (
    IMAGE_SIZE,
    IMAGES_PER_CLASS,
    assert_same_records,
    build,
    failed_build_message,
    records,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DUMMY = os.path.join(REPO, "cervix_jax", "data", "sipakmed", "dummy_data")


def _bmp(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _class_dir(raw, class_name):
    return raw / f"im_{class_name}" / f"im_{class_name}"


def test_exact_api_builds_full_and_reads_without_tensorflow(prepared, raw_dir):
    raw, _ = raw_dir
    full = records("sipakmed/full", prepared)
    expected = {f"{c}/{i:03d}" for c in CLASS_NAMES for i in range(1, IMAGES_PER_CLASS + 1)}
    assert set(full) == expected
    width, height = IMAGE_SIZE
    for image_id, r in full.items():
        class_name, stem = image_id.split("/")
        folder = _class_dir(raw, class_name)
        assert r["label"] == CLASS_NAMES.index(class_name)
        assert r["group_id"].decode() == image_id
        assert list(r["original_size"]) == [height, width]
        np.testing.assert_array_equal(r["image"], _bmp(folder / f"{stem}.bmp"))
        cyt_files = sorted(folder.glob(f"{stem}_cyt*.dat"))
        polygons = annotations.unpack_polygons(r["cytoplasm_vertices"], r["cytoplasm_lengths"])
        assert len(polygons) == len(cyt_files) > 0
        for got, path in zip(polygons, cyt_files, strict=True):
            np.testing.assert_allclose(got, annotations.parse_dat(path.read_bytes()), atol=1e-4)
        nuclei = annotations.unpack_polygons(r["nucleus_vertices"], r["nucleus_lengths"])
        assert len(nuclei) == len(polygons)
        np.testing.assert_array_equal(
            r["cell_mask"][..., 0], annotations.rasterize(polygons, height, width)
        )
        np.testing.assert_array_equal(
            r["nucleus_mask"][..., 0], annotations.rasterize(nuclei, height, width)
        )
        assert r["nucleus_mask"].sum() < r["cell_mask"].sum()
    assert "tensorflow" not in sys.modules


def test_cropped_ids_groups_images_and_polygons(prepared, raw_dir):
    raw, counts = raw_dir
    cropped = records("sipakmed/cropped", prepared)
    assert len(cropped) == sum(c["cropped"] for c in counts.values())
    for class_name in CLASS_NAMES:
        mine = [k for k in cropped if k.startswith(class_name + "/")]
        assert len(mine) == counts[class_name]["cropped"]
    r = cropped["Parabasal/002_01"]
    assert r["group_id"].decode() == "Parabasal/002"
    assert r["label"] == CLASS_NAMES.index("Parabasal")
    crop_dir = _class_dir(raw, "Parabasal") / "CROPPED"
    np.testing.assert_array_equal(r["image"], _bmp(crop_dir / "002_01.bmp"))
    np.testing.assert_allclose(
        r["cytoplasm_vertices"],
        annotations.parse_dat((crop_dir / "002_01_cyt.dat").read_text()),
        atol=1e-4,
    )
    assert list(r["cytoplasm_lengths"]) == [len(r["cytoplasm_vertices"])]
    # Every crop's group is a full image of the same class.
    full_ids = set(records("sipakmed/full", prepared))
    assert {v["group_id"].decode() for v in cropped.values()} <= full_ids


def test_masked_is_full_with_background_set_to_zero(prepared):
    full = records("sipakmed/full", prepared)
    masked = records("sipakmed/masked", prepared)
    assert set(full) == set(masked)
    for image_id, m in masked.items():
        inside = m["cell_mask"][..., 0] > 0
        assert 0 < inside.mean() < 1
        np.testing.assert_array_equal(m["image"][inside], full[image_id]["image"][inside])
        assert not m["image"][~inside].any()


def test_large_images_are_stored_resized_with_polygons_scaled(tmp_path, raw_dir):
    raw, _ = raw_dir
    config = sb.SipakmedConfig(name="full_small", cells="full", max_shorter_side=48)
    builder = sb.Builder(config=config, data_dir=str(tmp_path))
    with pytest.warns(UserWarning, match="found 2 full images"):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(raw))
        )
    source = builder.as_data_source(split="train")
    r = next(
        x for x in (source[i] for i in range(len(source))) if x["image_id"] == b"Koilocytotic/001"
    )
    assert r["image"].shape == (48, 64, 3)
    assert list(r["original_size"]) == [96, 128]
    folder = _class_dir(raw, "Koilocytotic")
    original = annotations.parse_dat((folder / "001_cyt01.dat").read_text())
    polygons = annotations.unpack_polygons(r["cytoplasm_vertices"], r["cytoplasm_lengths"])
    np.testing.assert_allclose(polygons[0], original * 0.5, atol=1e-4)
    np.testing.assert_array_equal(r["cell_mask"][..., 0], annotations.rasterize(polygons, 48, 64))
    # A 2x box reduction of the BMP.
    expected = np.asarray(Image.fromarray(_bmp(folder / "001.bmp")).resize((64, 48), Image.BOX))
    np.testing.assert_array_equal(r["image"], expected)


def test_zipped_flat_copy_gives_the_same_dataset(tmp_path, prepared):
    raw = tmp_path / "raw"
    synthetic.write_synthetic_sipakmed(
        raw, IMAGES_PER_CLASS, seed=0, image_size=IMAGE_SIZE, layout="flat", archive="zip"
    )
    # Add macOS resource forks, which must be ignored.
    with zipfile.ZipFile(raw / "im_Parabasal.zip", "a") as zf:
        zf.writestr("__MACOSX/im_Parabasal/CROPPED/._001_01.bmp", b"junk")
    build("sipakmed/full", tmp_path / "data", raw)
    assert_same_records(
        records("sipakmed/full", tmp_path / "data"), records("sipakmed/full", prepared)
    )


def test_count_mismatch_warns_with_class_and_both_numbers(tmp_path, raw_dir):
    with pytest.warns(UserWarning) as record:
        tfds.builder("sipakmed/full", data_dir=str(tmp_path)).download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(raw_dir[0]))
        )
    messages = [str(w.message) for w in record]
    assert any("'Dyskeratotic': found 2 full images" in m and "has 223" in m for m in messages), (
        messages
    )
    assert any("'Superficial-Intermediate'" in m and "has 126" in m for m in messages)


# ------------------------------------------------------------------------------------------
# Bad inputs: clear errors, and nothing left behind in the data directory.


@pytest.fixture
def raw_copy(tmp_path, raw_dir):
    target = tmp_path / "raw"
    shutil.copytree(raw_dir[0], target)
    return target


def test_missing_manual_dir(tmp_path):
    message = failed_build_message(
        tmp_path / "data", tmp_path / "nowhere", AssertionError, "does not exist or is empty"
    )
    assert "im_Dyskeratotic.7z" in message and "sipakmed.html" in message


def test_missing_class_folder(tmp_path, raw_copy):
    shutil.rmtree(raw_copy / "im_Parabasal")
    message = failed_build_message(
        tmp_path / "data", raw_copy, ManualDownloadError, "class 'Parabasal' not found"
    )
    assert "im_Parabasal/" in message and "im_Parabasal.zip" in message
    assert "im_Koilocytotic" in message  # what was found there
    assert "sipakmed.html" in message


def test_malformed_dat_names_file_and_line(tmp_path, raw_copy):
    # The last class, so that examples of the other classes were already being written.
    path = _class_dir(raw_copy, "Superficial-Intermediate") / "002_cyt01.dat"
    lines = path.read_text().splitlines()
    lines[2] = "12.5;oops"
    path.write_text("\n".join(lines) + "\n")
    message = failed_build_message(tmp_path / "data", raw_copy, DataError, "line 3")
    assert str(path) in message and "'12.5;oops'" in message


def test_unreadable_bmp_names_file(tmp_path, raw_copy):
    path = _class_dir(raw_copy, "Metaplastic") / "CROPPED" / "001_01.bmp"
    path.write_bytes(b"BM not really a bitmap")
    message = failed_build_message(
        tmp_path / "data", raw_copy, DataError, "cannot be decoded as an image", config="cropped"
    )
    assert str(path) in message


def test_missing_cropped_folder(tmp_path, raw_copy):
    folder = _class_dir(raw_copy, "Koilocytotic")
    os.rename(folder / "CROPPED", folder / "crops")
    message = failed_build_message(
        tmp_path / "data", raw_copy, DataError, "exactly one 'CROPPED/' folder"
    )
    assert "im_Koilocytotic" in message and "found none" in message


def test_corrupt_zip(tmp_path, raw_copy):
    shutil.rmtree(raw_copy / "im_Metaplastic")
    (raw_copy / "im_Metaplastic.zip").write_bytes(b"PK not a zip")
    failed_build_message(
        tmp_path / "data", raw_copy, DataError, "im_Metaplastic.zip: cannot be opened"
    )


def test_failed_build_keeps_other_prepared_configs(tmp_path, raw_copy):
    data_dir = tmp_path / "data"
    build("sipakmed/full", data_dir, raw_copy)
    (_class_dir(raw_copy, "Dyskeratotic") / "CROPPED" / "001_01_nuc.dat").write_text("1,2\n")
    with pytest.raises(DataError, match="001_01_nuc.dat"):
        build("sipakmed/cropped", data_dir, raw_copy)
    assert sorted(os.listdir(data_dir / "sipakmed")) == [".config", "full"]
    assert len(tfds.data_source("sipakmed/full", split="train", data_dir=str(data_dir))) == 10


# ------------------------------------------------------------------------------------------
# The builder folder: dummy data and the `tfds build` command.


def test_dummy_data_is_the_generator_output(tmp_path):
    synthetic.write_synthetic_sipakmed(tmp_path, 1, 0, image_size=(96, 72), layout="flat")
    for root, _, files in os.walk(DUMMY):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), DUMMY)
            with open(os.path.join(root, f), "rb") as a, open(tmp_path / rel, "rb") as b:
                assert a.read() == b.read(), (
                    f"{rel} differs from the generator's output; regenerate dummy_data with "
                    "write_synthetic_sipakmed(DUMMY, 1, 0, image_size=(96, 72), layout='flat')"
                )


def test_tfds_build_command_on_the_builder_folder(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cervix_jax.data.sipakmed",
            "build",
            "cervix_jax/data/sipakmed",
            f"--manual_dir={DUMMY}",
            f"--data_dir={tmp_path}",
            "--config=cropped",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    source = tfds.data_source("sipakmed/cropped", split="train", data_dir=str(tmp_path))
    assert len(source) == 14 + 3 + 6 + 7 + 3


def test_class_folders_one_level_down_are_found(tmp_path, raw_dir):
    manual = tmp_path / "manual"
    shutil.copytree(raw_dir[0], manual / "SIPaKMeD")
    build("sipakmed/full", tmp_path / "data", manual)
    assert len(records("sipakmed/full", tmp_path / "data")) == 5 * IMAGES_PER_CLASS


def test_missing_nucleus_contour_warns_naming_the_image(tmp_path, raw_copy):
    os.remove(_class_dir(raw_copy, "Metaplastic") / "002_nuc01.dat")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tfds.builder("sipakmed/full", data_dir=str(tmp_path / "data")).download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(raw_copy))
        )
    messages = [str(w.message) for w in caught]
    assert any("002.bmp: cells [1] lack a cytoplasm or nucleus contour" in m for m in messages)
    r = records("sipakmed/full", tmp_path / "data")["Metaplastic/002"]
    assert len(r["nucleus_lengths"]) == len(r["cytoplasm_lengths"]) - 1
