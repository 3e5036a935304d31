"""SIPaKMeD contour files (``.dat``) and their rasterisation to masks.

A ``.dat`` file holds one closed polygon, one vertex per line as ``x,y`` floats in the pixel
coordinates of its image (x to the right, y down). Cytoplasm contours contain nucleus contours.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from cervix_jax.data.errors import DataError

# Real copies use commas; some tools re-save with spaces or tabs. Accept any of them.
_SEPARATOR = re.compile(r"[,\s;]+")


class AnnotationError(DataError):
    """A contour file that cannot be parsed; the message names the file and line."""


def parse_dat(data: bytes | str, source: str = "<dat>") -> np.ndarray:
    """Parses one ``.dat`` contour.

    Args:
      data: the file's content.
      source: the file's name, used in error messages.

    Returns:
      vertices: [N, 2] float32 array of (x, y), N >= 3.

    Raises:
      AnnotationError: naming ``source`` and the line when a line is not two numbers, or when
        fewer than 3 vertices are found.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise AnnotationError(
                f"{source}: not a text file ({e}). Expected one 'x,y' vertex per line; "
                "re-extract the SIPaKMeD archive or regenerate the synthetic data."
            ) from None
    vertices = []
    for line_number, line in enumerate(data.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        fields = [f for f in _SEPARATOR.split(stripped) if f]
        try:
            if len(fields) != 2:
                raise ValueError
            x, y = float(fields[0]), float(fields[1])
            if not (np.isfinite(x) and np.isfinite(y)):
                raise ValueError
        except ValueError:
            raise AnnotationError(
                f"{source}, line {line_number}: expected a vertex 'x,y' (two finite numbers), "
                f"found {stripped[:60]!r}. Fix or replace this contour file (re-extract the "
                "SIPaKMeD archive)."
            ) from None
        vertices.append((x, y))
    if len(vertices) < 3:
        raise AnnotationError(
            f"{source}: a contour needs at least 3 vertices, found {len(vertices)}. "
            "Replace this contour file (re-extract the SIPaKMeD archive)."
        )
    return np.asarray(vertices, dtype=np.float32)


def format_dat(vertices: np.ndarray) -> str:
    """Writes a [N, 2] polygon in the ``.dat`` format (inverse of `parse_dat`)."""
    return "".join(f"{x:.4f},{y:.4f}\n" for x, y in np.asarray(vertices, np.float64))


def rasterize(polygons: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Union of filled polygons as a mask.

    Args:
      polygons: each [N, 2] (x, y) in pixel coordinates, where pixel (i, j) covers
        [j, j+1) x [i, i+1); a vertex at x means the continuous coordinate x.
      height, width: mask size.

    Returns:
      mask: [height, width] uint8 in {0, 1}.
    """
    canvas = Image.new("L", (int(width), int(height)), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        # PIL fills pixel centres at integer coordinates; shift by half a pixel so that a
        # polygon covering [0, W] x [0, H] fills exactly the whole image.
        points = [(float(x) - 0.5, float(y) - 0.5) for x, y in np.asarray(polygon)]
        if len(points) >= 3:
            draw.polygon(points, fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8)


def scale_polygons(
    polygons: Sequence[np.ndarray], scale_x: float, scale_y: float
) -> list[np.ndarray]:
    """Scales polygons to a resized image (x by ``scale_x``, y by ``scale_y``)."""
    factor = np.asarray([scale_x, scale_y], np.float32)
    return [np.asarray(p, np.float32) * factor for p in polygons]


def pack_polygons(polygons: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenates polygons for storage: ([sum N, 2] float32 vertices, [P] int32 lengths)."""
    lengths = np.asarray([len(p) for p in polygons], np.int32)
    if not polygons:
        return np.zeros((0, 2), np.float32), lengths
    return np.concatenate([np.asarray(p, np.float32) for p in polygons]), lengths


def unpack_polygons(vertices: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Inverse of `pack_polygons`."""
    bounds = np.cumsum(np.asarray(lengths, np.int64))[:-1]
    return [p for p in np.split(np.asarray(vertices), bounds)] if len(lengths) else []


def _paint(polygons: Sequence[np.ndarray], values: Sequence[int], height: int, width: int):
    """[height, width] int32: polygon i filled with ``values[i]``, later polygons on top."""
    canvas = Image.new("I", (int(width), int(height)), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon, value in zip(polygons, values, strict=True):
        points = [(float(x) - 0.5, float(y) - 0.5) for x, y in np.asarray(polygon)]
        if len(points) >= 3 and value > 0:  # same pixel convention as `rasterize`
            draw.polygon(points, fill=int(value), outline=int(value))
    return np.asarray(canvas, dtype=np.int32)


def _nucleus_owners(cytoplasm, nuclei, height: int, width: int) -> list[int]:
    """The 1-based cell of each nucleus: the stored order when every cell has one nucleus,
    otherwise the cell whose cytoplasm covers most of the nucleus (0: none does)."""
    if len(nuclei) == len(cytoplasm):
        return list(range(1, len(nuclei) + 1))
    cells = [rasterize([c], height, width).astype(bool) for c in cytoplasm]
    owners = []
    for nucleus in nuclei:
        inside = rasterize([nucleus], height, width).astype(bool)
        overlaps = [int((inside & cell).sum()) for cell in cells]
        owners.append(int(np.argmax(overlaps)) + 1 if overlaps and max(overlaps) > 0 else 0)
    return owners


def label_maps(
    cytoplasm: Sequence[np.ndarray], nuclei: Sequence[np.ndarray], height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell label maps of one image, rasterised like `rasterize`.

    Args:
      cytoplasm: K cytoplasm polygons [N, 2] (x, y), in the stored order: cell k is
        ``cytoplasm[k - 1]``.
      nuclei: their nucleus polygons; nucleus k belongs to cell k when there are K of them
        (SIPaKMeD's pairing), otherwise to the cell whose cytoplasm covers most of it.
      height, width: map size.

    Returns:
      (cell_labels, nucleus_labels): [height, width] int32. ``cell_labels`` is 0 on the
      background and k on cell k (cytoplasm and nucleus); where cells overlap, the later one
      is on top, and a nucleus is on top of every cytoplasm (it stays its cell's). The
      ``nucleus_labels`` are k on cell k's nucleus and 0 elsewhere, so the cytoplasm ring of
      cell k is ``(cell_labels == k) & (nucleus_labels == 0)``.
    """
    owners = _nucleus_owners(cytoplasm, nuclei, height, width)
    cells = _paint(cytoplasm, range(1, len(cytoplasm) + 1), height, width)
    nucleus_labels = _paint(nuclei, owners, height, width)
    return np.where(nucleus_labels > 0, nucleus_labels, cells), nucleus_labels
