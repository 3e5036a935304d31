"""Similarity of two attribution maps, for the randomization and random-logit tests.

A map is [H, W] or [H, W, C]; channels are summed first (signed for ``spearman``, absolute
values for the ``*_abs`` measures and SSIM), as Adebayo et al. (2018) compare their maps.

- ``spearman``: Spearman rank correlation of the signed maps ("rank correlation, no abs").
- ``spearman_abs``: Spearman rank correlation of ``|map|`` ("rank correlation, abs"; Quantus
  MPRT's default ``similarity_func=correlation_spearman`` with ``abs=True``).
- ``pearson_abs``: Pearson correlation of ``|map|``.
- ``ssim``: structural similarity (Wang et al. 2004) of ``|map| / max |map|`` (maps in
  [0, 1], data range 1): Gaussian window of 11 taps, sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``,
  averaged over the window positions that lie inside the map (what ``skimage``'s
  ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)`` averages
  after cropping its border). Maps must be at least 11 x 11.

Correlations are NaN when a map is constant (no ranking to compare).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cervix_jax.explain.scores import spearman

SIMILARITY_MEASURES: tuple[str, ...] = ("spearman", "spearman_abs", "pearson_abs", "ssim")

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5


def _to_2d(a: jax.Array, absolute: bool) -> jax.Array:
    a = jnp.asarray(a, jnp.float32)
    if absolute:
        a = jnp.abs(a)
    return a.sum(axis=-1) if a.ndim == 3 else a


def pearson(a: jax.Array, b: jax.Array) -> jax.Array:
    """Pearson correlation of two maps of equal size (NaN if either is constant)."""
    a = jnp.ravel(a).astype(jnp.float32)
    b = jnp.ravel(b).astype(jnp.float32)
    a = a - a.mean()
    b = b - b.mean()
    denom = jnp.sqrt((a * a).sum() * (b * b).sum())
    return jnp.where(denom > 0, (a * b).sum() / jnp.where(denom > 0, denom, 1.0), jnp.nan)


def _gaussian_window() -> np.ndarray:
    t = np.arange(_SSIM_WINDOW, dtype=np.float64) - (_SSIM_WINDOW - 1) / 2
    w = np.exp(-0.5 * (t / _SSIM_SIGMA) ** 2)
    return (w / w.sum()).astype(np.float32)


def _filter_valid(x: jax.Array) -> jax.Array:
    """Separable Gaussian filter of [H, W], only where the window fits ('valid')."""
    w = jnp.asarray(_gaussian_window())
    n = _SSIM_WINDOW
    rows = sum(w[i] * x[i : x.shape[0] - n + 1 + i] for i in range(n))
    return sum(w[j] * rows[:, j : x.shape[1] - n + 1 + j] for j in range(n))


def ssim(
    a: jax.Array, b: jax.Array, *, data_range: float = 1.0, k1: float = 0.01, k2: float = 0.03
) -> jax.Array:
    """Mean structural similarity of two [H, W] images (Wang et al. 2004), H, W >= 11.

    Gaussian window (11 taps, sigma 1.5), ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` with
    ``L = data_range``; population (not sample) moments, averaged over the valid positions.
    """
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    if a.ndim != 2 or a.shape != b.shape or min(a.shape) < _SSIM_WINDOW:
        raise ValueError(
            f"ssim needs two 2-D maps of equal shape, at least {_SSIM_WINDOW} x {_SSIM_WINDOW}; "
            f"got {a.shape} and {b.shape}."
        )
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    # Moments of the mean-free maps: E[x^2] - E[x]^2 cancels less in float32 (and the
    # (co)variances do not change under a shift); the means are shifted back.
    a0, b0 = a - a.mean(), b - b.mean()
    mu_a0, mu_b0 = _filter_valid(a0), _filter_valid(b0)
    var_a = _filter_valid(a0 * a0) - mu_a0**2
    var_b = _filter_valid(b0 * b0) - mu_b0**2
    cov = _filter_valid(a0 * b0) - mu_a0 * mu_b0
    mu_a, mu_b = mu_a0 + a.mean(), mu_b0 + b.mean()
    numerator = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    denominator = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (numerator / denominator).mean()


def _unit_max(a: jax.Array) -> jax.Array:
    top = a.max()
    return a / jnp.where(top > 0, top, 1.0)


@functools.partial(jax.jit, static_argnames="measure")
def map_similarity(a: jax.Array, b: jax.Array, measure: str) -> jax.Array:
    """Similarity of maps ``a``, ``b`` ([H, W] or [H, W, C]) by one of ``SIMILARITY_MEASURES``."""
    if measure == "spearman":
        return spearman(_to_2d(a, False), _to_2d(b, False))
    if measure == "spearman_abs":
        return spearman(_to_2d(a, True), _to_2d(b, True))
    if measure == "pearson_abs":
        return pearson(_to_2d(a, True), _to_2d(b, True))
    if measure == "ssim":
        return ssim(_unit_max(_to_2d(a, True)), _unit_max(_to_2d(b, True)))
    raise ValueError(f"Unknown similarity {measure!r}; expected one of {SIMILARITY_MEASURES}.")


def map_similarities(
    maps_a: jax.Array, maps_b: jax.Array, measures: Sequence[str] = SIMILARITY_MEASURES
) -> dict[str, jax.Array]:
    """Per-image similarities of two batches of maps [B, ...]: ``{measure: [B]}``."""
    return {
        m: jax.vmap(lambda a, b, m=m: map_similarity(a, b, m))(maps_a, maps_b) for m in measures
    }
