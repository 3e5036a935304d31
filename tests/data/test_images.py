"""cervix_jax.data.images: any image a user has -> the model's input, and every refusal named."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cervix_jax import data
from tests.image_files import write_rgb16_tiff

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (40, 56, 3), dtype=np.uint8)


def test_layouts_and_depths_become_rgb_uint8():
    gray = RGB[..., 0]
    assert np.array_equal(data.to_rgb_uint8(RGB), RGB)
    for layout in (gray, gray[..., None], np.stack([gray, RGB[..., 1]], -1)):  # L, [H,W,1], LA
        assert np.array_equal(data.to_rgb_uint8(layout), np.repeat(gray[..., None], 3, -1))
    rgba = np.concatenate([RGB, RGB[..., :1]], -1)
    assert np.array_equal(data.to_rgb_uint8(rgba), RGB)  # alpha dropped
    # 16 bits: the top 8 bits, so x * 257 (0..255 stretched to 0..65535) gives x back.
    assert np.array_equal(data.to_rgb_uint8(RGB.astype(np.uint16) * 257), RGB)
    deep = np.array([[[0x80FF, 0x00FF, 0xFFFF]] * 16] * 16, np.uint16)
    assert data.to_rgb_uint8(deep)[0, 0].tolist() == [0x80, 0x00, 0xFF]
    assert np.array_equal(data.to_rgb_uint8(deep.astype(">u2")), data.to_rgb_uint8(deep))


def test_pil_images_and_files_agree_with_arrays(tmp_path):
    assert np.array_equal(data.to_rgb_uint8(Image.fromarray(RGB)), RGB)
    assert np.array_equal(data.to_rgb_uint8(Image.fromarray(RGB).convert("RGBA")), RGB)
    gray16 = RGB[..., 0].astype(np.uint16) * 257 + 100
    assert Image.fromarray(gray16).mode == "I;16"
    expected = data.to_rgb_uint8(gray16)
    assert np.array_equal(data.to_rgb_uint8(Image.fromarray(gray16)), expected)
    palette = Image.fromarray(RGB).quantize(16)
    assert np.array_equal(data.to_rgb_uint8(palette), np.asarray(palette.convert("RGB")))
    for suffix in ("png", "tif"):
        Image.fromarray(gray16).save(tmp_path / f"gray16.{suffix}")
        assert np.array_equal(data.read_image(tmp_path / f"gray16.{suffix}"), expected)
    # A 48-bit RGB TIFF (as microscope software writes): Pillow keeps the top 8 bits, the
    # same rule as for arrays, so the file and its pixels give the same image.
    rgb16 = RGB.astype(np.uint16) * 256 + RNG.integers(0, 256, RGB.shape).astype(np.uint16)
    write_rgb16_tiff(tmp_path / "rgb16.tif", rgb16)
    assert np.array_equal(data.read_image(tmp_path / "rgb16.tif"), data.to_rgb_uint8(rgb16))
    assert np.array_equal(data.to_rgb_uint8(tmp_path / "rgb16.tif"), RGB)


def test_model_input_is_the_pipelines_geometry():
    size = 24
    same = data.model_input(RGB, size)
    assert same.shape == (size, size, 3) and same.dtype == np.uint8
    assert np.array_equal(same, data.resize_and_crop(RGB, size))
    # A full-resolution original goes through the dataset's stored size first, as in training.
    original = RNG.integers(0, 256, (1536, 2048, 3), dtype=np.uint8)
    stored = data.downsize_for_storage(original)
    assert stored.shape == (data.STORED_SHORTER_SIDE, 512, 3)
    assert np.array_equal(data.model_input(original, size), data.resize_and_crop(stored, size))
    # Smaller than the input: upscaled like the pipeline's small crops, not refused.
    small = RGB[:20, :30]
    assert np.array_equal(data.model_input(small, 64), data.resize_and_crop(small, 64))
    # An image already at the input size is kept as is.
    assert np.array_equal(data.model_input(same, size), same)


@pytest.mark.parametrize(
    "image, message",
    [
        (RGB.astype(np.float32), r"images\[3\]: dtype float32; expected uint8 or uint16"),
        (RGB.astype(np.int32), r"images\[3\]: dtype int32; expected uint8 or uint16"),
        (RGB > 0, r"images\[3\]: dtype bool; expected uint8 or uint16"),
        (np.zeros((40, 56, 5), np.uint8), r"images\[3\]: shape \(40, 56, 5\); expected \[H, W\]"),
        (np.zeros((2, 40, 56, 3), np.uint8), r"images\[3\]: shape \(2, 40, 56, 3\); expected"),
        (np.zeros((3, 40), np.uint8), r"images\[3\]: 40x3 pixels is too small to crop"),
        (RGB[:15], r"images\[3\]: 56x15 pixels is too small to crop; expected at least 16"),
        (Image.new("I", (32, 32)), r"images\[3\]: a 32-bit PIL image \(mode 'I'\)"),
        ([1, 2, 3], r"images\[3\]: a list; expected a file path, a PIL image or a numpy array"),
    ],
)
def test_bad_images_are_refused_with_their_name(image, message):
    with pytest.raises(data.ImageError, match=message):
        data.model_input(image, 32, "images[3]")


def test_bad_files_are_refused_with_their_path(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    Image.fromarray(RGB).save(tmp_path / "whole.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((tmp_path / "whole.png").read_bytes()[:200])
    Image.fromarray(RGB[:8]).save(tmp_path / "thin.png")
    Image.new("F", (32, 32)).save(tmp_path / "float.tif")
    cases = {
        text: "cannot be read as an image",
        truncated: "cannot be read as an image",
        tmp_path / "missing.png": "cannot be read as an image",
        tmp_path / "thin.png": "56x8 pixels is too small to crop",
        tmp_path / "float.tif": "a 32-bit PIL image",
    }
    for path, message in cases.items():
        with pytest.raises(data.ImageError, match=f"{path}: {message}"):
            data.model_input(path, 32)
        if path != truncated:  # the header is intact: only decoding finds the damage
            with pytest.raises(data.ImageError, match=f"{path}: {message}"):
                data.check_image_file(path)
    data.check_image_file(truncated)


def test_masks_are_cropped_like_their_image():
    mask = np.zeros(RGB.shape[:2], bool)
    mask[10:30, 20:40] = True
    out = data.mask_input(mask, RGB.shape, 28)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1}
    assert np.array_equal(out, data.resize_and_crop(mask.astype(np.uint8), 28, nearest=True))
    with pytest.raises(data.ImageError, match=r"cell_masks\[2\]: shape \(56, 40\); expected"):
        data.mask_input(mask.T, RGB.shape, 28, "cell_masks[2]")


def test_find_images_and_unique_ids(tmp_path):
    for name in ("a/001.png", "a/001.tif", "b/001.png", "b/c/002.jpg", "b/readme.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = data.find_images(tmp_path)
    assert [p[len(str(tmp_path)) + 1 :] for p in found] == [
        "a/001.png",
        "a/001.tif",
        "b/001.png",
        "b/c/002.jpg",
    ]
    assert data.image_ids(found) == ["a/001_png", "a/001_tif", "b/001_png", "002"]
    assert data.find_images(str(tmp_path / "*" / "*.png")) == [found[0], found[2]]
    assert data.find_images(tmp_path / "b" / "c" / "002.jpg") == [found[3]]
    with pytest.raises(data.ImageError, match=r"no image files \(.bmp, .jpeg"):
        data.find_images(tmp_path / "*.gif")
    assert data.image_ids([found[0], found[0]]) == ["001_png_0", "001_png_1"]


def test_image_files_are_a_pipeline_source(tmp_path):
    paths = []
    for k, image in enumerate((RGB, RGB[..., 0], np.concatenate([RGB, RGB[..., :1]], -1))):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(image).save(paths[-1])
    source = data.ImageFileSource(paths, 16)
    (batch,) = data.eval_iterator(
        source, np.arange(3), image_size=16, global_batch_size=4, with_masks=True
    )
    assert batch["mask"].tolist() == [True, True, True, False]
    assert batch["label"][:3].tolist() == [data.UNKNOWN_LABEL] * 3
    assert batch["image_id"][:3].tolist() == ["0", "1", "2"]
    assert not batch["cell_mask"].any() and not batch["nucleus_mask"].any()
    for k, path in enumerate(paths):
        assert np.array_equal(batch["image"][k], data.model_input(path, 16))
