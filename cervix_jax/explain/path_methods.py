"""Integrated gradients along other paths: Blur IG and Guided IG.

Both integrate ``grad f`` along a path ``gamma`` from a start point to the image, so the
attributions sum to ``f(x) - f(start)`` up to the quadrature error (completeness), and both
return ``IGResult`` like ``integrated_gradients_batch``.

Blur IG (Xu et al. 2020, "Attribution in scale and space"; PAIR ``saliency.core.blur_ig``).
The path goes from the image blurred with ``max_sigma`` to the image through decreasing
Gaussian blur, ``gamma(a) = blur(x, max_sigma (1 - a))``, so there is no baseline to choose.
Attribution ``i`` is ``int_0^1 df/dx_i(gamma(a)) * dgamma_i/da da``; the path derivative is
exact here (``jax.jvp`` of the blur with respect to sigma), where PAIR takes a finite
difference in sigma and left Riemann sums. The integral uses our quadrature rules, chunking
and chunk loop (``integrated_gradients.py``). The blur is separable with a kernel of radius
``ceil(3 max_sigma)`` at every sigma and edge-replicated borders (PAIR pads with zeros, which
darkens the borders of the blurred start; ``baselines.blurred`` replicates edges as well).
Steps: the integrand is smooth but turns sharply where the blur falls below ~1 px (the last
``1 / max_sigma`` of the path), so it needs enough points there. Measured (16 px, sigma 4,
a linear model, relative error of the summed attributions): Gauss-Legendre 1.8e-2 / 5e-5 /
3e-8 at 16 / 32 / 64 points, the trapezoid rule 9e-2 / 2e-4 / 3e-7. A larger ``max_sigma``
needs more points: check ``completeness_error``, which is returned.

Guided IG (Kapishnikov et al. 2021, "Guided integrated gradients: an adaptive path method for
removing noise"; PAIR ``saliency.core.guided_ig``). The path is adaptive: at each of
``steps`` steps the L1 distance to the input shrinks by ``1 / steps`` of the total, moving the
``fraction`` of features with the smallest ``|gradient|`` first (all the way to the step's
upper bound, then the next fraction, ..., the last group by the share that lands exactly on
the target distance), while every feature stays within ``max_distance`` (relative, in units
of the straight-line parameter) of the straight line. Attributions accumulate
``(x_new - x_old) * grad f(x_old)``: a left Riemann sum of the path integral.
``max_distance=0`` is the straight line, i.e. IG with ``riemann_left``. The steps are
sequential (each needs the gradient at the point the previous one reached): a ``lax.scan``
over steps by default; the inner selection loop is a bounded ``lax.while_loop`` (at most
``ceil(1 / fraction) + 3`` rounds, the most PAIR's loop can take), batched over images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cervix_jax.explain import baselines as baselines_lib
from cervix_jax.explain import loops
from cervix_jax.explain.integrated_gradients import IGResult

ScoreFn = Callable[..., jax.Array]


def gaussian_blur(image: jax.Array, sigma: jax.Array | float, radius: int) -> jax.Array:
    """[H, W, C] blurred with a Gaussian of std ``sigma`` (differentiable in ``sigma``).

    Separable, kernel taps ``-radius..radius``, edge-replicated borders; ``sigma -> 0`` gives
    the image back (a delta kernel).
    """
    x = jnp.asarray(image)
    sigma = jnp.maximum(jnp.asarray(sigma, x.dtype), 1e-3)  # 1e-3: every tap but 0 is exp(-5e5)
    t = jnp.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = jnp.exp(-0.5 * (t / sigma) ** 2)
    return baselines_lib.separable_filter(x, kernel / kernel.sum())


def _blur_radius(max_sigma: float) -> int:
    return max(1, math.ceil(3.0 * max_sigma))


def _blur_ig_single(f, x, f_args, *, max_sigma, steps, method, chunk_size, chunk_loop):
    alphas, weights = loops.chunked_schedule(method, steps, chunk_size)
    radius = _blur_radius(max_sigma)
    path = lambda a: gaussian_blur(x, max_sigma * (1.0 - a), radius)
    score = lambda z: f(z, *f_args)
    grad_fn = jax.grad(score)

    def add_chunk(total, chunk):
        a, w = chunk
        points, velocities = jax.vmap(lambda s: jax.jvp(path, (s,), (jnp.ones_like(s),)))(a)
        grads = jax.vmap(grad_fn)(points)
        return total + jnp.tensordot(w, grads * velocities, axes=1), None

    chunks = (jnp.asarray(alphas, x.dtype), jnp.asarray(weights, x.dtype))
    total = jnp.zeros_like(x)
    if loops.unroll_chunks(chunk_loop):
        for i in range(alphas.shape[0]):
            total, _ = add_chunk(total, (chunks[0][i], chunks[1][i]))
    else:
        total, _ = jax.lax.scan(add_chunk, total, chunks)
    ends = jax.vmap(score)(jnp.stack([x, path(jnp.zeros((), x.dtype))]))
    delta = ends[0] - ends[1]
    return total, total.sum() - delta, delta


def _blur_ig_batch(f, images, targets, f_args, **options):
    if targets is None:
        one = lambda x, t: _blur_ig_single(f, x, f_args, **options)
    else:
        one = lambda x, t: _blur_ig_single(f, x, (t, *f_args), **options)
    return IGResult(*jax.vmap(one)(images, targets))


_BLUR_STATIC = ("f", "max_sigma", "steps", "method", "chunk_size", "chunk_loop")
_BLUR_JITS = loops.jit_pair(_blur_ig_batch, _BLUR_STATIC)


def blur_integrated_gradients(
    f: ScoreFn,
    images: jax.Array,
    targets: jax.Array | None = None,
    *,
    max_sigma: float = 50.0,
    steps: int = 50,
    method: str = "gausslegendre",
    chunk_size: int | None = None,
    chunk_loop: str = "auto",
    f_args: Sequence[Any] = (),
) -> IGResult:
    """Blur IG (Xu et al. 2020) of images [B, H, W, C] in one compiled program.

    Args:
      f: ``f(image, target, *f_args) -> scalar`` (or ``f(image, *f_args)`` without targets).
      images: [B, H, W, C] (pixel space); targets: [B] int or None.
      max_sigma: blur of the path's start in pixels (PAIR's default 50, for 224-299 px).
      steps, method, chunk_size, chunk_loop, f_args: as in ``integrated_gradients_batch``.

    Returns:
      ``IGResult``: attributions [B, H, W, C], ``completeness_error`` [B] =
      ``sum(attr) - (f(x) - f(blur(x, max_sigma)))`` and that score difference [B].
    """
    if max_sigma <= 0:
        raise ValueError(f"max_sigma must be > 0, got {max_sigma}.")
    loops.unroll_chunks(chunk_loop)  # validates the name before tracing
    images = jnp.asarray(images, jnp.float32)
    if targets is not None:
        targets = jnp.asarray(targets, jnp.int32)
    options = dict(max_sigma=float(max_sigma), steps=steps, method=method)
    options.update(chunk_size=chunk_size, chunk_loop=chunk_loop)
    jitted = loops.pick_jit(_BLUR_JITS, images, targets, f_args)
    return jitted(f, images, targets, tuple(f_args), **options)


def _guided_update(x, attr, grad, x_in, x_base, l1_total, step, *, steps, fraction, max_distance):
    """One Guided IG step for one image: move ``x`` 1/steps of the L1 way to ``x_in``."""
    alpha = (step + 1.0) / steps
    a_min, a_max = jnp.maximum(alpha - max_distance, 0.0), jnp.minimum(alpha + max_distance, 1.0)
    diff = x_in - x_base
    x_min, x_max = x_base + diff * a_min, x_base + diff * a_max
    l1_target = l1_total * (1.0 - alpha)
    safe_diff = jnp.where(diff != 0, diff, 1.0)
    abs_grad = jnp.abs(grad)

    def body(state):
        x, attr, rounds, _ = state
        x_old = x
        x_alpha = jnp.where(diff != 0, (x - x_base) / safe_diff, a_max)
        x = jnp.where(x_alpha < a_min, x_min, x)  # features left behind catch up first
        l1_current = jnp.abs(x - x_in).sum()
        close = jnp.abs(l1_current - l1_target) <= 1e-6 * l1_total
        g = jnp.where(x == x_max, jnp.inf, abs_grad)
        threshold = jnp.quantile(g.ravel(), fraction, method="lower")
        chosen = (g <= threshold) & jnp.isfinite(g) & ~close
        l1_chosen = (jnp.abs(x - x_max) * chosen).sum()
        gamma = (l1_current - l1_target) / jnp.where(l1_chosen > 0, l1_chosen, 1.0)
        gamma = jnp.where(l1_chosen > 0, jnp.maximum(gamma, 0.0), jnp.inf)
        moved = jnp.where(gamma > 1.0, x_max, x + (x_max - x) * jnp.minimum(gamma, 1.0))
        x = jnp.where(chosen, moved, x)
        done = close | (gamma <= 1.0) | (l1_chosen == 0)
        return x, attr + (x - x_old) * grad, rounds + 1, done

    max_rounds = math.ceil(1.0 / fraction) + 3
    cond = lambda state: (~state[3]) & (state[2] < max_rounds)
    x, attr, _, _ = jax.lax.while_loop(cond, body, (x, attr, 0, jnp.zeros((), bool)))
    return x, attr


def _guided_ig_batch(
    f, images, baselines, targets, f_args, *, steps, fraction, max_distance, step_loop
):
    if targets is None:
        grad_one = lambda x, t: jax.grad(lambda z: f(z, *f_args))(x)
        score_one = lambda x, t: f(x, *f_args)
    else:
        grad_one = lambda x, t: jax.grad(lambda z: f(z, t, *f_args))(x)
        score_one = lambda x, t: f(x, t, *f_args)
    l1_total = jnp.abs(images - baselines).reshape(images.shape[0], -1).sum(axis=1)
    options = dict(steps=steps, fraction=fraction, max_distance=max_distance)

    def one_step(state, step):
        xs, attrs = state
        grads = jax.vmap(grad_one)(xs, targets)
        update = lambda *a: _guided_update(*a, step, **options)
        return jax.vmap(update)(xs, attrs, grads, images, baselines, l1_total), None

    state = (baselines, jnp.zeros_like(images))
    if loops.unroll_chunks(step_loop):
        for step in range(steps):
            state, _ = one_step(state, jnp.float32(step))
    else:
        state, _ = jax.lax.scan(one_step, state, jnp.arange(steps, dtype=jnp.float32))
    attributions = state[1]
    delta = jax.vmap(score_one)(images, targets) - jax.vmap(score_one)(baselines, targets)
    error = attributions.reshape(images.shape[0], -1).sum(axis=1) - delta
    return IGResult(attributions, error, delta)


_GUIDED_STATIC = ("f", "steps", "fraction", "max_distance", "step_loop")
_GUIDED_JITS = loops.jit_pair(_guided_ig_batch, _GUIDED_STATIC)


def guided_integrated_gradients(
    f: ScoreFn,
    images: jax.Array,
    baselines: jax.Array | float = 0.0,
    targets: jax.Array | None = None,
    *,
    steps: int = 200,
    fraction: float = 0.25,
    max_distance: float = 0.02,
    step_loop: str = "scan",
    f_args: Sequence[Any] = (),
) -> IGResult:
    """Guided IG (Kapishnikov et al. 2021) of images [B, H, W, C] in one compiled program.

    Args:
      f: ``f(image, target, *f_args) -> scalar`` (or ``f(image, *f_args)`` without targets).
      images: [B, H, W, C]; baselines: scalar, [H, W, C] or [B, H, W, C] (one per image).
      targets: [B] int or None.
      steps: path steps, one gradient each (PAIR's default 200).
      fraction: share of features moved per selection round (PAIR: 0.25).
      max_distance: how far (in straight-line parameter) a feature may run ahead of or lag
        behind the straight line; 0 = straight-line IG (left Riemann), 1 = unbounded.
      step_loop: ``'scan'`` (default: one compiled step; compile time flat in ``steps``),
        ``'unrolled'`` or ``'auto'`` (unrolled on CPU: faster input gradients there, see
        docs/design.md, but compile time grows with ``steps``).

    Returns:
      ``IGResult`` with ``completeness_error = sum(attr) - (f(x) - f(baseline))``.
    """
    if not 0.0 < fraction <= 1.0 or not 0.0 <= max_distance <= 1.0 or steps < 1:
        raise ValueError(
            f"Guided IG needs steps >= 1, 0 < fraction <= 1, 0 <= max_distance <= 1; got "
            f"steps={steps}, fraction={fraction}, max_distance={max_distance}."
        )
    loops.unroll_chunks(step_loop, "step_loop")  # validates the name before tracing
    images = jnp.asarray(images, jnp.float32)
    baselines = jnp.broadcast_to(jnp.asarray(baselines, jnp.float32), images.shape)
    if targets is not None:
        targets = jnp.asarray(targets, jnp.int32)
    options = dict(steps=int(steps), fraction=float(fraction), max_distance=float(max_distance))
    return loops.pick_jit(_GUIDED_JITS, images, baselines, targets, f_args)(
        f, images, baselines, targets, tuple(f_args), step_loop=step_loop, **options
    )


# Kept public for tests and tools that show the start of the Blur IG path.
def blur_path_start(images: jax.Array, max_sigma: float = 50.0) -> jax.Array:
    """The start of Blur IG's path, images [B, H, W, C] blurred with ``max_sigma``."""
    radius = _blur_radius(max_sigma)
    return jax.vmap(lambda x: gaussian_blur(x, max_sigma, radius))(jnp.asarray(images, np.float32))
