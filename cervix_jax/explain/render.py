"""Attribution panels: image | gradient overlay | method overlay, with the cells outlined.

Two styles of overlay:

- ``signed`` (default): positive and negative evidence on a diverging scale. The signed map
  (channels summed) is divided by the value above which the top 1% of the total *absolute*
  mass lies (99th percentile of cumulative |attribution|, clipped there), then painted red
  (for the target) or blue (against it) over a grey copy of the image, opacity growing with
  the magnitude, so that colour means attribution and nothing else.
- ``positive``: the paper's style. Keep positive attributions, average over colour channels,
  scale by the 99th percentile of cumulative attribution, paint it green and overlay it as
  ``0.7 * image + 0.5 * map`` (clipped to [0, 255]).

With per-cell label maps (``cervix_jax.data.label_maps``) every column gets the outlines of the
cells (black) and nuclei (grey), the first column the cells' numbers (the ``k`` of the label
maps and of ``attribution_metrics.json``), and the deciding cell a thick outline. A heading
(true class, predicted class and probability) and a legend of the colour scale frame the
panel. Host-side numpy + PIL; files are written atomically (``cervix_jax.files``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cervix_jax.files import atomic_path

GREEN = np.array([0.0, 255.0, 0.0], np.float32)
# ColorBrewer RdBu ends: readable on grey and by most colour-blind readers.
RED = np.array([202.0, 0.0, 32.0], np.float32)
BLUE = np.array([5.0, 113.0, 176.0], np.float32)
PANEL_STYLES: tuple[str, ...] = ("signed", "positive")
_CELL_OUTLINE = (0, 0, 0)
_NUCLEUS_OUTLINE = (110, 110, 110)
_DECIDING = (255, 200, 0)  # amber: apart from red, blue and green, visible on both
_FONT_SIZE = 12


def cumulative_threshold(heatmap: np.ndarray, percentile: float = 99.0) -> float:
    """Smallest value among the top values that hold ``100 - percentile`` % of the total mass.

    Values are sorted in decreasing order; the returned value is the first one at which the
    cumulative sum reaches ``(100 - percentile) / 100`` of the total. 0.0 for an all-zero map.
    """
    values = np.sort(np.asarray(heatmap, np.float64).ravel())[::-1]
    total = values.sum()
    if total <= 0:
        return 0.0
    cumulative = np.cumsum(values) / total
    index = int(np.searchsorted(cumulative, (100.0 - percentile) / 100.0, side="left"))
    return float(values[min(index, values.size - 1)])


def normalize_map(attributions: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """[H, W, C] or [H, W] attributions -> [H, W] float32 in [0, 1] (positive part, clipped)."""
    a = np.maximum(np.asarray(attributions, np.float32), 0.0)
    heatmap = a if a.ndim == 2 else a.mean(axis=-1)
    top = cumulative_threshold(heatmap, percentile)
    if top <= 0:
        return np.zeros(heatmap.shape, np.float32)
    return np.clip(heatmap / top, 0.0, 1.0).astype(np.float32)


def normalize_signed_map(attributions: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """[H, W, C] or [H, W] -> [H, W] float32 in [-1, 1]: channels summed, divided by the
    cumulative threshold of its absolute values, clipped."""
    a = np.asarray(attributions, np.float32)
    signed = a if a.ndim == 2 else a.sum(axis=-1)
    top = cumulative_threshold(np.abs(signed), percentile)
    if top <= 0:
        return np.zeros(signed.shape, np.float32)
    return np.clip(signed / top, -1.0, 1.0).astype(np.float32)


def overlay(image: np.ndarray, attributions: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Green overlay uint8 [H, W, 3]: ``clip(0.7 * image + 0.5 * 255 * map * green)``."""
    image = np.asarray(image, np.float32)
    heat = normalize_map(attributions, percentile)[..., None] * GREEN
    return np.clip(0.7 * image + 0.5 * heat, 0, 255).astype(np.uint8)


def signed_overlay(
    image: np.ndarray, attributions: np.ndarray, percentile: float = 99.0
) -> np.ndarray:
    """Diverging overlay uint8 [H, W, 3]: red for positive, blue for negative attribution
    over a lightened grey image; opacity ``0.9 * |map|`` (``normalize_signed_map``)."""
    image = np.asarray(image, np.float32)
    grey = image @ np.array([0.299, 0.587, 0.114], np.float32)
    base = (0.55 * grey + 0.45 * 255.0)[..., None]
    t = normalize_signed_map(attributions, percentile)[..., None]
    colour = np.where(t >= 0, RED, BLUE)
    alpha = 0.9 * np.abs(t)
    return np.clip((1 - alpha) * base + alpha * colour, 0, 255).astype(np.uint8)


def _font(size: int = _FONT_SIZE):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # a Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _boundary(labels: np.ndarray) -> np.ndarray:
    """Pixels of a labelled region (label > 0) with a 4-neighbour of another label."""
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    differs = np.zeros(labels.shape, bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        differs |= padded[dy : dy + labels.shape[0], dx : dx + labels.shape[1]] != centre
    return differs & (centre > 0)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels (square neighbourhood, no wrap-around)."""
    h, w = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def _draw_outlines(column, cell_labels, nucleus_labels, deciding_cell: int, scale: int):
    """Outlines drawn on an (enlarged) column, in place; the deciding cell gets a ring just
    outside it, so that its own pixels stay visible."""
    column[_boundary(nucleus_labels)] = _NUCLEUS_OUTLINE
    column[_boundary(cell_labels)] = _CELL_OUTLINE
    if deciding_cell > 0:
        inside = cell_labels == deciding_cell
        column[_dilate(inside, max(2, scale)) & ~inside] = _DECIDING


def _number_cells(canvas: Image.Image, cell_labels, offset, deciding_cell: int) -> None:
    """Writes the cells' numbers on their top edges (first column), where they hide no
    nucleus: every cell large enough to be read next to its number, and the deciding cell."""
    draw, font = ImageDraw.Draw(canvas), _font(_FONT_SIZE - 1)
    for k in np.unique(cell_labels[cell_labels > 0]):
        ys, xs = np.nonzero(cell_labels == k)
        if k != deciding_cell and len(ys) < (1.8 * _FONT_SIZE) ** 2:
            continue
        fill = _DECIDING if k == deciding_cell else (255, 255, 255)
        top = max(ys.min(), _FONT_SIZE // 2)  # inside the column
        draw.text(
            (offset[0] + xs[ys == ys.min()].mean(), offset[1] + top),
            str(int(k)),
            fill=fill,
            font=font,
            anchor="mm",
            stroke_width=2,
            stroke_fill=(0, 0, 0),
        )


def _legend(width: int, style: str) -> np.ndarray:
    """A strip explaining the colours (uint8 [16, width, 3])."""
    strip = Image.new("RGB", (width, 16), (255, 255, 255))
    draw, font = ImageDraw.Draw(strip), _font(_FONT_SIZE - 1)
    bar = 120
    if style == "signed":
        t = np.linspace(-1, 1, bar)[None, :, None]
        colours = np.where(t >= 0, RED, BLUE) * np.abs(t) + 255.0 * (1 - np.abs(t))
        left, right = "against", "for the target class"
    else:
        t = np.linspace(0, 1, bar)[None, :, None]
        colours = np.clip(0.7 * 255 + 0.5 * 255 * t * GREEN / 255, 0, 255)
        left, right = "0", "for the target class (positive part only)"
    draw.text((4, 8), left, fill=(0, 0, 0), font=font, anchor="lm")
    x0 = 8 + int(draw.textlength(left, font=font))
    strip.paste(Image.fromarray(np.repeat(colours, 10, axis=0).astype(np.uint8)), (x0, 3))
    draw.text((x0 + bar + 4, 8), right, fill=(0, 0, 0), font=font, anchor="lm")
    if style == "signed":
        draw.line([(x0 + bar // 2, 1), (x0 + bar // 2, 14)], fill=(0, 0, 0))
    return np.asarray(strip)


def panel(
    image: np.ndarray,
    gradient: np.ndarray,
    attributions: np.ndarray,
    *,
    titles: Sequence[str] | None = ("image", "gradient", "attribution"),
    heading: str | None = None,
    style: str = "signed",
    cell_labels: np.ndarray | None = None,
    nucleus_labels: np.ndarray | None = None,
    deciding_cell: int = 0,
    percentile: float = 99.0,
    gap: int = 4,
    min_size: int = 192,
) -> np.ndarray:
    """The panel, uint8 [heading + titles + s H + legend, 3 s W + 2 gap, 3].

    Args:
      image: [H, W, 3] pixel values in [0, 255].
      gradient: [H, W, C] input gradient (or [H, W]).
      attributions: [H, W, C] attributions of the method (or an [H, W] map such as Grad-CAM).
      titles: one label per column, or None; heading: a line above them (e.g. true and
        predicted class), or None. Text and legend are dropped when the columns are narrower
        than 64 px.
      style: ``signed`` (diverging red/blue) or ``positive`` (the paper's green).
      cell_labels, nucleus_labels: [H, W] int label maps (0 = background, k = cell k), or
        None for no outlines; deciding_cell: the cell outlined thick (0 = none).
      min_size: small images (a 64 px demo) are enlarged by the integer factor ``s`` that
        makes their shorter side at least this, repeating pixels (no interpolation, so each
        attribution pixel stays visible as it is); 0 keeps the native size.
    """
    if style not in PANEL_STYLES:
        raise ValueError(f"panel style {style!r} is unknown; use one of {PANEL_STYLES}.")
    image = np.clip(np.asarray(image, np.float32), 0, 255).astype(np.uint8)
    h, w = image.shape[:2]
    paint = signed_overlay if style == "signed" else overlay
    columns = [image, paint(image, gradient, percentile), paint(image, attributions, percentile)]
    scale = max(1, -(-min_size // min(h, w))) if min_size else 1
    enlarge = lambda a: np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)
    columns = [enlarge(c) for c in columns]
    if cell_labels is not None:
        labels = enlarge(np.asarray(cell_labels))
        nuclei = enlarge(np.zeros_like(cell_labels) if nucleus_labels is None else nucleus_labels)
        for column in columns:
            _draw_outlines(column, labels, nuclei, int(deciding_cell), scale)
    h, w = h * scale, w * scale
    text = w >= 64
    top = (18 if heading and text else 0) + (16 if titles and text else 0)
    legend = _legend(3 * w + 2 * gap, style) if text else np.zeros((0, 3 * w + 2 * gap, 3))
    out = np.full((top + h + len(legend), 3 * w + 2 * gap, 3), 255, np.uint8)
    for i, column in enumerate(columns):
        out[top : top + h, i * (w + gap) : i * (w + gap) + w] = column
    out[top + h :] = legend
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    if heading and text:
        draw.text((2, 2), str(heading), fill=(0, 0, 0), font=_font(_FONT_SIZE + 1))
    if titles and text:
        for i, title in enumerate(titles):
            draw.text((i * (w + gap) + 2, top - 15), str(title), fill=(0, 0, 0), font=_font())
    if cell_labels is not None and text:
        _number_cells(canvas, labels, (0, top), int(deciding_cell))
    return np.asarray(canvas)


def write_png(array: np.ndarray, path: str | os.PathLike) -> None:
    """Writes a uint8 [H, W, 3] array to ``path`` atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(array, np.uint8)).save(tmp, format="PNG")


def save_panel(
    path: str | os.PathLike,
    image: np.ndarray,
    gradient: np.ndarray,
    attributions: np.ndarray,
    **kwargs,
) -> None:
    """``panel`` written to ``path`` as PNG (atomically)."""
    write_png(panel(image, gradient, attributions, **kwargs), path)
