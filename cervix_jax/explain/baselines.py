"""Baselines for integrated gradients, all in **pixel space** (float32, [0, 255]).

The attribution functions assume ``f`` takes pixel-space images (it normalises inside), so
baselines are pixel-space images too: black is zeros here. For an ``f`` on normalised inputs,
map baselines with ``to_normalized_space`` first (black becomes ``-mean / std``).

Every function returns a stack ``[K, H, W, C]`` of K baselines for one image, or
``[B, K, H, W, C]`` through ``make_baselines``; ``integrated_gradients_batch`` averages over K.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

BASELINE_KINDS: tuple[str, ...] = ("black", "uniform", "blurred")

# ImageNet statistics in pixel units (the data wing normalises with the same numbers).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0


def black(image: jax.Array) -> jax.Array:
    """One black baseline [1, H, W, C] (zeros in pixel space)."""
    return jnp.zeros((1, *image.shape), jnp.float32)


def uniform(
    key: jax.Array, image: jax.Array, num: int = 10, low: float = 0.0, high: float = 255.0
) -> jax.Array:
    """``num`` images [num, H, W, C] with i.i.d. uniform pixels in [low, high] (the paper's)."""
    return jax.random.uniform(key, (num, *image.shape), jnp.float32, low, high)


def separable_filter(image: jax.Array, kernel: jax.Array) -> jax.Array:
    """[H, W, C] filtered by the odd-length 1-D ``kernel`` along columns, then rows, channel by
    channel, borders edge-replicated (the Gaussian blurs of the blurred baseline and Blur IG)."""
    size = kernel.shape[0]
    radius = (size - 1) // 2
    channels = image.shape[-1]
    out = jnp.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="edge")[None]
    for shape in ((size, 1, 1, channels), (1, size, 1, channels)):
        weights = jnp.broadcast_to(jnp.reshape(kernel, shape[:2] + (1, 1)), shape)
        out = jax.lax.conv_general_dilated(
            out,
            weights,
            (1, 1),
            "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=channels,
        )
    return out[0]


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(round(3.0 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def blurred(image: jax.Array, sigma: float = 5.0) -> jax.Array:
    """Gaussian-blurred image [1, H, W, C] (separable, edge-replicated borders)."""
    if sigma <= 0:
        raise ValueError(f"blur sigma must be > 0, got {sigma}.")
    kernel = jnp.asarray(_gaussian_kernel(sigma))
    return separable_filter(jnp.asarray(image, jnp.float32), kernel)[None]


def make_baselines(
    kind: str | jax.Array | np.ndarray,
    images: jax.Array,
    key: jax.Array | None = None,
    *,
    num: int = 10,
    sigma: float = 5.0,
) -> jax.Array:
    """Baselines [B, K, H, W, C] for images [B, H, W, C].

    Args:
      kind: ``black`` (K=1), ``uniform`` (K=num independent draws per image; needs ``key``),
        ``blurred`` (K=1) or an array (broadcast to [B, K, H, W, C], given in pixel space).
      images: [B, H, W, C] pixel-space images.
      key: PRNG key for ``uniform``.
    """
    images = jnp.asarray(images, jnp.float32)
    if not isinstance(kind, str):
        given = jnp.asarray(kind, jnp.float32)
        if given.ndim == images.ndim - 1:
            given = given[None]
        if given.ndim == images.ndim:
            given = jnp.broadcast_to(given[None], (images.shape[0], *given.shape))
        return jnp.broadcast_to(given, (images.shape[0], given.shape[1], *images.shape[1:]))
    if kind == "black":
        return jax.vmap(black)(images)
    if kind == "uniform":
        if key is None:
            raise ValueError("uniform baselines need a PRNG key (make_baselines(..., key=...)).")
        keys = jax.random.split(key, images.shape[0])
        return jax.vmap(lambda k, im: uniform(k, im, num))(keys, images)
    if kind == "blurred":
        return jax.vmap(lambda im: blurred(im, sigma))(images)
    raise ValueError(f"Unknown baseline {kind!r}; expected one of {BASELINE_KINDS} or an array.")


def to_normalized_space(
    pixels: jax.Array, mean: np.ndarray = IMAGENET_MEAN, std: np.ndarray = IMAGENET_STD
) -> jax.Array:
    """Pixel-space arrays [..., C] to normalised space ``(p - mean) / std``."""
    return (jnp.asarray(pixels, jnp.float32) - mean) / std
