"""The noise tunnel around any attribution method: SmoothGrad, SmoothGrad-squared, VarGrad.

``method`` is evaluated on ``num_samples`` copies of the image with Gaussian noise of std
``noise_level * value_range`` and the maps are reduced over the copies (captum's
``NoiseTunnel``, ``nt_type``):

- ``smoothgrad``: the mean (Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise").
- ``smoothgrad_sq``: the mean of the squared maps.
- ``vargrad``: the variance (Adebayo et al. 2018, "Local explanation methods for deep neural
  networks lack sensitivity to parameter values"; captum computes ``E[a^2] - E[a]^2``, the
  same number; the two-pass variance here stays exact where the maps agree).

``saliency.smoothgrad`` is the ``smoothgrad``/``smoothgrad_sq`` case for one image.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from cervix_jax.explain import loops

NOISE_TUNNEL_KINDS: tuple[str, ...] = ("smoothgrad", "smoothgrad_sq", "vargrad")


def noise_tunnel(
    method: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    key: jax.Array,
    *,
    kind: str = "smoothgrad",
    num_samples: int = 16,
    noise_level: float = 0.15,
    value_range: float = 255.0,
    batch_size: int | None = None,
) -> jax.Array:
    """``method`` averaged (or its variance taken) over noisy copies of one image.

    Args:
      method: ``image [H, W, C] -> map``, any attribution method.
      x: image [H, W, C]; key: PRNG key of the noise.
      kind: one of ``NOISE_TUNNEL_KINDS``.
      num_samples: noisy copies; noise_level: noise std as a fraction of ``value_range``.
      batch_size: copies evaluated together (memory bound); None = all at once.

    Returns:
      the reduced map (shape of ``method``'s output). Pure JAX: jit it with ``method``.
    """
    if kind not in NOISE_TUNNEL_KINDS:
        raise ValueError(f"Unknown noise tunnel {kind!r}; expected one of {NOISE_TUNNEL_KINDS}.")
    x = jnp.asarray(x)
    sigma = noise_level * value_range
    noise = sigma * jax.random.normal(key, (num_samples, *x.shape), x.dtype)
    maps = loops.over_samples(lambda n: method(x + n), noise, batch_size)
    if kind == "smoothgrad":
        return maps.mean(axis=0)
    if kind == "smoothgrad_sq":
        return jnp.square(maps).mean(axis=0)
    return maps.var(axis=0)


def vargrad(
    method: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    key: jax.Array,
    *,
    num_samples: int = 16,
    noise_level: float = 0.15,
    value_range: float = 255.0,
    batch_size: int | None = None,
) -> jax.Array:
    """VarGrad (Adebayo et al. 2018): the variance of ``method`` over noisy copies of ``x``."""
    return noise_tunnel(
        method,
        x,
        key,
        kind="vargrad",
        num_samples=num_samples,
        noise_level=noise_level,
        value_range=value_range,
        batch_size=batch_size,
    )


_STATIC = ("attr_fn", "kind", "num_samples", "noise_level", "value_range", "batch_size")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _noise_tunnel_batch(attr_fn, images, targets, key, args, **options):
    keys = jax.random.split(key, images.shape[0])
    if targets is None:
        one = lambda im, t, k: noise_tunnel(lambda z: attr_fn(z, *args), im, k, **options)
    else:
        one = lambda im, t, k: noise_tunnel(lambda z: attr_fn(z, t, *args), im, k, **options)
    return jax.vmap(one)(images, targets, keys)


def noise_tunnel_batch(
    attr_fn: Callable[..., jax.Array],
    images: jax.Array,
    key: jax.Array,
    targets: jax.Array | None = None,
    *,
    kind: str = "smoothgrad",
    num_samples: int = 16,
    noise_level: float = 0.15,
    value_range: float = 255.0,
    batch_size: int | None = None,
    args: Sequence[Any] = (),
) -> jax.Array:
    """``noise_tunnel`` of many images in one compiled program: maps [B, ...].

    ``attr_fn(image, target, *args) -> map`` when ``targets`` [B] is given, else
    ``attr_fn(image, *args)``; a static argument (create it once). Each image gets its own
    noise (``key`` split over the batch).
    """
    if kind not in NOISE_TUNNEL_KINDS:
        raise ValueError(f"Unknown noise tunnel {kind!r}; expected one of {NOISE_TUNNEL_KINDS}.")
    if targets is not None:
        targets = jnp.asarray(targets, jnp.int32)
    return _noise_tunnel_batch(
        attr_fn,
        jnp.asarray(images, jnp.float32),
        targets,
        key,
        tuple(args),
        kind=kind,
        num_samples=int(num_samples),
        noise_level=float(noise_level),
        value_range=float(value_range),
        batch_size=batch_size,
    )
