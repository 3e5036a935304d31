"""Every form SIPaKMeD arrives in: the official .7z archives, .zip, folders, a mirror of all five
classes in one archive, and mixes of them; damaged archives and duplicates are refused."""

import os
import shutil
import zipfile

import py7zr
import pytest

from cervix_jax.data import CLASS_NAMES, DataError, ManualDownloadError, synthetic
from tests.data.conftest import (
    IMAGE_SIZE,
    IMAGES_PER_CLASS,
    assert_same_records,
    build,
    failed_build_message,
    records,
)
from tests.tree_snapshot import snapshot


def _replica(out, archive=None, layout="nested"):
    """The same replica as the ``raw_dir`` fixture (same seed and size), in another form."""
    synthetic.write_synthetic_sipakmed(
        out, IMAGES_PER_CLASS, seed=0, image_size=IMAGE_SIZE, layout=layout, archive=archive
    )
    return out


def _pack(folder, archive_path, top):
    """Packs every file under ``folder`` into one archive, below the folder ``top``."""
    files = sorted(
        os.path.relpath(os.path.join(r, f), folder) for r, _, fs in os.walk(folder) for f in fs
    )
    # Archives made on macOS also hold resource forks, under a folder of the same names.
    fork = f"__MACOSX/{top}/im_Parabasal/im_Parabasal/._001.bmp"
    if archive_path.suffix == ".zip":
        with zipfile.ZipFile(archive_path, "w") as zf:
            for rel in files:
                zf.write(os.path.join(folder, rel), f"{top}/{rel}")
            zf.writestr(fork, b"junk")
    else:
        with py7zr.SevenZipFile(archive_path, "w") as sz:
            for rel in files:
                sz.write(os.path.join(folder, rel), f"{top}/{rel}")
            sz.writestr(b"junk", fork)


def _add_decoys(manual_dir):
    """What sits next to the image archives on the SIPaKMeD page, and a stray .rar."""
    with py7zr.SevenZipFile(manual_dir / "Features_CELL.7z", "w") as sz:
        sz.writestr(b"1 2 3\n", "DYSKERATOTIC_CYTOPLASM_FEAT.dat")
    (manual_dir / "x.rar").write_bytes(b"Rar!\x1a\x07\x00 not really")
    (manual_dir / "SIPaKMeD.pdf").write_bytes(b"%PDF-1.4 not really")


@pytest.fixture
def recorded_extractions(monkeypatch):
    """[(folder, targets)] of every .7z extraction the builder makes."""
    calls = []
    extract = py7zr.SevenZipFile.extract

    def recording(self, path=None, targets=None, **kwargs):
        calls.append((str(path), list(targets)))
        return extract(self, path, targets, **kwargs)

    monkeypatch.setattr(py7zr.SevenZipFile, "extract", recording)
    return calls


@pytest.mark.parametrize("config", ["full", "cropped"])
def test_official_7z_archives_give_the_same_dataset(
    tmp_path, prepared, config, recorded_extractions
):
    manual = _replica(tmp_path / "manual", archive="7z")
    assert sorted(os.listdir(manual)) == sorted(
        [f"im_{c}.7z" for c in CLASS_NAMES] + [synthetic.MARKER_FILE]
    )
    data = tmp_path / "data"
    build(f"sipakmed/{config}", data, manual)
    assert_same_records(
        records(f"sipakmed/{config}", data), records(f"sipakmed/{config}", prepared)
    )
    # One class at a time, into the TFDS download folder, removed afterwards; `cropped` never
    # extracts the (large) full images.
    assert len(recorded_extractions) == 5
    for folder, targets in recorded_extractions:
        assert os.path.commonpath([folder, data / "downloads"]) == str(data / "downloads")
        assert not os.path.exists(folder)
        assert all(("/CROPPED/" in t) == (config == "cropped") for t in targets)
    assert os.listdir(data / "downloads") == ["extracted"]  # TFDS's own, empty
    assert not os.listdir(data / "downloads" / "extracted")


@pytest.mark.parametrize("suffix", [".7z", ".zip"])
def test_mirror_with_all_classes_in_one_archive(tmp_path, prepared, raw_dir, suffix):
    manual = tmp_path / "manual"
    manual.mkdir()
    _pack(raw_dir[0], manual / f"sipakmed-mirror{suffix}", top="SIPaKMeD")
    build("sipakmed/full", tmp_path / "data", manual)
    assert_same_records(
        records("sipakmed/full", tmp_path / "data"), records("sipakmed/full", prepared)
    )


def test_mix_of_7z_zip_and_folders_with_decoys(tmp_path, prepared):
    as_7z = _replica(tmp_path / "as_7z", archive="7z")
    as_zip = _replica(tmp_path / "as_zip", archive="zip", layout="flat")
    as_dirs = _replica(tmp_path / "as_dirs")
    manual = tmp_path / "manual"
    (manual / "one level down").mkdir(parents=True)
    shutil.copy(as_7z / "im_Dyskeratotic.7z", manual)
    shutil.copy(as_7z / "im_Koilocytotic.7z", manual)
    shutil.copy(as_7z / "im_Superficial-Intermediate.7z", manual / "one level down")
    shutil.copy(as_zip / "im_Parabasal.zip", manual)
    shutil.copytree(as_dirs / "im_Metaplastic", manual / "im_Metaplastic")
    _add_decoys(manual)
    build("sipakmed/full", tmp_path / "data", manual)
    assert_same_records(
        records("sipakmed/full", tmp_path / "data"), records("sipakmed/full", prepared)
    )


def test_damaged_unrelated_archive_is_ignored_when_every_class_is_there(tmp_path, raw_dir):
    manual = tmp_path / "manual"
    shutil.copytree(raw_dir[0], manual)
    (manual / "Features_CELL.7z").write_bytes(b"7z\xbc\xaf\x27\x1c truncated")
    build("sipakmed/cropped", tmp_path / "data", manual)
    assert len(records("sipakmed/cropped", tmp_path / "data")) > 5


# ------------------------------------------------------------------------------------------
# Damaged archives and duplicates: one line naming the file, nothing left behind.


def test_truncated_7z_names_it(tmp_path):
    manual = _replica(tmp_path / "manual", archive="7z")
    path = manual / "im_Metaplastic.7z"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = failed_build_message(tmp_path / "data", manual, DataError, "cannot be opened")
    assert message.startswith(f"{path}: cannot be opened as a 7z archive")
    assert "\n" not in message


def test_corrupt_7z_data_fails_during_the_build_and_leaves_nothing(tmp_path, prepared):
    # Its index reads fine, so the other classes are written before its data fails to extract.
    manual = _replica(tmp_path / "manual", archive="7z")
    path = manual / "im_Superficial-Intermediate.7z"
    data = bytearray(path.read_bytes())
    for i in range(64, 96):  # inside the compressed stream, which starts at byte 32
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    message = failed_build_message(tmp_path / "data", manual, DataError, "cannot be extracted")
    assert message.startswith(f"{path}: cannot be extracted") and "\n" not in message
    # A data dir that already holds datasets (and a download folder) is left as it was: no
    # extraction folder, no partial `masked`.
    data_dir = tmp_path / "prepared"
    shutil.copytree(prepared, data_dir)
    shutil.rmtree(data_dir / "sipakmed" / "masked")
    before = snapshot(data_dir)
    assert "downloads" in before
    with pytest.raises(DataError, match="cannot be extracted"):
        build("sipakmed/masked", data_dir, manual)
    assert snapshot(data_dir) == before


def test_class_found_twice_names_both(tmp_path, raw_dir):
    manual = tmp_path / "manual"
    shutil.copytree(raw_dir[0], manual)
    extra = _replica(tmp_path / "as_7z", archive="7z") / "im_Parabasal.7z"
    shutil.copy(extra, manual / "im_Parabasal.7z")
    message = failed_build_message(tmp_path / "data", manual, DataError, "found more than once")
    assert str(manual / "im_Parabasal") in message and str(manual / "im_Parabasal.7z") in message
    assert "'Parabasal'" in message and "\n" not in message


def test_class_in_a_mirror_and_in_its_own_archive_names_both(tmp_path, raw_dir):
    manual = tmp_path / "manual"
    manual.mkdir()
    _pack(raw_dir[0], manual / "mirror.zip", top="SIPaKMeD")
    shutil.copy(_replica(tmp_path / "as_7z", archive="7z") / "im_Koilocytotic.7z", manual)
    message = failed_build_message(tmp_path / "data", manual, DataError, "found more than once")
    assert f"{manual / 'mirror.zip'}:SIPaKMeD/im_Koilocytotic/" in message
    assert str(manual / "im_Koilocytotic.7z") in message


def test_missing_class_mentions_an_unreadable_archive(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "sipakmed-mirror.zip").write_bytes(b"PK\x03\x04 truncated")
    message = failed_build_message(
        tmp_path / "data", manual, ManualDownloadError, "class 'Dyskeratotic' not found"
    )
    assert f"Skipped, unreadable: {manual / 'sipakmed-mirror.zip'}: cannot be opened" in message
    assert "im_Dyskeratotic.7z" in message and "--out=NEW_FOLDER" in message


def test_extraction_inside_the_manual_dir_is_refused(tmp_path):
    manual = _replica(tmp_path / "manual", archive="7z")
    before = sorted(os.listdir(manual))
    with pytest.raises(DataError, match="inside the manual directory"):
        build("sipakmed/full", manual / "tfds", manual)
    assert sorted(os.listdir(manual)) == before


def test_too_little_disk_for_a_class_says_how_much(tmp_path, monkeypatch):
    manual = _replica(tmp_path / "manual", archive="7z")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    message = failed_build_message(tmp_path / "data", manual, DataError, "GB are free")
    assert message.startswith(f"{manual / 'im_Dyskeratotic.7z'}: extracting it needs 0.0 GB in ")
    assert "where 0.0 GB are free" in message and "tfds_data_dir" in message
