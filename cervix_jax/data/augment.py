"""Device-side preprocessing: pure JAX, jit-able, called inside the train step.

The host pipeline yields uint8 images; the step normalises and (for training) augments them here
from an explicit PRNG key, so resuming a run needs no augmentation state in the data iterator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # of [0, 1] RGB
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: jax.Array) -> jax.Array:
    """ImageNet mean/std normalisation.

    Args:
      images: [..., 3] uint8 (or float) in [0, 255].

    Returns:
      [..., 3] float32, ``(images / 255 - mean) / std``.
    """
    x = jnp.asarray(images, jnp.float32) / 255.0
    return (x - jnp.asarray(IMAGENET_MEAN, jnp.float32)) / jnp.asarray(IMAGENET_STD, jnp.float32)


def _get(config: Any, name: str, default):
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def _bilinear(image: jax.Array, ys: jax.Array, xs: jax.Array, fill: float) -> jax.Array:
    """Samples [H, W, C] at float coordinates ys, xs ([H', W']); outside samples get ``fill``."""
    height, width = image.shape[:2]
    y0, x0 = jnp.floor(ys), jnp.floor(xs)
    wy, wx = (ys - y0)[..., None], (xs - x0)[..., None]
    y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)

    def tap(y, x):
        inside = ((y >= 0) & (y < height) & (x >= 0) & (x < width))[..., None]
        value = image[jnp.clip(y, 0, height - 1), jnp.clip(x, 0, width - 1)]
        return jnp.where(inside, value, fill)

    top = tap(y0, x0) * (1 - wx) + tap(y0, x0 + 1) * wx
    bottom = tap(y0 + 1, x0) * (1 - wx) + tap(y0 + 1, x0 + 1) * wx
    return top * (1 - wy) + bottom * wy


def _transform_one(image, angle, flip_h, flip_v, fill):
    """Rotates [H, W, C] by ``angle`` radians about its centre, then flips."""
    height, width = image.shape[:2]
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    ys, xs = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32),
        jnp.arange(width, dtype=jnp.float32),
        indexing="ij",
    )
    # Flip the output grid, then rotate it back into the source (inverse mapping).
    xs = jnp.where(flip_h, width - 1 - xs, xs) - cx
    ys = jnp.where(flip_v, height - 1 - ys, ys) - cy
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    src_x = cos * xs + sin * ys + cx
    src_y = -sin * xs + cos * ys + cy
    return _bilinear(image, src_y, src_x, fill)


def augment(rng: jax.Array, images: jax.Array, config: Any) -> jax.Array:
    """Random rotation (bilinear, uniform in +-``rotation_degrees``) and random flips.

    Each image gets its own angle and flips, drawn from ``rng``; same key, same output. Pixels
    rotated in from outside the image are 0, as in torchvision's ``RandomRotation``.

    Args:
      rng: PRNG key.
      images: [B, H, W, C] uint8 or float.
      config: mapping or ConfigDict with ``rotation_degrees`` (float), ``horizontal_flip`` and
        ``vertical_flip`` (bool); missing fields mean no rotation / no flip.

    Returns:
      [B, H, W, C], same dtype as ``images`` (uint8 results are rounded).
    """
    degrees = float(_get(config, "rotation_degrees", 0.0))
    batch = images.shape[0]
    key_angle, key_h, key_v = jax.random.split(rng, 3)
    angles = jax.random.uniform(key_angle, (batch,), minval=-degrees, maxval=degrees)
    angles = angles * (np.pi / 180.0)
    flip_h = jax.random.bernoulli(key_h, 0.5, (batch,)) & bool(
        _get(config, "horizontal_flip", False)
    )
    flip_v = jax.random.bernoulli(key_v, 0.5, (batch,)) & bool(_get(config, "vertical_flip", False))
    x = images.astype(jnp.float32)
    out = jax.vmap(_transform_one, in_axes=(0, 0, 0, 0, None))(x, angles, flip_h, flip_v, 0.0)
    if images.dtype == jnp.uint8:
        return jnp.clip(jnp.round(out), 0, 255).astype(jnp.uint8)
    return out.astype(images.dtype)
