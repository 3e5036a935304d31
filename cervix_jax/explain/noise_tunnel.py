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
``noise_tunnel_batch`` takes a per-image method; ``batched_noise_tunnel`` a method of a whole
batch (the attribution methods of ``explain.batch``), whose noisy copies become rows of its
batch (``loops.over_copies``) rather than a ``vmap`` around it.
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
    return reduce_copies(maps, kind, axis=0)


def reduce_copies(maps: jax.Array, kind: str, axis: int = 0) -> jax.Array:
    """The maps of the noisy copies (along ``axis``) reduced as ``kind`` says."""
    if kind == "smoothgrad":
        return maps.mean(axis=axis)
    if kind == "smoothgrad_sq":
        return jnp.square(maps).mean(axis=axis)
    return maps.var(axis=axis)


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
    noise (``key`` split over the batch), ``batch_size`` copies of every image at once.
    """
    keys = jax.random.split(key, jnp.shape(images)[0])
    options = dict(kind=kind, num_samples=num_samples, noise_level=noise_level)
    options.update(value_range=value_range, together=batch_size, args=args)
    return batched_noise_tunnel(loops.EachImage(attr_fn), images, keys, targets, **options)


_STATIC = ("explain_fn", "kind", "num_samples", "noise_level", "value_range", "together")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _batched(explain_fn, images, keys, targets, args, row_args, **options):
    kind, n, together = options["kind"], options["num_samples"], options["together"]
    sigma = options["noise_level"] * options["value_range"]
    draw = lambda k, x: sigma * jax.random.normal(k, (n, *x.shape), x.dtype)
    copies = images[:, None] + jax.vmap(draw)(keys, images)  # [B, N, ...]
    fn = lambda rows, t, *rest: explain_fn(rows, t, *args, *rest)
    maps = loops.over_copies(fn, copies, (targets, *row_args), together)
    return reduce_copies(maps, kind, axis=1)


def batched_noise_tunnel(
    explain_fn: Callable[..., jax.Array],
    images: jax.Array,
    keys: jax.Array,
    targets: jax.Array | None = None,
    *,
    kind: str = "smoothgrad",
    num_samples: int = 16,
    noise_level: float = 0.15,
    value_range: float = 255.0,
    together: int | None = None,
    args: Sequence[Any] = (),
    row_args: Sequence[jax.Array] = (),
) -> jax.Array:
    """The noise tunnel around a batched method: maps [B, ...].

    ``explain_fn(images [M, ...], targets [M] | None, *args, *row_args [M, ...]) -> maps
    [M, ...]`` (static) explains a batch at once, as the attribution methods of
    ``explain.batch`` do; the noisy copies of the B images go through it as rows of its
    batch, ``together`` copies of every image at a time (``loops.over_copies``), each with its
    image's target and ``row_args`` (e.g. the PRNG key of its baselines). Image ``i``'s noise
    is ``noise_tunnel``'s with ``keys[i]``, so the two give the same maps.

    Args:
      images: [B, H, W, C]; keys: [B] PRNG keys of the noise; targets: [B] int or None.
      kind, num_samples, noise_level, value_range: as in `noise_tunnel`.
    """
    if kind not in NOISE_TUNNEL_KINDS:
        raise ValueError(f"Unknown noise tunnel {kind!r}; expected one of {NOISE_TUNNEL_KINDS}.")
    if targets is not None:
        targets = jnp.asarray(targets, jnp.int32)
    return _batched(
        explain_fn,
        jnp.asarray(images, jnp.float32),
        keys,
        targets,
        tuple(args),
        tuple(row_args),
        kind=kind,
        num_samples=int(num_samples),
        noise_level=float(noise_level),
        value_range=float(value_range),
        together=together,
    )
