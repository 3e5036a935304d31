"""Shared fixtures: one tiny synthetic SIPaKMeD and its prepared TFDS variants per session."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import tensorflow_datasets as tfds

import cervix_jax.data  # noqa: F401  (registers the builder)
from cervix_jax.data import synthetic

# Small full images keep every build and read under a second; 2 per class still gives crops,
# several groups per class and padding in the evaluation batches.
IMAGE_SIZE = (128, 96)
IMAGES_PER_CLASS = 2


def build(name: str, data_dir, manual_dir):
    """Prepares ``sipakmed/<config>`` quietly (the synthetic counts differ from the official)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tfds.builder(name, data_dir=str(data_dir)).download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
        )


def records(name: str, data_dir) -> dict:
    """{image_id: record} of a prepared ``sipakmed/<config>``."""
    source = tfds.data_source(name, split="train", data_dir=str(data_dir))
    return {r["image_id"].decode(): r for r in (source[i] for i in range(len(source)))}


def assert_same_records(got: dict, expected: dict) -> None:
    """Same ids, and every feature (image, masks, polygons, label, sizes) equal."""
    assert sorted(got) == sorted(expected)
    for image_id, record in got.items():
        assert sorted(record) == sorted(expected[image_id])
        for key, value in record.items():
            np.testing.assert_array_equal(value, expected[image_id][key], err_msg=image_id)


def failed_build_message(data_dir, manual_dir, error, match, config="full") -> str:
    """Builds, expecting ``error``; asserts that nothing is left in ``data_dir``."""
    with pytest.raises(error, match=match) as e:
        build(f"sipakmed/{config}", data_dir, manual_dir)
    leftovers = [os.path.join(r, f) for r, dirs, files in os.walk(data_dir) for f in files + dirs]
    assert leftovers == [], leftovers
    return str(e.value)


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("raw_nested")
    counts = synthetic.write_synthetic_sipakmed(
        out, IMAGES_PER_CLASS, seed=0, image_size=IMAGE_SIZE, layout="nested"
    )
    return out, counts


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, raw_dir):
    """data_dir with sipakmed/full, /cropped and /masked built from ``raw_dir``."""
    data_dir = tmp_path_factory.mktemp("tfds")
    for config in ("full", "cropped", "masked"):
        build(f"sipakmed/{config}", data_dir, raw_dir[0])
    return data_dir
