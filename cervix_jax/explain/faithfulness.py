"""Faithfulness: does removing what the map points at change the score as the map says?

Deletion / insertion (Petsiuk et al. 2018, RISE) with a choice of what removed pixels become
(``Fill``), recorded with the results:

- ``constant``: a fixed value (0 = black in pixel space), today's ``scores.deletion_insertion``.
- ``blur``: the pixel of the Gaussian-blurred image (``baselines.blurred``, sigma ``sigma``).
- ``linear``: ROAD's noisy linear imputation (Rong et al. 2022, "A consistent and efficient
  evaluation strategy for attribution methods"; ``road.imputations.NoisyLinearImputer``).
  Each removed pixel equals the weighted mean of its in-image 8 neighbours (weight 1/6 for
  the 4 direct, 1/12 for the 4 diagonal ones, normalised by the weights that fall inside the
  image), removed neighbours included: a sparse linear system over all removed pixels with the
  kept pixels as boundary values. ROAD solves it exactly (``spsolve``); here it is solved by
  ``iterations`` steps of conjugate gradients on the image grid (the system, multiplied by
  each pixel's weight total, is symmetric positive definite; jittable and batched). Then
  Gaussian noise of std ``noise_std`` is added to the imputed pixels, so that the pattern of
  removed pixels itself does not leak the ranking (ROAD's argument). A region with no kept
  pixel at all (e.g. everything removed) gets the mean of the kept pixels, 0 if none.
  Imputed values stay inside the range of their boundary (a weighted mean), so the removed
  image looks like the training data rather than a black hole.

Infidelity (Yeh et al. 2019, "On the (in)fidelity and sensitivity of explanations"; captum's
``captum.metrics.infidelity``): ``E_I[(I . attr - (f(x) - f(x - I)))^2]`` over random
perturbations ``I``; ``normalize`` rescales the attributions by the least-squares ``beta``
first (captum's option).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from cervix_jax.explain import baselines as baselines_lib
from cervix_jax.explain import loops, scores

FILL_KINDS: tuple[str, ...] = ("constant", "blur", "linear")


@dataclasses.dataclass(frozen=True)
class Fill:
    """What removed pixels become (hashable: a static argument of the compiled programs).

    Attributes:
      kind: ``constant`` | ``blur`` | ``linear`` (module docstring).
      value: the constant (pixel space; 0 = black).
      sigma: Gaussian blur sigma in pixels (``blur``).
      noise_std: std of the noise added to linearly imputed pixels, in image units (2.55 =
        ROAD's 0.01 on images in [0, 1]); 0 = none.
      iterations: conjugate-gradient steps of the linear imputation. The error falls with
        the size of the largest removed region; 2x its diameter in pixels is ample.
    """

    kind: str = "linear"
    value: float = 0.0
    sigma: float = 5.0
    noise_std: float = 2.55
    iterations: int = 200

    def __post_init__(self):
        if self.kind not in FILL_KINDS:
            raise ValueError(f"Unknown fill {self.kind!r}; expected one of {FILL_KINDS}.")
        if self.kind == "blur" and self.sigma <= 0:
            raise ValueError(f"blur fill needs sigma > 0, got {self.sigma}.")
        if self.kind == "linear" and (self.iterations < 0 or self.noise_std < 0):
            raise ValueError(
                f"linear fill needs iterations >= 0 and noise_std >= 0, got {self.iterations} "
                f"and {self.noise_std}."
            )

    def record(self) -> dict[str, Any]:
        """The fields that matter for ``kind``, to store beside the results."""
        fields = {"constant": ("value",), "blur": ("sigma",), "linear": ("noise_std", "iterations")}
        return {"kind": self.kind, **{k: getattr(self, k) for k in fields[self.kind]}}


def _neighbor_sum(x: jax.Array) -> jax.Array:
    """ROAD's weighted sum over the 8 neighbours of every pixel of [C, H, W] (1/6 direct,
    1/12 diagonal), neighbours outside the image left out.

    The stencil [[1, 2, 1], [2, 0, 2], [1, 2, 1]] / 12 is the separable [1, 2, 1] x [1, 2, 1]
    minus 4 at the centre: four shifted adds instead of eight.
    """
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1)))
    rows = padded[:, :-2] + 2.0 * padded[:, 1:-1] + padded[:, 2:]
    both = rows[:, :, :-2] + 2.0 * rows[:, :, 1:-1] + rows[:, :, 2:]
    return (both - 4.0 * x) / 12.0


def _linear_imputation(image: jax.Array, removed: jax.Array, iterations: int) -> jax.Array:
    """Solve ROAD's system for the removed pixels by conjugate gradients; kept pixels as is.

    image [H, W, C], removed [H, W] bool. Solved channels-first, where the rows of the
    stencil are contiguous (1.5x faster on CPU than channels-last).
    """
    image_chw = jnp.transpose(image, (2, 0, 1))
    u = removed[None].astype(image.dtype)
    weight_total = _neighbor_sum(jnp.ones_like(u))
    kept = (1.0 - u) * image_chw

    def operator(v):  # (D - W) restricted to the removed pixels: symmetric positive definite
        return u * (weight_total * v - _neighbor_sum(u * v))

    dot = lambda a, b: (a * b).sum(axis=(1, 2), keepdims=True)  # one product per channel
    num_kept = (1.0 - u).sum()
    x = u * kept.sum(axis=(1, 2), keepdims=True) / jnp.maximum(num_kept, 1.0)
    r = u * _neighbor_sum(kept) - operator(x)
    p = r
    rr = dot(r, r)
    # Below this the residual is float32 rounding; iterating on would divide noise by noise.
    floor = 1e-12 * rr

    def step(_, state):
        x, r, p, rr = state
        ap = operator(p)
        pap = dot(p, ap)
        active = (rr > floor) & (pap > 0)
        alpha = jnp.where(active, rr / jnp.where(active, pap, 1.0), 0.0)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = dot(r, r)
        beta = jnp.where(active, rr_new / jnp.where(active, rr, 1.0), 0.0)
        return x, r, r + beta * p, jnp.where(active, rr_new, rr)

    x, *_ = jax.lax.fori_loop(0, iterations, step, (x, r, p, rr))
    return jnp.transpose(kept + u * x, (1, 2, 0))


def impute(
    image: jax.Array, removed: jax.Array, fill: Fill, key: jax.Array | None = None
) -> jax.Array:
    """``image`` [H, W, C] with the pixels where ``removed`` [H, W] filled as ``fill`` says.

    ``key`` is needed for ``linear`` with ``noise_std > 0``.
    """
    image = jnp.asarray(image, jnp.float32)
    mask = jnp.asarray(removed, bool)[..., None]
    if fill.kind == "constant":
        return jnp.where(mask, jnp.float32(fill.value), image)
    if fill.kind == "blur":
        return jnp.where(mask, baselines_lib.blurred(image, fill.sigma)[0], image)
    out = _linear_imputation(image, mask[..., 0], fill.iterations)
    if fill.noise_std > 0:
        if key is None:
            raise ValueError("linear fill with noise_std > 0 needs a PRNG key (key=...).")
        noise = fill.noise_std * jax.random.normal(key, image.shape, image.dtype)
        out = jnp.where(mask, out + noise, out)
    return out


def _curves_one(f, fills, steps, batch_size, image, heatmap, target, key, f_args):
    rank, counts = scores.removal_order(heatmap, steps)
    score = (lambda z: f(z, *f_args)) if target is None else (lambda z: f(z, target, *f_args))
    deletion_fill, insertion_fill = fills

    def both(point):
        count, k = point
        top = rank < count
        k_del, k_ins = jax.random.split(jax.random.fold_in(key, k))
        deleted = impute(image, top, deletion_fill, k_del)
        inserted = impute(image, ~top, insertion_fill, k_ins)
        return jnp.stack([score(deleted), score(inserted)])

    points = (counts, jnp.arange(steps + 1))
    values = jax.lax.map(both, points, batch_size=batch_size or steps + 1)
    return values[:, 0], values[:, 1]


@functools.partial(jax.jit, static_argnames=("f", "fills", "steps", "batch_size"))
def _curves(f, images, heatmaps, targets, keys, f_args, *, fills, steps, batch_size):
    one = lambda im, hm, t, k: _curves_one(f, fills, steps, batch_size, im, hm, t, k, f_args)
    return jax.vmap(one)(images, heatmaps, targets, keys)


def _trapezoid_auc(curve: jax.Array) -> jax.Array:
    """Area under ``curve`` [..., n+1] sampled uniformly on [0, 1] (as ``scores``)."""
    n = curve.shape[-1] - 1
    return (curve[..., 1:] + curve[..., :-1]).sum(axis=-1) / (2.0 * n)


def deletion_insertion_imputed(
    f: Callable[..., jax.Array],
    images: jax.Array,
    heatmaps: jax.Array,
    targets: jax.Array | None = None,
    *,
    fill: Fill = Fill(),
    insertion_fill: Fill | None = None,
    steps: int = 16,
    key: jax.Array | None = None,
    batch_size: int | None = None,
    f_args: Sequence[Any] = (),
) -> dict[str, jax.Array]:
    """Deletion and insertion curves and AUCs with removed pixels filled by ``fill``.

    The conventions of ``scores.deletion_insertion`` (Petsiuk et al. 2018): pixels ranked by
    decreasing ``heatmaps`` (ties in raster order), ``steps + 1`` curve points with
    ``round(k * H * W / steps)`` pixels changed at point k, trapezoid AUC over [0, 1]. Deletion
    removes the top-ranked pixels; insertion keeps only them and fills the rest, so with a
    ``linear`` fill both curves impute from the pixels still present (ROAD's MoRF / LeRF
    idea: the same imputation on both sides).

    Args:
      f: ``f(image, target, *f_args)`` (or ``f(image, *f_args)`` without targets).
      images: [B, H, W, C]; heatmaps: [B, H, W] or [B, H, W, C] (signed channel mean).
      targets: [B] int or None.
      fill: what deleted pixels become; insertion_fill: what not-yet-inserted pixels are
        (None = ``fill``). ``Fill('constant')`` with ``insertion_fill=Fill('blur')`` is
        ``scores.deletion_insertion``'s default.
      key: PRNG key of the imputation noise (needed when a linear fill has noise).
      batch_size: curve points evaluated together; None = all.

    Returns:
      ``deletion_curve``, ``insertion_curve`` [B, steps + 1], ``deletion_auc``,
      ``insertion_auc`` [B]: arrays only, so that the call also works inside a caller's
      ``jax.jit``. Store ``fill.record()`` (and ``insertion_fill.record()``) beside them:
      the numbers mean nothing without the fill.
    """
    insertion_fill = fill if insertion_fill is None else insertion_fill
    images = jnp.asarray(images, jnp.float32)
    heatmaps = jnp.asarray(heatmaps, jnp.float32)
    if heatmaps.ndim == 4:
        heatmaps = heatmaps.mean(axis=-1)
    noisy = any(x.kind == "linear" and x.noise_std > 0 for x in (fill, insertion_fill))
    if key is None and noisy:
        raise ValueError("a linear fill with noise_std > 0 needs a PRNG key (key=...).")
    keys = jax.random.split(key if key is not None else jax.random.key(0), images.shape[0])
    if targets is not None:
        targets = jnp.asarray(targets, jnp.int32)
    deletion, insertion = _curves(
        f,
        images,
        heatmaps,
        targets,
        keys,
        tuple(f_args),
        fills=(fill, insertion_fill),
        steps=steps,
        batch_size=batch_size,
    )
    return {
        "deletion_curve": deletion,
        "insertion_curve": insertion,
        "deletion_auc": _trapezoid_auc(deletion),
        "insertion_auc": _trapezoid_auc(insertion),
    }


def _infidelity_one(f, perturb_fn, image, attr, baseline, target, key, f_args, options):
    num_samples, noise_std, multiply_by_inputs, normalize, batch_size = options
    score = (lambda z: f(z, *f_args)) if target is None else (lambda z: f(z, target, *f_args))
    keys = jax.random.split(key, num_samples)

    def sample(k):
        if perturb_fn is None:
            perturbed = image - noise_std * jax.random.normal(k, image.shape, image.dtype)
        else:
            perturbed = perturb_fn(k, image)
        perturbation = image - perturbed
        if multiply_by_inputs:  # captum's infidelity_perturb_func_decorator(True)
            span = image - baseline
            perturbation = perturbation / jnp.where(span != 0, span, 1.0)
        return jnp.stack([(perturbation * attr).sum(), score(perturbed)])

    values = loops.over_samples(sample, keys, batch_size)
    explained, change = values[:, 0], score(image) - values[:, 1]
    if normalize:
        beta = (explained * change).mean() / jnp.maximum((explained * explained).mean(), 1e-30)
        explained = beta * explained
    return jnp.mean((explained - change) ** 2)


_INFIDELITY_STATIC = ("f", "perturb_fn", "options")


@functools.partial(jax.jit, static_argnames=_INFIDELITY_STATIC)
def _infidelity(f, perturb_fn, images, attributions, baselines, targets, keys, f_args, *, options):
    one = lambda im, a, b, t, k: _infidelity_one(f, perturb_fn, im, a, b, t, k, f_args, options)
    return jax.vmap(one)(images, attributions, baselines, targets, keys)


def infidelity(
    f: Callable[..., jax.Array],
    images: jax.Array,
    attributions: jax.Array,
    key: jax.Array,
    targets: jax.Array | None = None,
    *,
    num_samples: int = 10,
    noise_std: float = 2.55,
    perturb_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    multiply_by_inputs: bool = False,
    baselines: jax.Array | float = 0.0,
    normalize: bool = False,
    batch_size: int | None = None,
    f_args: Sequence[Any] = (),
) -> jax.Array:
    """Infidelity per image [B] (Yeh et al. 2019; captum ``metrics.infidelity``).

    ``mean_s (sum(I_s * attr) - (f(x) - f(x - I_s)))^2`` over ``num_samples`` perturbations.

    Args:
      f: ``f(image, target, *f_args)`` (or ``f(image, *f_args)`` without targets), static.
      images: [B, H, W, C]; attributions: [B, H, W, C], same shape.
      key: PRNG key of the perturbations.
      targets: [B] int or None.
      num_samples: perturbations per image (captum's ``n_perturb_samples``).
      noise_std: default perturbation ``x - I`` with ``I ~ N(0, noise_std^2)`` per pixel.
      perturb_fn: ``perturb_fn(key, image) -> perturbed image`` instead (static); the
        perturbation is then ``image - perturbed``, as captum's decorator computes it.
      multiply_by_inputs: the attributions are global (IG, input x gradient): divide the
        perturbation by ``image - baseline`` (1 where that is 0), captum's
        ``infidelity_perturb_func_decorator(True)``. Then IG of a linear model scores 0.
      baselines: scalar or array broadcastable to images (for ``multiply_by_inputs``).
      normalize: scale ``sum(I * attr)`` by ``beta = E[I.attr (f(x) - f(x - I))] /
        E[(I.attr)^2]`` first (captum's ``normalize=True``), making the score invariant to
        the scale of the attributions.
      batch_size: perturbations evaluated together (``lax.map`` batches); None = all.
    """
    images = jnp.asarray(images, jnp.float32)
    attributions = jnp.asarray(attributions, jnp.float32)
    if attributions.shape != images.shape:
        raise ValueError(
            f"attributions {attributions.shape} must have the shape of images {images.shape}."
        )
    baselines = jnp.broadcast_to(jnp.asarray(baselines, jnp.float32), images.shape)
    if targets is not None:
        targets = jnp.asarray(targets, jnp.int32)
    keys = jax.random.split(key, images.shape[0])
    options = (
        int(num_samples),
        float(noise_std),
        bool(multiply_by_inputs),
        bool(normalize),
        batch_size,
    )
    return _infidelity(
        f,
        perturb_fn,
        images,
        attributions,
        baselines,
        targets,
        keys,
        tuple(f_args),
        options=options,
    )
