"""The paper's panels (cervix_jax/explain/render.py)."""

import os

import numpy as np
import pytest
import scipy.ndimage
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


def test_signed_overlay_paints_both_signs_on_one_symmetric_scale():
    image = np.full((2, 2, 3), 200.0)
    attributions = np.zeros((2, 2, 3))
    attributions[0, 0] = 5.0  # for the target
    attributions[1, 1] = -5.0  # against it, as strong
    out = render.signed_overlay(image, attributions).astype(float)
    grey = 0.55 * 200 + 0.45 * 255
    np.testing.assert_allclose(out[0, 1], [grey] * 3, atol=1)  # zero: the grey image
    np.testing.assert_allclose(out[0, 0], 0.1 * grey + 0.9 * render.RED, atol=1)
    np.testing.assert_allclose(out[1, 1], 0.1 * grey + 0.9 * render.BLUE, atol=1)
    t = render.normalize_signed_map(attributions)
    assert t.min() == -1.0 and t.max() == 1.0 and t[0, 1] == 0.0


def test_save_panel_writes_png_atomically(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (20, 64, 3)).astype(np.uint8)
    grad, attr = rng.normal(size=(2, 20, 64, 3))
    path = tmp_path / "sub" / "img_001.png"
    render.save_panel(path, image, grad, attr, min_size=0, style="positive")
    loaded = np.asarray(Image.open(path))
    assert loaded.shape == (16 + 20 + 16, 3 * 64 + 8, 3)  # titles, columns, legend
    np.testing.assert_array_equal(loaded[16:36, :64], image)
    np.testing.assert_array_equal(loaded[16:36, 64 + 4 : 128 + 4], render.overlay(image, grad))
    render.save_panel(path, image, grad, attr, min_size=0, heading="true: A | predicted: B")
    signed = np.asarray(Image.open(path))
    assert signed.shape == (18 + 16 + 20 + 16, 3 * 64 + 8, 3)
    np.testing.assert_array_equal(signed[34:54, 136:200], render.signed_overlay(image, attr))
    assert (signed[:18] < 128).any()  # the heading is written
    render.save_panel(path, image[:, :20], grad[:, :20], attr[:, :20], min_size=0)
    assert np.asarray(Image.open(path)).shape == (20, 3 * 20 + 8, 3)  # narrow: no text
    assert os.listdir(path.parent) == ["img_001.png"]


def test_small_panels_are_enlarged_by_pixel_repetition():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (20, 30, 3)).astype(np.uint8)
    grad, attr = rng.normal(size=(2, 20, 30, 3))
    out = render.panel(image, grad, attr, min_size=64)  # factor ceil(64 / 20) = 4
    assert out.shape == (16 + 80 + 16, 3 * 120 + 8, 3)
    np.testing.assert_array_equal(out[16:96:4, :120:4], image)
    np.testing.assert_array_equal(out[16 + 3 : 96 : 4, 3:120:4], image)
    big = render.signed_overlay(image, attr)
    np.testing.assert_array_equal(out[16:96:4, 2 * 124 : 2 * 124 + 120 : 4], big)


def test_outlines_and_the_deciding_cell_ring():
    image = np.full((12, 12, 3), 220, np.uint8)
    attr = np.random.default_rng(2).normal(size=(12, 12, 3))
    cells = np.zeros((12, 12), np.int32)
    cells[2:6, 2:6], cells[7:11, 6:11] = 1, 2
    nuclei = np.zeros_like(cells)
    nuclei[3:5, 3:5] = 1
    out = render.panel(
        image,
        attr,
        attr,
        titles=None,
        min_size=0,
        cell_labels=cells,
        nucleus_labels=nuclei,
        deciding_cell=2,
    )
    method = out[:12, 2 * 16 :]  # 12 px columns with a 4 px gap; no text below 64 px
    plain = render.signed_overlay(image, attr)
    for y, x in [(2, 2), (5, 3), (7, 6), (10, 10)]:  # cell boundaries: black
        np.testing.assert_array_equal(method[y, x], [0, 0, 0])
    np.testing.assert_array_equal(method[3, 3], [110, 110, 110])  # nucleus boundary: grey
    np.testing.assert_array_equal(method[8:10, 7:10], plain[8:10, 7:10])  # inside: unchanged
    # A ring 2 px wide just outside cell 2 (square neighbourhood).
    ring = scipy.ndimage.binary_dilation(cells == 2, np.ones((5, 5), bool)) & (cells != 2)
    assert (method[ring] == [255, 200, 0]).all() and ring.sum() > 0
    with pytest.raises(ValueError, match="panel style"):
        render.panel(image, attr, attr, style="rainbow")
