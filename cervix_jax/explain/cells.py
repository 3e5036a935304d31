"""Scores of attribution maps cell by cell, against the polygons' per-cell label maps.

SIPaKMeD outlines every cell (cytoplasm and nucleus), so a map can be asked not only "is it on
the cells?" (``scores.localization_ratio``, against the union) but "on which cell, and does that
cell matter to the model?". Label maps come from the data wing (``cell_labels``,
``nucleus_labels`` [H, W] int: 0 = background, k = cell k; ``cervix_jax.data.label_maps``);
``max_cells`` K is a static bound (labels must lie in [0, K]), and per-cell arrays have K + 1
entries, index 0 being the background.

Per image and map (pure JAX, ``vmap``-ed over the batch):

- Masses: the map's positive part (channels summed; proportional to ``scores.to_heatmap``) and
  its signed value (channels summed: for integrated gradients the masses add up to ``f(x) -
  f(baseline)``) summed over each cell and the background. Cells plus background = the total.
- Shares of the positive mass in the nuclei, the cytoplasm rings (cell minus nucleus) and the
  background (they add up to 1).
- The deciding cell: the cell with the largest signed mass, the one whose pixels add most to
  the target's score (1-based; 0 when no cell adds anything). Signed, not positive: a large
  cell collects positive noise of an integrated-gradients map even where its net effect is
  against the target. For non-negative maps (Grad-CAM, attention) both are the same.
- Concentration of the positive mass over the cells present (area > 0 at this resolution):
  ``top_cell_share`` (the largest cell mass over the mass on all cells) and ``cell_gini`` (Gini
  coefficient of the cells' masses, scaled by n / (n - 1) so that 1 = all on one cell, 0 =
  equal masses).
- Cell pointing game: the label under the map's maximum (``pointing_cell``; 0 = background)
  and whether it is a cell.
- Cell occlusion (no gradient): the target score minus the score with cell k's pixels (its
  label-map region) replaced by the image's own background colour (per-channel median of the
  background pixels; the whole image's median when there is no background). A black fill would
  be far outside the data on a bright slide. Then ``occlusion_spearman``, the rank correlation
  over the cells present between the signed masses and the drops (both are effects on the score,
  with sign; NaN below 3 cells), and ``occlusion_top_agreement`` (the deciding cell is the one
  whose removal costs most).

Scalars are NaN where undefined: no cell in the label map (file images without outlines), or a
map without positive mass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

# The per-image numbers `cell_metrics` returns, reported per image and averaged.
CELL_METRIC_KEYS: tuple[str, ...] = (
    "cell_share_nuclei",
    "cell_share_cytoplasm",
    "cell_share_background",
    "top_cell_share",
    "cell_gini",
    "cell_pointing_game",
    "occlusion_spearman",
    "occlusion_top_agreement",
)


def pixel_maps(attributions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """[H, W, C] (or [H, W]) attributions -> (positive [H, W], signed [H, W]), channels summed."""
    a = jnp.asarray(attributions, jnp.float32)
    if a.ndim == 2:
        return jnp.maximum(a, 0.0), a
    return jnp.maximum(a, 0.0).sum(axis=-1), a.sum(axis=-1)


def cell_masses(
    attributions: jax.Array, cell_labels: jax.Array, nucleus_labels: jax.Array, *, max_cells: int
) -> dict[str, jax.Array]:
    """Sums of one map over the background (index 0) and each cell k (index k).

    Returns ``positive``, ``signed``, ``nucleus_positive`` (the part of ``positive`` on the
    cell's nucleus) and ``area`` (pixels), each [max_cells + 1] float32.
    """
    positive, signed = pixel_maps(attributions)
    labels = jnp.asarray(cell_labels, jnp.int32).ravel()
    in_nucleus = (jnp.asarray(nucleus_labels) > 0) & (jnp.asarray(cell_labels) > 0)

    def per_label(values):
        return jax.ops.segment_sum(values.ravel(), labels, num_segments=max_cells + 1)

    return {
        "positive": per_label(positive),
        "signed": per_label(signed),
        "nucleus_positive": per_label(jnp.where(in_nucleus, positive, 0.0)),
        "area": per_label(jnp.ones_like(positive)),
    }


def _safe_divide(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.where(b > 0, a / jnp.where(b > 0, b, 1.0), jnp.nan)


def _gini(values: jax.Array, valid: jax.Array) -> jax.Array:
    """Gini coefficient of ``values`` where ``valid``, scaled to [0, 1] (NaN below 2 values)."""
    x = jnp.where(valid, values, 0.0)
    n = valid.sum()
    pairs = valid[:, None] & valid[None, :]
    spread = jnp.where(pairs, jnp.abs(x[:, None] - x[None, :]), 0.0).sum()
    gini = _safe_divide(spread, 2.0 * n * x.sum()) * n / jnp.maximum(n - 1, 1)
    return jnp.where(n >= 2, gini, jnp.nan)


def masked_spearman(a: jax.Array, b: jax.Array, valid: jax.Array, min_count: int = 3):
    """Spearman rank correlation of ``a`` and ``b`` [N] over the entries where ``valid``.

    Average ranks for ties; NaN with fewer than ``min_count`` entries or a constant side.
    """

    def ranks(x):
        below = (valid[None, :] & (x[None, :] < x[:, None])).sum(axis=1)
        equal = (valid[None, :] & (x[None, :] == x[:, None])).sum(axis=1)
        return below + 0.5 * (equal - 1) + 1.0

    n = valid.sum()
    ra, rb = ranks(jnp.asarray(a, jnp.float32)), ranks(jnp.asarray(b, jnp.float32))
    mean = (n + 1) / 2.0
    da, db = jnp.where(valid, ra - mean, 0.0), jnp.where(valid, rb - mean, 0.0)
    rho = _safe_divide((da * db).sum(), jnp.sqrt((da * da).sum() * (db * db).sum()))
    return jnp.where(n >= min_count, rho, jnp.nan)


def cell_scores(
    attributions: jax.Array, cell_labels: jax.Array, nucleus_labels: jax.Array, *, max_cells: int
) -> dict[str, jax.Array]:
    """The cell-level numbers of one map (module docstring), without occlusion.

    Args:
      attributions: [H, W, C] or [H, W].
      cell_labels, nucleus_labels: [H, W] int in [0, max_cells].
      max_cells: K (static).

    Returns:
      ``positive_mass``, ``signed_mass``, ``area`` [K + 1]; ``present`` [K + 1] bool (cells
      with pixels; index 0 False); int32 ``deciding_cell`` and ``pointing_cell``; float32
      ``cell_share_nuclei``, ``cell_share_cytoplasm``, ``cell_share_background``,
      ``top_cell_share``, ``cell_gini``, ``cell_pointing_game``.
    """
    masses = cell_masses(attributions, cell_labels, nucleus_labels, max_cells=max_cells)
    positive = masses["positive"]
    present = (masses["area"] > 0) & (jnp.arange(max_cells + 1) > 0)
    has_cells = present.any()
    total = positive.sum()
    on_cells = jnp.where(present, positive, 0.0)
    valid = has_cells & (total > 0)
    undefined = lambda x: jnp.where(valid, x, jnp.nan)
    nuclei = masses["nucleus_positive"].sum()
    signed_on_cells = jnp.where(present, masses["signed"], -jnp.inf)
    deciding = jnp.where(valid & (signed_on_cells.max() > 0), jnp.argmax(signed_on_cells), 0)
    heat, _ = pixel_maps(attributions)
    pointing = jnp.asarray(cell_labels, jnp.int32).ravel()[jnp.argmax(heat.ravel())]
    return {
        "positive_mass": positive,
        "signed_mass": masses["signed"],
        "area": masses["area"],
        "present": present,
        "deciding_cell": deciding.astype(jnp.int32),
        "pointing_cell": jnp.where(valid, pointing, 0).astype(jnp.int32),
        "cell_share_nuclei": undefined(_safe_divide(nuclei, total)),
        "cell_share_cytoplasm": undefined(_safe_divide(on_cells.sum() - nuclei, total)),
        "cell_share_background": undefined(_safe_divide(positive[0], total)),
        "top_cell_share": undefined(_safe_divide(on_cells.max(), on_cells.sum())),
        "cell_gini": undefined(_gini(positive, present)),
        "cell_pointing_game": undefined((pointing > 0).astype(jnp.float32)),
    }


def background_fill(image: jax.Array, cell_labels: jax.Array) -> jax.Array:
    """[C] the image's background colour: per-channel median of its background pixels (label
    0), or of all its pixels when it has no background."""
    pixels = jnp.asarray(image, jnp.float32).reshape(-1, image.shape[-1])
    background = jnp.asarray(cell_labels).ravel() == 0
    use = jnp.where(background.any(), background, True)
    return jnp.nanmedian(jnp.where(use[:, None], pixels, jnp.nan), axis=0)


def cell_occlusion(
    f: Callable[..., jax.Array],
    images: jax.Array,
    cell_labels: jax.Array,
    targets: jax.Array,
    *,
    max_cells: int,
    chunk: int = 8,
    f_args: Sequence[Any] = (),
) -> dict[str, jax.Array]:
    """Drop of the target score when each cell is removed; forward passes only.

    Cells are filled with `background_fill` one at a time; ``chunk`` cells of every image go
    through ``f`` together (vmapped), and the loop stops after the largest label of the batch,
    so empty slots up to ``max_cells`` cost nothing.

    Args:
      f: ``f(image [H, W, C], target, *f_args) -> scalar`` (e.g. the target's probability).
      images: [B, H, W, C]; cell_labels: [B, H, W] int in [0, max_cells]; targets: [B] int.
      max_cells: K (static); chunk: cells per forward batch (static).

    Returns:
      ``drop`` [B, K + 1] (``f(x) - f(x without cell k)`` at index k; 0 at index 0 and for
      labels absent from the image), ``score`` [B] (``f(x)``) and ``fill`` [B, C].
    """
    images = jnp.asarray(images, jnp.float32)
    cell_labels = jnp.asarray(cell_labels, jnp.int32)
    score = lambda image, target: f(image, target, *f_args)
    fills = jax.vmap(background_fill)(images, cell_labels)
    base = jax.vmap(score)(images, targets)

    def occluded_scores(start):
        ks = start + jnp.arange(chunk, dtype=jnp.int32)  # labels of this chunk

        def one(image, labels, fill, target):
            inside = labels[None, :, :, None] == ks[:, None, None, None]
            return jax.vmap(score, in_axes=(0, None))(jnp.where(inside, fill, image), target)

        return jax.vmap(one)(images, cell_labels, fills, targets)  # [B, chunk]

    def body(carry):
        start, drops = carry
        drop = base[:, None] - occluded_scores(start)
        return start + chunk, jax.lax.dynamic_update_slice(drops, drop, (0, start))

    # One chunk beyond K + 1 entries keeps every slice in bounds (no clamping).
    drops = jnp.zeros((images.shape[0], max_cells + 1 + chunk), jnp.float32)
    last = jnp.max(cell_labels)
    _, drops = jax.lax.while_loop(lambda c: c[0] <= last, body, (jnp.int32(1), drops))
    drops = drops[:, : max_cells + 1]
    absent = jax.vmap(lambda labels: jnp.bincount(labels.ravel(), length=max_cells + 1) == 0)(
        cell_labels
    )
    drops = jnp.where(absent | (jnp.arange(max_cells + 1) == 0), 0.0, drops)
    return {"drop": drops, "score": base, "fill": fills}


@functools.partial(jax.jit, static_argnames=("max_cells",))
def cell_metrics(
    attributions: jax.Array,
    cell_labels: jax.Array,
    nucleus_labels: jax.Array,
    occlusion_drop: jax.Array | None = None,
    *,
    max_cells: int,
) -> dict[str, jax.Array]:
    """`cell_scores` of a batch [B, ...] and, with the drops of `cell_occlusion`, the
    agreement between the maps and occlusion: ``occlusion_spearman`` (signed masses vs drops,
    over the cells present) and ``occlusion_top_agreement`` [B] (NaN without drops)."""
    one = functools.partial(cell_scores, max_cells=max_cells)
    out = jax.vmap(one)(attributions, cell_labels, nucleus_labels)
    batch = out["present"].shape[0]
    if occlusion_drop is None:
        nan = jnp.full((batch,), jnp.nan, jnp.float32)
        return {**out, "occlusion_spearman": nan, "occlusion_top_agreement": nan}
    present = out["present"]
    out["occlusion_spearman"] = jax.vmap(masked_spearman)(
        out["signed_mass"], occlusion_drop, present
    )
    top = jnp.argmax(jnp.where(present, occlusion_drop, -jnp.inf), axis=-1)
    agree = (top == out["deciding_cell"]).astype(jnp.float32)
    out["occlusion_top_agreement"] = jnp.where(out["deciding_cell"] > 0, agree, jnp.nan)
    return out
