"""Robustness: how much does the map move when the image barely does?

Max-sensitivity (Yeh et al. 2019, "On the (in)fidelity and sensitivity of explanations";
captum's ``captum.metrics.sensitivity_max``, Quantus ``MaxSensitivity``): the largest relative
change of the map over ``num_samples`` perturbations drawn uniformly from the L-infinity ball
of radius ``radius``, ``max_s ||attr(x + d_s) - attr(x)|| / ||attr(x)||`` (the denominator is
1 for an all-zero map, as in captum). ``max_sensitivity`` takes a per-image method,
``batched_max_sensitivity`` a method of a whole batch (its perturbed copies become rows of the
batch, ``loops.over_copies``); the first runs through the second.
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
      batch_size: perturbed maps of every image computed together; None = all at once.
      reference: the maps of the unperturbed images [B, ...] when the caller has them
        already; None = computed here.
    """
    keys = jax.random.split(key, jnp.shape(images)[0])
    return batched_max_sensitivity(
        loops.EachImage(attr_fn),
        images,
        keys,
        targets,
        radius=radius,
        num_samples=num_samples,
        ord=ord,
        together=batch_size,
        args=args,
        reference=reference,
    )


@functools.partial(jax.jit, static_argnames=("explain_fn", "options"))
def _batched(explain_fn, images, keys, targets, args, row_args, reference, *, options):
    num_samples, radius, ord, together = options
    fn = lambda rows, t, *rest: explain_fn(rows, t, *args, *rest)
    if reference is None:
        reference = fn(images, targets, *row_args)
    draw = lambda k, x: jax.random.uniform(k, x.shape, x.dtype, -radius, radius)
    deltas = jax.vmap(lambda k, x: jax.vmap(lambda s: draw(s, x))(jax.random.split(k, num_samples)))
    copies = images[:, None] + deltas(keys, images)  # [B, N, ...]
    maps = loops.over_copies(fn, copies, (targets, *row_args), together)
    norm = jax.vmap(jax.vmap(lambda m: _norm(m, ord)))
    size = jax.vmap(lambda m: _norm(m, ord))(reference)
    size = jnp.where(size == 0, 1.0, size)
    return (norm(maps - reference[:, None]) / size[:, None]).max(axis=1)


def batched_max_sensitivity(
    explain_fn: Callable[..., jax.Array],
    images: jax.Array,
    keys: jax.Array,
    targets: jax.Array | None = None,
    *,
    radius: float = 5.1,
    num_samples: int = 10,
    ord: str | float = "fro",
    together: int | None = None,
    args: Sequence[Any] = (),
    row_args: Sequence[jax.Array] = (),
    reference: jax.Array | None = None,
) -> jax.Array:
    """`max_sensitivity` of a batched method, per image [B].

    ``explain_fn(images [M, ...], targets [M] | None, *args, *row_args [M, ...]) -> maps
    [M, ...]`` (static) explains a batch at once; the perturbed copies go through it as rows
    of its batch, ``together`` copies of every image at a time (``loops.over_copies``), each
    with its image's target and ``row_args`` (e.g. the PRNG key of its baselines, so that
    only the perturbation changes the map). Image ``i``'s perturbations come from
    ``keys[i]`` split ``num_samples`` times.
    """
    if targets is not None:
        targets = jnp.asarray(targets, jnp.int32)
    options = (int(num_samples), float(radius), ord, together)
    return _batched(
        explain_fn,
        jnp.asarray(images, jnp.float32),
        keys,
        targets,
        tuple(args),
        tuple(row_args),
        reference,
        options=options,
    )
