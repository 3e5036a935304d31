"""Any image a user has, as the input a model was trained on.

Microscope cameras and image tools give RGB, RGBA, grayscale and 16-bit images, as files (PNG,
JPEG, TIFF, BMP), PIL images or numpy arrays. `to_rgb_uint8` turns each into ``[H, W, 3]
uint8``:

- grayscale (``[H, W]``, ``[H, W, 1]``, PIL ``L`` and ``I;16``): the value in R, G and B;
- RGBA and grayscale + alpha: alpha dropped (cameras write it opaque);
- palette, CMYK, YCbCr, 1-bit (PIL): PIL's conversion to RGB;
- 16 bits (``uint16`` arrays, PIL ``I;16``): the top 8 bits, ``v >> 8``: the dtype's range
  0..65535 onto 0..255, each 8-bit level the same width. It is what Pillow itself does when it
  reads a 16-bit RGB PNG or TIFF, so a file and the same pixels as an array give the same input.
  The dtype's range, not each image's own: a per-image stretch would change an image's colours
  relative to the images the model was trained on. A 12-bit camera that stores 0..4095 in 16
  bits gives a dark image: multiply by 16 first.

Anything else (float, signed or boolean arrays, 32-bit PIL ``I``/``F`` images, another rank or
channel count) is refused with an `ImageError` that names the image and what was expected.

`model_input` then applies what the model was trained on, the data wing's own deterministic
steps: the builder's storage size (`downsize_for_storage`: shorter side at most 384, as
SIPaKMeD's 2048x1536 originals are stored) and the pipeline's `resize_and_crop` (shorter side
to the model's input size, centre crop). Images smaller than the input are upscaled, as the
pipeline does for SIPaKMeD's small crops; only images whose shorter side is under
`MIN_IMAGE_SIDE` pixels are refused as too small to crop: nothing of a cell survives there,
and such shapes are nearly always an array passed the wrong way (channels first, one row).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cervix_jax.data.errors import DataError
from cervix_jax.data.pipeline import resize_and_crop
from cervix_jax.data.sipakmed.sipakmed_dataset_builder import downsize_for_storage

IMAGE_SUFFIXES: tuple[str, ...] = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff")
MIN_IMAGE_SIDE = 16
# Label of an image whose class is unknown (image files).
UNKNOWN_LABEL = -1

_ARRAY_MODES = ("RGB", "RGBA", "L", "LA", "I;16", "I;16L", "I;16B", "I;16N")
_EXPECTED_SHAPES = (
    "[H, W] (grayscale) or [H, W, C] with C = 1 (grayscale), 2 (grayscale + alpha), 3 (RGB) or "
    "4 (RGBA)"
)


class ImageError(DataError):
    """An image cannot be used; the message names it (file or position) and what to do."""


def _name(image: Any, default: str) -> str:
    return os.fspath(image) if isinstance(image, str | os.PathLike) else default


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The image file ``path`` as ``[H, W, 3] uint8`` (`to_rgb_uint8`)."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb_uint8(image, os.fspath(path))
    except ImageError:
        raise
    except Exception as e:  # PIL raises many types for missing, foreign or truncated files
        raise _unreadable(path, e) from None


def _unreadable(path: str | os.PathLike, error: Exception) -> ImageError:
    return ImageError(
        f"{os.fspath(path)}: cannot be read as an image ({type(error).__name__}: {error}); "
        f"expected an image file ({', '.join(IMAGE_SUFFIXES)})."
    )


def to_rgb_uint8(image: Any, name: str = "image") -> np.ndarray:
    """``[H, W, 3] uint8`` of a file path, a PIL image or a ``uint8``/``uint16`` array.

    Args:
      image: a path (``str`` or ``os.PathLike``), a ``PIL.Image.Image`` or a numpy array
        ``[H, W]`` or ``[H, W, C]`` (C in 1..4), ``uint8`` or ``uint16``.
      name: how error messages call the image (a path names itself).

    Raises:
      ImageError: unreadable file, unsupported mode, dtype or shape (the module's docstring
        lists what is accepted).
    """
    if isinstance(image, str | os.PathLike):
        return read_image(image)
    if isinstance(image, Image.Image):
        return _array_to_rgb(_pil_to_array(image, name), name)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, name)
    raise ImageError(
        f"{name}: a {type(image).__name__}; expected a file path, a PIL image or a numpy array."
    )


def _pil_to_array(image: Image.Image, name: str) -> np.ndarray:
    _check_mode(image.mode, name)
    if image.mode in _ARRAY_MODES:
        return np.asarray(image)
    return np.asarray(image.convert("RGB"))


def _check_mode(mode: str, name: str) -> None:
    if mode in ("I", "F"):
        raise ImageError(
            f"{name}: a 32-bit PIL image (mode {mode!r}); expected 8 or 16 bits per channel: "
            "convert it to a uint8 or uint16 array first."
        )


def _array_to_rgb(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype.kind == "u" and array.dtype.itemsize == 2:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageError(
            f"{name}: dtype {array.dtype}; expected uint8 or uint16 (an image in [0, 1]: "
            "(x * 255).round().astype(np.uint8))."
        )
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or not 1 <= array.shape[-1] <= 4:
        raise ImageError(f"{name}: shape {array.shape}; expected {_EXPECTED_SHAPES}.")
    if array.shape[-1] <= 2:
        array = np.repeat(array[..., :1], 3, axis=-1)
    return np.ascontiguousarray(array[..., :3])


def _check_size(height: int, width: int, name: str) -> None:
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ImageError(
            f"{name}: {width}x{height} pixels is too small to crop; expected at least "
            f"{MIN_IMAGE_SIDE} pixels on the shorter side (an array is [H, W] or [H, W, C], "
            "channels last)."
        )


def model_input(image: Any, size: int, name: str = "image") -> np.ndarray:
    """``[size, size, 3] uint8``: the image as a model trained at ``size`` sees it.

    `to_rgb_uint8`, then the stored size (`downsize_for_storage`) and `resize_and_crop`.
    Raises `ImageError` naming ``name`` (or the path) for what `to_rgb_uint8` refuses and for
    an image under `MIN_IMAGE_SIDE` pixels.
    """
    name = _name(image, name)
    rgb = to_rgb_uint8(image, name)
    _check_size(*rgb.shape[:2], name)
    return resize_and_crop(downsize_for_storage(rgb), int(size))


def mask_input(mask: Any, image_shape: Sequence[int], size: int, name: str = "mask") -> np.ndarray:
    """``[size, size] uint8`` in {0, 1}: a cell or nucleus mask ``[H, W]`` (non-zero = inside)
    of an image ``[H, W, ...]``, cropped like the image (nearest neighbour)."""
    array = np.asarray(mask)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.shape != tuple(image_shape[:2]):
        raise ImageError(
            f"{name}: shape {array.shape}; expected its image's height and width "
            f"{tuple(image_shape[:2])}."
        )
    return resize_and_crop((array != 0).astype(np.uint8), int(size), nearest=True)


def check_image_file(path: str | os.PathLike) -> None:
    """Raises `ImageError` unless ``path`` opens as an image of a supported mode and size.

    Reads the header only: the tools check every file this way before any work.
    """
    try:
        with Image.open(path) as image:
            mode, (width, height) = image.mode, image.size
    except Exception as e:  # as in read_image
        raise _unreadable(path, e) from None
    _check_mode(mode, os.fspath(path))
    _check_size(height, width, os.fspath(path))


def find_images(pattern_or_dir: str | os.PathLike) -> list[str]:
    """The image files of a folder (recursively), a glob pattern or one file, sorted.

    Files whose suffix is not in `IMAGE_SUFFIXES` are left out of folders and patterns.
    Raises `ImageError` when nothing is found.
    """
    where = os.path.expanduser(os.fspath(pattern_or_dir))
    if os.path.isfile(where):
        return [where]
    if os.path.isdir(where):
        found = [os.fspath(p) for p in Path(where).rglob("*") if p.is_file()]
    else:
        found = [p for p in glob.glob(where, recursive=True) if os.path.isfile(p)]
    images = sorted(p for p in found if p.lower().endswith(IMAGE_SUFFIXES))
    if not images:
        raise ImageError(
            f"{where}: no image files ({', '.join(IMAGE_SUFFIXES)}) found; pass a folder, a "
            "glob pattern in quotes (e.g. 'slides/*.png') or a file."
        )
    return images


def image_ids(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Unique ids of image files: the file stem, or where several files share a stem, their
    paths relative to the folder they share, with the suffix as ``_<suffix>`` (``a/001_png``,
    ``b/001_png``; ``001_png``, ``001_tif``)."""
    paths = [os.path.abspath(os.fspath(p)) for p in paths]
    stems = [Path(p).stem for p in paths]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    shared = [p for p, s in zip(paths, stems, strict=True) if counts[s] > 1]
    root = os.path.commonpath([os.path.dirname(p) for p in shared]) if shared else ""
    ids = []
    for path, stem in zip(paths, stems, strict=True):
        if counts[stem] == 1:
            ids.append(stem)
        else:
            relative = Path(os.path.relpath(path, root))
            ids.append(relative.with_name(f"{stem}_{relative.suffix.lstrip('.')}").as_posix())
    if len(set(ids)) != len(ids):  # the same file twice, or names that only differ this way
        ids = [f"{i}_{k}" for k, i in enumerate(ids)]
    return ids


class ImageFileSource:
    """Random access to image files as pipeline records (``cervix_jax.data.eval_iterator``).

    Record ``i`` is ``{'image': model_input(paths[i], size) [S, S, 3] uint8, 'label':
    UNKNOWN_LABEL, 'image_id': ids[i]}``, read when asked for; no cell outlines (the pipeline
    gives empty masks).
    """

    def __init__(self, paths: Sequence[str | os.PathLike], size: int, ids=None):
        self.paths = [os.fspath(p) for p in paths]
        self.ids = list(image_ids(self.paths) if ids is None else ids)
        self.size = int(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        return {
            "image": model_input(self.paths[int(i)], self.size),
            "label": np.int32(UNKNOWN_LABEL),
            "image_id": self.ids[int(i)],
        }

    def __repr__(self) -> str:  # short: grain and error messages print it
        return f"ImageFileSource({len(self)} files, size {self.size})"
