"""The paper's attribution panels: image | gradient overlay | attribution overlay.

Each map is shown the paper's way: keep positive attributions, average over colour channels,
scale so that the value above which the top 1% of the total attribution mass lies (the 99th
percentile of *cumulative* attribution) maps to 1 and clip there, paint it green and overlay
it on the image as ``0.7 * image + 0.5 * map`` (clipped to [0, 255]). Host-side numpy + PIL;
files are written atomically (``cervix_jax.files``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from cervix_jax.files import atomic_path

GREEN = np.array([0.0, 255.0, 0.0], np.float32)


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


def overlay(image: np.ndarray, attributions: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Green overlay uint8 [H, W, 3]: ``clip(0.7 * image + 0.5 * 255 * map * green)``."""
    image = np.asarray(image, np.float32)
    heat = normalize_map(attributions, percentile)[..., None] * GREEN
    return np.clip(0.7 * image + 0.5 * heat, 0, 255).astype(np.uint8)


def panel(
    image: np.ndarray,
    gradient: np.ndarray,
    attributions: np.ndarray,
    *,
    titles: Sequence[str] | None = ("image", "gradient", "attribution"),
    percentile: float = 99.0,
    gap: int = 4,
    min_size: int = 192,
) -> np.ndarray:
    """The paper's panel, uint8 [s H (+ title strip), 3 s W + 2 gap, 3].

    Args:
      image: [H, W, 3] pixel values in [0, 255].
      gradient: [H, W, C] input gradient (or [H, W]).
      attributions: [H, W, C] attributions of the method (or an [H, W] map such as Grad-CAM).
      titles: one label per column, or None for no title strip (also dropped when the
        columns are narrower than 64 px).
      min_size: small images (a 64 px demo) are enlarged by the integer factor ``s`` that
        makes their shorter side at least this, repeating pixels (no interpolation, so each
        attribution pixel stays visible as it is); 0 keeps the native size.
    """
    image = np.clip(np.asarray(image, np.float32), 0, 255).astype(np.uint8)
    h, w = image.shape[:2]
    columns = [
        image,
        overlay(image, gradient, percentile),
        overlay(image, attributions, percentile),
    ]
    scale = max(1, -(-min_size // min(h, w))) if min_size else 1
    if scale > 1:
        columns = [np.repeat(np.repeat(c, scale, axis=0), scale, axis=1) for c in columns]
        h, w = h * scale, w * scale
    if w < 64:  # the default bitmap font needs ~6 px per character
        titles = None
    strip = 12 if titles else 0
    out = np.full((h + strip, 3 * w + 2 * gap, 3), 255, np.uint8)
    for i, column in enumerate(columns):
        out[strip:, i * (w + gap) : i * (w + gap) + w] = column
    if titles:
        canvas = Image.fromarray(out)
        draw = ImageDraw.Draw(canvas)
        for i, title in enumerate(titles):
            draw.text((i * (w + gap) + 2, 0), str(title), fill=(0, 0, 0))
        out = np.asarray(canvas)
    return out


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
