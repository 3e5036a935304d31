"""The paper's panels (cervix_jax/explain/render.py)."""

import os

import numpy as np
from PIL import Image

from cervix_jax.explain import render


def test_cumulative_threshold():
    heat = np.ones((10, 10))
    heat[0, 0] = 1000.0  # holds 91% of the mass
    assert render.cumulative_threshold(heat, 99.0) == 1000.0
    assert render.cumulative_threshold(heat, 0.0) == 1.0  # all the mass: down to the smallest
    assert render.cumulative_threshold(np.zeros((3, 3))) == 0.0
    # Total 500500; 1% = 5005; 1000 + ... + 996 = 4990 < 5005, adding 995 reaches it.
    flat = np.arange(1, 1001, dtype=np.float64)
    assert render.cumulative_threshold(flat, 99.0) == 995.0


def test_overlay_formula():
    image = np.full((2, 2, 3), 100.0)
    attributions = np.zeros((2, 2, 3))
    attributions[0, 0] = 5.0
    attributions[1, 1] = -5.0  # negative attributions are not shown
    out = render.overlay(image, attributions)
    np.testing.assert_array_equal(out[0, 0], [70, 197, 70])  # 0.7*100 + 0.5*255 in green
    np.testing.assert_array_equal(out[1, 1], [70, 70, 70])
    assert out.dtype == np.uint8


def test_save_panel_writes_png_atomically(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (20, 64, 3)).astype(np.uint8)
    grad, attr = rng.normal(size=(2, 20, 64, 3))
    path = tmp_path / "sub" / "img_001.png"
    render.save_panel(path, image, grad, attr, min_size=0)
    loaded = np.asarray(Image.open(path))
    assert loaded.shape == (20 + 12, 3 * 64 + 8, 3)
    np.testing.assert_array_equal(loaded[12:, :64], image)
    np.testing.assert_array_equal(loaded[12:, 64 + 4 : 128 + 4], render.overlay(image, grad))
    render.save_panel(path, image[:, :20], grad[:, :20], attr[:, :20], min_size=0)
    assert np.asarray(Image.open(path)).shape == (20, 3 * 20 + 8, 3)  # narrow: no titles
    assert os.listdir(path.parent) == ["img_001.png"]


def test_small_panels_are_enlarged_by_pixel_repetition():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (20, 30, 3)).astype(np.uint8)
    grad, attr = rng.normal(size=(2, 20, 30, 3))
    out = render.panel(image, grad, attr, min_size=64)  # factor ceil(64 / 20) = 4
    assert out.shape == (12 + 80, 3 * 120 + 8, 3)
    np.testing.assert_array_equal(out[12::4, :120:4], image)
    np.testing.assert_array_equal(out[12 + 3 :: 4, 3:120:4], image)
    big = render.overlay(image, attr)
    np.testing.assert_array_equal(out[12::4, 2 * 124 : 2 * 124 + 120 : 4], big)
