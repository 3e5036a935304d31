"""Robustness: how much does the map move when the image barely does?

Max-sensitivity (Yeh et al. 2019, "On the (in)fidelity and sensitivity of explanations";
captum's ``captum.metrics.sensitivity_max``, Quantus ``MaxSensitivity``): the largest relative
change of the map over ``num_samples`` perturbations drawn uniformly from the L-infinity ball
of radius ``radius``, ``max_s ||attr(x + d_s) - attr(x)|| / ||attr(x)||`` (the denominator is
1 for an all-zero map, as in captum).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from cervix_jax.explain import loops


def _norm(x: jax.Array, ord: str | float) -> jax.Array:
    return jnp.linalg.norm(jnp.ravel(x), ord=2 if ord == "fro" else ord)


def _sensitivity_one(attr_fn, image, target, key, reference, args, options):
    num_samples, radius, ord, batch_size = options
    explain = (
        (lambda z: attr_fn(z, *args)) if target is None else (lambda z: attr_fn(z, target, *args))
    )
    if reference is None:
        reference = explain(image)
    size = _norm(reference, ord)
    size = jnp.where(size == 0, 1.0, size)

    def change(k):
        d = jax.random.uniform(k, image.shape, image.dtype, -radius, radius)
        return _norm(explain(image + d) - reference, ord) / size

    return loops.over_samples(change, jax.random.split(key, num_samples), batch_size).max()


@functools.partial(jax.jit, static_argnames=("attr_fn", "options"))
def _max_sensitivity(attr_fn, images, targets, keys, references, args, *, options):
    one = lambda im, t, k, r: _sensitivity_one(attr_fn, im, t, k, r, args, options)
    return jax.vmap(one)(images, targets, keys, references)


def max_sensitivity(
    attr_fn: Callable[..., jax.Array],
    images: jax.Array,
    key: jax.Array,
    targets: jax.Array | None = None,
    *,
    radius: float = 5.1,
    num_samples: int = 10,
    ord: str | float = "fro",
    batch_size: int | None = None,
    args: Sequence[Any] = (),
    reference: jax.Array | None = None,
) -> jax.Array:
    """Max-sensitivity per image [B] (captum ``sensitivity_max`` with its default perturbation).

    Args:
      attr_fn: ``attr_fn(image, target, *args) -> map`` (or ``attr_fn(image, *args)`` without
        targets), pure and jittable, static.
      images: [B, H, W, C]; key: PRNG key of the perturbations; targets: [B] int or None.
      radius: L-infinity radius in image units (5.1 = captum's 0.02 times 255, pixel space).
      num_samples: perturbations per image (captum's ``n_perturb_samples``).
      ord: norm of the flattened map difference: ``'fro'`` (L2, captum's default) or a number
        / ``inf`` for ``jnp.linalg.norm``.
      batch_size: perturbed maps computed together; None = all in one ``vmap``.
      reference: the maps of the unperturbed images [B, ...] when the caller has them
        already; None = computed here.
    """
    if targets is not None:
        targets = jnp.asarray(targets, jnp.int32)
    images = jnp.asarray(images, jnp.float32)
    keys = jax.random.split(key, images.shape[0])
    options = (int(num_samples), float(radius), ord, batch_size)
    return _max_sensitivity(attr_fn, images, targets, keys, reference, tuple(args), options=options)
