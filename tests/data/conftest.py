"""Shared fixtures: one tiny synthetic SIPaKMeD and its prepared TFDS variants per session."""

from __future__ import annotations

import warnings

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
