import hashlib
import os
import subprocess
import sys
import zipfile

import numpy as np
import py7zr
import pytest
from PIL import Image

from cervix_jax.data import CLASS_NAMES, DataError, annotations, synthetic
from tests.tree_snapshot import snapshot

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _digest(folder) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_on_disk_format_matches_sipakmed(raw_dir):
    out, counts = raw_dir
    for class_name in CLASS_NAMES:
        folder = out / f"im_{class_name}" / f"im_{class_name}"
        names = set(os.listdir(folder))
        assert {"001.bmp", "002.bmp", "CROPPED"} <= names
        cyt = sorted(n for n in names if n.startswith("001_cyt"))
        nuc = sorted(n for n in names if n.startswith("001_nuc"))
        assert cyt and [n.replace("cyt", "nuc") for n in cyt] == nuc
        with Image.open(folder / "001.bmp") as im:
            assert (im.format, im.mode, im.size) == ("BMP", "RGB", (128, 96))
        crops = sorted(os.listdir(folder / "CROPPED"))
        bmps = [c for c in crops if c.endswith(".bmp")]
        assert len(bmps) == counts[class_name]["cropped"]
        for bmp in bmps:
            stem = bmp[: -len(".bmp")]
            assert f"{stem}_cyt.dat" in crops and f"{stem}_nuc.dat" in crops
        # A crop's contour is its full-image contour moved by the crop's integer offset.
        full_poly = annotations.parse_dat((folder / "001_cyt01.dat").read_bytes())
        crop_poly = annotations.parse_dat((folder / "CROPPED" / "001_01_cyt.dat").read_bytes())
        offset = full_poly - crop_poly
        np.testing.assert_allclose(offset, np.broadcast_to(offset[0], offset.shape), atol=1e-3)
        np.testing.assert_allclose(offset[0], np.round(offset[0]), atol=1e-3)
        with Image.open(folder / "CROPPED" / "001_01.bmp") as crop:
            x0, y0 = np.round(offset[0]).astype(int)
            w, h = crop.size
            with Image.open(folder / "001.bmp") as full:
                np.testing.assert_array_equal(
                    np.asarray(crop), np.asarray(full)[y0 : y0 + h, x0 : x0 + w]
                )
        # Every nucleus lies inside its cytoplasm (SIPaKMeD's contours nest).
        for c, n in zip(cyt, nuc, strict=True):
            c_mask = annotations.rasterize(
                [annotations.parse_dat((folder / c).read_text())], 96, 128
            )
            n_mask = annotations.rasterize(
                [annotations.parse_dat((folder / n).read_text())], 96, 128
            )
            assert (n_mask & ~c_mask.astype(bool)).sum() <= 0.02 * n_mask.sum() + 2


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    kwargs = dict(image_size=(96, 72))
    synthetic.write_synthetic_sipakmed(tmp_path / "a", 1, seed=3, **kwargs)
    synthetic.write_synthetic_sipakmed(tmp_path / "b", 1, seed=3, **kwargs)
    synthetic.write_synthetic_sipakmed(tmp_path / "c", 1, seed=4, **kwargs)
    a, b, c = (_digest(tmp_path / x) for x in "abc")
    assert a == b
    assert a["im_Parabasal/im_Parabasal/001.bmp"] != c["im_Parabasal/im_Parabasal/001.bmp"]


@pytest.mark.parametrize("archive", ["zip", "7z"])
def test_archives_hold_the_same_files_as_the_folders(tmp_path, archive):
    synthetic.write_synthetic_sipakmed(tmp_path / "dir", 1, 0, image_size=(96, 72), layout="flat")
    synthetic.write_synthetic_sipakmed(tmp_path / "a", 1, 0, image_size=(96, 72), archive=archive)
    for class_name in CLASS_NAMES:
        path = tmp_path / "a" / f"im_{class_name}.{archive}"
        extracted = tmp_path / "x" / class_name
        if archive == "zip":
            with zipfile.ZipFile(path) as zf:
                zf.extractall(extracted)
        else:
            with py7zr.SevenZipFile(path) as sz:
                sz.extractall(extracted)
        # Nested inside the archive, as in the official ones: im_X/im_X/...
        assert os.listdir(extracted) == [f"im_{class_name}"]
        inner = extracted / f"im_{class_name}" / f"im_{class_name}"
        assert _digest(inner) == _digest(tmp_path / "dir" / f"im_{class_name}")


def test_writing_another_form_replaces_each_class(tmp_path):
    out = tmp_path / "raw"
    for archive, suffix in ((None, ""), ("7z", ".7z"), ("zip", ".zip"), (None, "")):
        synthetic.write_synthetic_sipakmed(out, 1, 0, image_size=(96, 72), archive=archive)
        expected = [f"im_{c}{suffix}" for c in CLASS_NAMES] + [synthetic.MARKER_FILE]
        assert sorted(os.listdir(out)) == sorted(expected)
    with pytest.raises(ValueError, match="archive must be None, '7z' or 'zip', got 'rar'"):
        synthetic.write_synthetic_sipakmed(out, 1, 0, image_size=(96, 72), archive="rar")


def _nearest_centroid_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out nearest-centroid accuracy on standardised features."""
    x = (features - features.mean(0)) / (features.std(0) + 1e-9)
    correct = 0
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        centroids = np.stack([x[keep & (labels == c)].mean(0) for c in range(5)])
        correct += int(np.argmin(((centroids - x[i]) ** 2).sum(1)) == labels[i])
    return correct / len(x)


def test_global_color_does_not_separate_classes_but_cell_shape_does():
    rng = np.random.default_rng(0)
    color, shape, labels = [], [], []
    for label, class_name in enumerate(CLASS_NAMES):
        for _ in range(16):
            image, cells = synthetic.render_full_image(rng, class_name, 192, 144)
            pixels = image.reshape(-1, 3).astype(np.float64)
            color.append(np.concatenate([pixels.mean(0), pixels.std(0)]))
            areas = [annotations.rasterize([c.cytoplasm], 144, 192).sum() for c in cells]
            nuclei = [annotations.rasterize([c.nucleus], 144, 192).sum() for c in cells]
            shape.append([np.log(np.mean(areas)), np.mean(np.divide(nuclei, areas)), len(cells)])
            labels.append(label)
    labels = np.asarray(labels)
    color_accuracy = _nearest_centroid_accuracy(np.asarray(color), labels)
    shape_accuracy = _nearest_centroid_accuracy(np.asarray(shape), labels)
    # Chance is 0.2; 80 images leave a standard error of about 0.045.
    assert color_accuracy < 0.4, color_accuracy
    assert shape_accuracy > 0.9, shape_accuracy


@pytest.mark.parametrize(
    "form, written",
    [("--layout=flat", "im_Parabasal/001.bmp"), ("--archive=7z", "im_Parabasal.7z")],
)
def test_tool_writes_the_requested_tree(tmp_path, form, written):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tools", "make_synthetic_sipakmed.py"),
            f"--out={tmp_path}",
            "--images_per_class=1",
            "--seed=1",
            "--width=96",
            "--height=72",
            form,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"Parabasal": {"full": 1' in result.stdout
    assert os.path.exists(tmp_path / written)
    assert os.path.exists(tmp_path / synthetic.MARKER_FILE)


@pytest.mark.parametrize("layout", ["bogus"])
def test_bad_layout_is_rejected(tmp_path, layout):
    with pytest.raises(ValueError, match="layout must be"):
        synthetic.write_synthetic_sipakmed(tmp_path, 1, layout=layout)


def _users_sipakmed(folder):
    """A stand-in for a user's own SIPaKMeD folder (and a note of theirs beside it)."""
    inner = folder / "im_Dyskeratotic" / "im_Dyskeratotic"
    inner.mkdir(parents=True)
    (inner / "001.bmp").write_bytes(b"the user's real image")
    (folder / "notes.txt").write_text("mine")
    return snapshot(folder)


def test_generator_refuses_a_folder_it_did_not_write(tmp_path):
    before = _users_sipakmed(tmp_path)
    with pytest.raises(DataError, match=f"{tmp_path}.*not written by the synthetic generator"):
        synthetic.write_synthetic_sipakmed(tmp_path, 1, image_size=(96, 72))
    assert snapshot(tmp_path) == before


def test_generator_refuses_a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("x")
    with pytest.raises(DataError, match="is a file"):
        synthetic.write_synthetic_sipakmed(path, 1, image_size=(96, 72))
    assert path.read_text() == "x"


def test_generator_replaces_its_own_output_and_recovers_from_an_interruption(tmp_path):
    synthetic.write_synthetic_sipakmed(tmp_path, 1, seed=0, image_size=(96, 72))
    assert synthetic.is_complete(tmp_path)
    first = snapshot(tmp_path)
    # An interrupted run leaves the marker saying so: not complete, but still ours.
    marker = tmp_path / synthetic.MARKER_FILE
    marker.write_text(marker.read_text() + "Incomplete: generation was interrupted.\n")
    assert not synthetic.is_complete(tmp_path)
    synthetic.write_synthetic_sipakmed(tmp_path, 1, seed=0, image_size=(96, 72))
    assert synthetic.is_complete(tmp_path)
    assert snapshot(tmp_path) == first


def test_tool_refuses_a_users_folder_in_one_line(tmp_path):
    before = _users_sipakmed(tmp_path)
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "make_synthetic_sipakmed.py"),
         f"--out={tmp_path}", "--images_per_class=1"],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert str(tmp_path) in result.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_demo_run_never_writes_into_a_users_manual_dir(tmp_path):
    manual = tmp_path / "sipakmed"
    before = _users_sipakmed(manual)
    workdir = tmp_path / "work"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "main.py"), "--config=configs/rca.py:demo",
         f"--workdir={workdir}", f"--config.data.manual_dir={manual}"],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and str(manual) in result.stderr
    assert snapshot(manual) == before
