"""Input gradient (saliency) and SmoothGrad, the noise tunnel over any attribution method."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp


def input_gradient(f: Callable[..., jax.Array], x: jax.Array, f_args: Sequence[Any] = ()):
    """Gradient ``df/dx`` [H, W, C] of ``f(image, *f_args) -> scalar`` (Simonyan et al. 2014).

    The paper's "gradient" panels show this map; ``abs`` or the positive part is a rendering
    choice (``render.py``), so the raw signed gradient is returned.
    """
    return jax.grad(lambda z: f(z, *f_args))(jnp.asarray(x))


@functools.partial(jax.jit, static_argnames=("f",))
def _input_gradients(f, images, targets, f_args):
    if targets is None:
        return jax.vmap(lambda im: jax.grad(lambda z: f(z, *f_args))(im))(images)
    return jax.vmap(lambda im, t: jax.grad(lambda z: f(z, t, *f_args))(im))(images, targets)


def input_gradients(
    f: Callable[..., jax.Array],
    images: jax.Array,
    targets: jax.Array | None = None,
    f_args: Sequence[Any] = (),
) -> jax.Array:
    """Batched ``input_gradient`` [B, H, W, C] (jitted; ``f`` static, as in IG's batched form).

    ``f(image, target, *f_args)`` when ``targets`` [B] is given, else ``f(image, *f_args)``.
    """
    if targets is not None:
        targets = jnp.asarray(targets, jnp.int32)
    return _input_gradients(f, jnp.asarray(images), targets, tuple(f_args))


def smoothgrad(
    method: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    key: jax.Array,
    *,
    num_samples: int = 16,
    noise_level: float = 0.15,
    value_range: float = 255.0,
    squared: bool = False,
    batch_size: int | None = None,
) -> jax.Array:
    """SmoothGrad (Smilkov et al. 2017): the mean of ``method`` over noisy copies of ``x``.

    Args:
      method: ``image [H, W, C] -> attributions [H, W, C]``, any method (input gradient, IG
        with a fixed baseline, ...): the noise tunnel wraps it unchanged.
      x: image [H, W, C].
      key: PRNG key of the Gaussian noise.
      num_samples: noisy copies.
      noise_level: noise standard deviation as a fraction of ``value_range`` (255 for pixel
        space; use the range of your inputs otherwise).
      squared: average squared attributions (SmoothGrad-SQ) instead.
      batch_size: noisy copies evaluated together (``jax.lax.map`` batch size, to bound
        memory); None = all at once.

    Returns:
      attributions [H, W, C]. Pure JAX: jit it together with ``method``.
    """
    x = jnp.asarray(x)
    sigma = noise_level * value_range
    noise = sigma * jax.random.normal(key, (num_samples, *x.shape), x.dtype)
    batch = min(batch_size or num_samples, num_samples)
    if batch == num_samples:
        # One batch: a plain vmap. lax.map would still wrap it in a one-trip XLA while loop,
        # and inside loops XLA CPU runs input-gradient convolutions on a slow path (see
        # "Chunk loop" in integrated_gradients.py).
        maps = jax.vmap(lambda n: method(x + n))(noise)
    else:
        maps = jax.lax.map(lambda n: method(x + n), noise, batch_size=batch)
    if squared:
        maps = jnp.square(maps)
    return maps.mean(axis=0)
