"""Numbers that say whether an attribution map points at the cells.

All functions are pure JAX on one map; the ``*_batch`` forms and the deletion/insertion
curves are ``vmap``-ed and jitted. A *heatmap* is [H, W], non-negative: ``to_heatmap`` turns
attributions [H, W, C] into one the way the paper displays them (positive part, mean over
colour channels).

- Completeness: ``|sum(attr) - (f(x) - f(b))| / |f(x) - f(b)|``.
- Localisation ratio: share of the heatmap's mass inside a mask divided by the mask's share of
  the image area; 1.0 = no better than uniform, ``1 / area_share`` = everything inside.
- Energy-based pointing game (Wang et al. 2020, Score-CAM): share of the mass inside the mask.
  ``pointing_game`` is the classic hit/miss of the maximum (Zhang et al. 2016).
- Deletion / insertion (Petsiuk et al. 2018): pixels removed from (added to) the image in order
  of decreasing attribution, ``steps`` equal chunks; the AUC of the target score over the
  removed fraction in [0, 1] (trapezoid rule). Low deletion / high insertion AUC is good.
- Sanity check (Adebayo et al. 2018): Spearman rank correlation between the maps of the
  trained model and of the same architecture re-initialised; low is good.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cervix_jax.explain import baselines as baselines_lib


def to_heatmap(attributions: jax.Array) -> jax.Array:
    """[H, W, C] attributions -> [H, W] heatmap: positive part, then channel mean.

    A 2-D input (e.g. a Grad-CAM map) is returned with only its positive part kept.
    """
    a = jnp.maximum(jnp.asarray(attributions, jnp.float32), 0.0)
    return a if a.ndim == 2 else a.mean(axis=-1)


def completeness_relative_error(
    completeness_error: jax.Array, score_difference: jax.Array, eps: float = 1e-12
) -> jax.Array:
    """``|completeness_error| / |f(x) - f(baseline)|`` (elementwise)."""
    return jnp.abs(completeness_error) / jnp.maximum(jnp.abs(score_difference), eps)


def mass_share(heatmap: jax.Array, mask: jax.Array) -> jax.Array:
    """Share of the positive heatmap mass inside ``mask`` [H, W] (NaN for an all-zero map).

    This is the energy-based pointing game.
    """
    h = to_heatmap(heatmap)
    m = jnp.asarray(mask, jnp.float32)
    total = h.sum()
    return jnp.where(total > 0, (h * m).sum() / jnp.where(total > 0, total, 1.0), jnp.nan)


energy_pointing_game = mass_share


def localization_ratio(heatmap: jax.Array, mask: jax.Array) -> jax.Array:
    """Mass share inside ``mask`` divided by its area share (1.0 = uniform; NaN if empty)."""
    m = jnp.asarray(mask, jnp.float32)
    area = m.mean()
    return jnp.where(area > 0, mass_share(heatmap, m) / jnp.where(area > 0, area, 1.0), jnp.nan)


def pointing_game(heatmap: jax.Array, mask: jax.Array) -> jax.Array:
    """1.0 if the heatmap's maximum lies inside ``mask``, else 0.0 (first maximum on ties)."""
    h = to_heatmap(heatmap)
    m = jnp.asarray(mask, jnp.float32)
    return m.ravel()[jnp.argmax(h.ravel())]


def localization_metrics(heatmaps: jax.Array, cell_masks: jax.Array, nucleus_masks: jax.Array):
    """Per-image localisation numbers for [B, H, W(, C)] maps and [B, H, W] masks.

    Returns a dict of [B] arrays: ``localization_cells``, ``localization_nuclei`` and
    ``pointing_game`` (energy-based, w.r.t. the cell mask).
    """
    return {
        "localization_cells": jax.vmap(localization_ratio)(heatmaps, cell_masks),
        "localization_nuclei": jax.vmap(localization_ratio)(heatmaps, nucleus_masks),
        "pointing_game": jax.vmap(energy_pointing_game)(heatmaps, cell_masks),
    }


def _trapezoid_auc(curve: jax.Array) -> jax.Array:
    """Area under ``curve`` [..., n+1] sampled uniformly on [0, 1]."""
    n = curve.shape[-1] - 1
    return (curve[..., 1:] + curve[..., :-1]).sum(axis=-1) / (2.0 * n)


def removal_order(heatmap: jax.Array, steps: int) -> tuple[jax.Array, jax.Array]:
    """The order in which deletion and insertion take pixels away (or give them back).

    Returns each pixel's rank by decreasing attribution, [H, W] int32 (ties in raster order),
    and the number of pixels removed at each of the ``steps + 1`` curve points, [steps + 1]
    int32 from 0 to H * W: pixel p is removed at point i when ``rank[p] < counts[i]``.
    """
    h, w = heatmap.shape
    num_pixels = h * w
    order = jnp.argsort(-heatmap.ravel(), stable=True)
    rank = jnp.zeros(num_pixels, jnp.int32).at[order].set(jnp.arange(num_pixels, dtype=jnp.int32))
    counts = jnp.asarray(np.round(np.linspace(0, num_pixels, steps + 1)).astype(np.int32))
    return rank.reshape(h, w), counts


def _curves_one(f, steps, batch_size, image, heatmap, deleted, start, target, f_args):
    rank, counts = removal_order(heatmap, steps)
    score = (lambda z: f(z, *f_args)) if target is None else (lambda z: f(z, target, *f_args))

    def both(count):
        chosen = (rank < count)[..., None]
        return jnp.stack(
            [score(jnp.where(chosen, deleted, image)), score(jnp.where(chosen, image, start))]
        )

    values = jax.lax.map(both, counts, batch_size=batch_size or steps + 1)
    return values[:, 0], values[:, 1]


@functools.partial(jax.jit, static_argnames=("f", "steps", "batch_size", "blur_sigma"))
def _curves_jit(
    f, images, heatmaps, deleted, start, targets, f_args, *, steps, batch_size, blur_sigma
):
    if start is None:
        start = jax.vmap(lambda im: baselines_lib.blurred(im, blur_sigma)[0])(images)
    one = lambda im, hm, de, st, t: _curves_one(f, steps, batch_size, im, hm, de, st, t, f_args)
    return jax.vmap(one)(images, heatmaps, deleted, start, targets)


def deletion_insertion(
    f: Callable[..., jax.Array],
    images: jax.Array,
    heatmaps: jax.Array,
    targets: jax.Array | None = None,
    *,
    steps: int = 16,
    deletion_baseline: jax.Array | float = 0.0,
    insertion_baseline: jax.Array | None = None,
    blur_sigma: float = 5.0,
    batch_size: int | None = None,
    f_args: Sequence[Any] = (),
) -> dict[str, jax.Array]:
    """Deletion and insertion curves and AUCs (Petsiuk et al. 2018, RISE).

    Args:
      f: score, ``f(image, target, *f_args)`` (or ``f(image, *f_args)`` without targets); use
        the target's softmax probability as the paper does.
      images: [B, H, W, C]; heatmaps: [B, H, W] (or attributions [B, H, W, C], reduced by
        their channel mean with the sign kept), higher = more important; ties are taken in
        raster order.
      steps: curve has ``steps + 1`` points, ``round(k * H * W / steps)`` pixels changed at k.
      deletion_baseline: what deleted pixels become (0 = black in pixel space), broadcastable
        to images.
      insertion_baseline: the image insertion starts from; None = the image blurred with
        ``blur_sigma`` (Petsiuk's choice).
      batch_size: curve points evaluated together (memory bound); None = all.

    Returns:
      dict of ``deletion_curve``, ``insertion_curve`` [B, steps + 1] and ``deletion_auc``,
      ``insertion_auc`` [B].
    """
    images = jnp.asarray(images, jnp.float32)
    heatmaps = jnp.asarray(heatmaps, jnp.float32)
    if heatmaps.ndim == 4:  # signed channel mean: negative evidence is removed last
        heatmaps = heatmaps.mean(axis=-1)
    deleted = jnp.broadcast_to(jnp.asarray(deletion_baseline, jnp.float32), images.shape)
    start = (
        None
        if insertion_baseline is None
        else jnp.broadcast_to(jnp.asarray(insertion_baseline, jnp.float32), images.shape)
    )
    if targets is not None:
        targets = jnp.asarray(targets, jnp.int32)
    deletion, insertion = _curves_jit(
        f,
        images,
        heatmaps,
        deleted,
        start,
        targets,
        tuple(f_args),
        steps=steps,
        batch_size=batch_size,
        blur_sigma=blur_sigma,
    )
    return {
        "deletion_curve": deletion,
        "insertion_curve": insertion,
        "deletion_auc": _trapezoid_auc(deletion),
        "insertion_auc": _trapezoid_auc(insertion),
    }


def spearman(a: jax.Array, b: jax.Array) -> jax.Array:
    """Spearman rank correlation of two maps of equal size (average ranks for ties)."""
    rank_a = jax.scipy.stats.rankdata(jnp.ravel(a).astype(jnp.float32))
    rank_b = jax.scipy.stats.rankdata(jnp.ravel(b).astype(jnp.float32))
    rank_a = rank_a - rank_a.mean()
    rank_b = rank_b - rank_b.mean()
    covariance = (rank_a * rank_b).sum()
    denom = jnp.sqrt((rank_a * rank_a).sum() * (rank_b * rank_b).sum())
    return jnp.where(denom > 0, covariance / jnp.where(denom > 0, denom, 1.0), jnp.nan)


def sanity_check(
    maps_trained: jax.Array, maps_random: jax.Array, *, absolute: bool = True
) -> jax.Array:
    """Adebayo et al. (2018) model-randomisation test: per-image Spearman correlation [B].

    Args:
      maps_trained, maps_random: [B, ...] maps of the trained model and of the same
        architecture with re-initialised weights, same images and targets.
      absolute: compare ``|map|`` (Adebayo et al. report both; sign flips are common).

    A high correlation means the map does not depend on what the model learned.
    """
    if absolute:
        maps_trained, maps_random = jnp.abs(maps_trained), jnp.abs(maps_random)
    return jax.vmap(spearman)(maps_trained, maps_random)
