"""Integrated gradients (Sundararajan et al. 2017) with ``jax.grad`` under ``jax.vmap``.

Attribution of pixel ``i`` is ``(x_i - b_i) * int_0^1 df/dx_i(b + a (x - b)) da``, with the
integral replaced by a quadrature rule (``quadrature.py``). Gradients at the interpolation
points are computed by ``jax.vmap(jax.grad(f))`` over a chunk of ``chunk_size`` points and
summed chunk by chunk, so peak memory is set by the chunk size, not by ``steps``.

Chunk loop (``chunk_loop``). ``'scan'`` compiles the chunk once, inside an XLA while loop
(``jax.lax.scan``); ``'unrolled'`` lays the chunks out one after another in one program (no
loop); ``'auto'`` (default) picks ``'unrolled'`` on CPU and ``'scan'`` elsewhere. Why: inside a
while loop, XLA CPU (jaxlib 0.10.2) leaves the input-gradient convolutions with a reversed
kernel in ``01oi`` order, which its fast convolution path does not take. Unrolled programs are
compiled with XLA CPU's memory-optimised scheduler (``loops.MEMORY_OPTIMIZED``): with the default
one, buffers of every chunk stay alive and peak memory grows with ``steps``; with it, peak
memory is set by the chunk size, at a small cost in speed. Compile time grows with the number of
chunks. On accelerators the loop costs little and keeps compile time flat. The options apply to
this module's own ``jax.jit``; inside a caller's ``jax.jit``, the caller's compiler options
rule. The measurements behind these choices are in docs/performance.md ("What we learned", 1 and
2).

Spaces. ``x - b`` and the gradients must live in the same space, or completeness breaks (the
reference IG code the paper used multiplied raw-pixel differences by gradients taken w.r.t.
normalised inputs). Our convention: ``f`` takes the image in **pixel space** (float32 in
[0, 255]) and normalises inside, so images, baselines, differences and gradients are all pixel
space. If you hand in an ``f`` that takes normalised images, give the baselines in normalised
space as well (black is then ``-mean / std``, not zeros).

Compilation. The public functions are ``jax.jit``-compiled with ``f``, ``steps``, ``method`` and
``chunk_size`` static. Create ``f`` once and pass anything large it needs (model variables) via
``f_args`` rather than closing over it: closed-over arrays would be baked into the program as
constants, and a new closure per call would recompile. With that, one compilation serves every
call with the same shapes. All functions also work inside a user's own ``jax.jit``.

Completeness error is ``sum(attributions) - (f(x) - f(b))``: zero for the exact integral.

Convergence measured on this code (float64, random-weight tiny networks on 16x16 random
images, logit score, black baseline; median relative completeness error over 3 images at
n = 8 / 64 / 256 steps):

=================  ===========================  =============================
rule               softplus MLP (smooth)        ReLU CNN (piecewise linear)
=================  ===========================  =============================
riemann_left       4.9e-2 / 6.4e-3 / 1.6e-3     1.2e-1 / 1.3e-2 / 3.4e-3
riemann_right      5.4e-2 / 6.5e-3 / 1.6e-3     1.1e-1 / 1.5e-2 / 3.8e-3
riemann_middle     2.5e-3 / 4.0e-5 / 2.5e-6     1.7e-2 / 1.2e-3 / 3.8e-4
riemann_trapezoid  6.9e-3 / 8.4e-5 / 5.1e-6     1.6e-2 / 1.8e-3 / 1.4e-4
gausslegendre      2.1e-4 / 2e-8 (floor)        2.3e-2 / 3.0e-3 / 7.5e-4
=================  ===========================  =============================

On the smooth network the rules show their orders (1/n, 1/n^2, spectral), and Gauss-Legendre
reaches 1e-3 with 8 points where ``riemann_left`` needs more than 256. On the ReLU CNN the
integrand is piecewise constant in ``alpha`` (the path crosses kinks), so no rule is
high-order: left/right Riemann fall like 1/n; middle, trapezoid and Gauss-Legendre are 5-10x
lower but of the same order, not monotone in ``n``, and Gauss-Legendre keeps no advantage over
the midpoint rule. The tests assert the smooth-case advantage only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cervix_jax.explain import baselines as baselines_lib
from cervix_jax.explain import loops
from cervix_jax.explain import targets as targets_lib

ScoreFn = Callable[..., jax.Array]


class IGResult(NamedTuple):
    """Batched integrated gradients.

    attributions: [B, H, W, C], averaged over the baselines.
    completeness_error: [B], ``sum(attributions) - (f(x) - mean_k f(b_k))``.
    score_difference: [B], ``f(x) - mean_k f(b_k)`` (the denominator of the relative error).
    """

    attributions: jax.Array
    completeness_error: jax.Array
    score_difference: jax.Array


def _ig_single(
    f: ScoreFn,
    x: jax.Array,
    baseline: jax.Array,
    f_args: tuple,
    *,
    steps: int,
    method: str,
    chunk_size: int | None,
    chunk_loop: str = "auto",
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(attributions [H, W, C], completeness error [], f(x) - f(b) []) for one image/baseline."""
    alphas, weights = loops.chunked_schedule(method, steps, chunk_size)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):  # e.g. uint8 images: gradients need floats
        x = x.astype(jnp.float32)
    baseline = jnp.broadcast_to(jnp.asarray(baseline, x.dtype), x.shape)
    diff = x - baseline
    score = lambda z: f(z, *f_args)
    grad_fn = jax.grad(score)
    expand = (slice(None),) + (None,) * x.ndim

    def add_chunk(total, chunk):
        a, w = chunk
        points = baseline[None] + a[expand] * diff[None]
        grads = jax.vmap(grad_fn)(points)
        return total + jnp.tensordot(w, grads, axes=1), None

    chunks = (jnp.asarray(alphas, x.dtype), jnp.asarray(weights, x.dtype))
    integral = jnp.zeros_like(x)
    if loops.unroll_chunks(chunk_loop):
        # A Python loop, not scan(unroll=True): that still wraps one chunk in a while loop.
        for i in range(alphas.shape[0]):
            integral, _ = add_chunk(integral, (chunks[0][i], chunks[1][i]))
    else:
        integral, _ = jax.lax.scan(add_chunk, integral, chunks)
    attributions = diff * integral
    ends = jax.vmap(score)(jnp.stack([x, baseline]))
    delta = ends[0] - ends[1]
    return attributions, attributions.sum() - delta, delta


_STATIC = ("f", "steps", "method", "chunk_size", "chunk_loop")
_IG_JITS = loops.jit_pair(_ig_single, _STATIC)


def integrated_gradients(
    f: ScoreFn,
    x: jax.Array,
    baseline: jax.Array | float = 0.0,
    *,
    steps: int = 50,
    method: str = "gausslegendre",
    chunk_size: int | None = None,
    chunk_loop: str = "auto",
    f_args: Sequence[Any] = (),
) -> tuple[jax.Array, jax.Array]:
    """Integrated gradients of a scalar function of one image.

    Args:
      f: ``f(image [H, W, C], *f_args) -> scalar``, pure and jittable (pixel space, see module
        docstring). It is a static argument of the compiled program: create it once.
      x: image [H, W, C] (any shape works; the attributions have the shape of ``x``).
      baseline: array broadcastable to ``x`` (same space as ``x``); 0 = black in pixel space.
      steps: number of quadrature points.
      method: a name from ``quadrature.QUADRATURE_RULES``.
      chunk_size: at most this many points per ``vmap`` chunk, the chunks split evenly
        (``loops.even_chunk``; None = all at once).
      chunk_loop: ``'auto'``, ``'scan'`` or ``'unrolled'`` (module docstring, "Chunk loop").
      f_args: extra arguments of ``f`` passed as traced values (e.g. model variables).

    Returns:
      ``(attributions [H, W, C], completeness_error [])`` with
      ``completeness_error = sum(attributions) - (f(x) - f(baseline))``.
    """
    options = dict(steps=steps, method=method, chunk_size=chunk_size, chunk_loop=chunk_loop)
    jitted = loops.pick_jit(_IG_JITS, x, baseline, f_args)
    attributions, error, _ = jitted(f, x, baseline, tuple(f_args), **options)
    return attributions, error


def lower_integrated_gradients(
    f: ScoreFn,
    x: jax.Array,
    baseline: jax.Array,
    *,
    steps: int = 50,
    method: str = "gausslegendre",
    chunk_size: int | None = None,
    chunk_loop: str = "auto",
    f_args: Sequence[Any] = (),
    memory_optimized: bool = True,
) -> jax.stages.Lowered:
    """The single-image IG program lowered for the shapes of ``x``, ``baseline``, ``f_args``.

    ``.compile()`` gives it compiled ahead of time, called as ``compiled(x, baseline,
    tuple(f_args)) -> (attributions, completeness_error, f(x) - f(baseline))`` (the benchmarks
    time compilation apart that way); ``.as_text()`` is its StableHLO (a chunk loop shows as a
    ``while``) and ``.compile().memory_analysis()`` its memory use. Arguments as in
    ``integrated_gradients``; ``memory_optimized=False`` lowers it without
    ``loops.MEMORY_OPTIMIZED`` (XLA CPU's default scheduler), for comparison.
    """
    options = dict(steps=steps, method=method, chunk_size=chunk_size, chunk_loop=chunk_loop)
    jitted = _IG_JITS[0] if memory_optimized else _IG_JITS[1]
    return jitted.lower(f, x, baseline, tuple(f_args), **options)


def _ig_batch(f, images, baselines, targets, f_args, *, steps, method, chunk_size, chunk_loop):
    options = dict(steps=steps, method=method, chunk_size=chunk_size, chunk_loop=chunk_loop)
    if targets is None:
        per_baseline = lambda x, b, t: _ig_single(f, x, b, f_args, **options)
    else:
        per_baseline = lambda x, b, t: _ig_single(f, x, b, (t, *f_args), **options)
    # Baselines are one more vmapped axis: [B, K, ...] -> average over K.
    over_baselines = jax.vmap(per_baseline, in_axes=(None, 0, None))
    attributions, errors, deltas = jax.vmap(over_baselines)(images, baselines, targets)
    return IGResult(attributions.mean(axis=1), errors.mean(axis=1), deltas.mean(axis=1))


_IG_BATCH_JITS = loops.jit_pair(_ig_batch, _STATIC)


def _broadcast_baselines(images: jax.Array, baselines) -> jax.Array:
    """Baselines as [B, K, H, W, C] from a scalar, [H,W,C], [K,H,W,C] or [B,K,H,W,C]."""
    images = jnp.asarray(images)
    baselines = jnp.asarray(baselines, images.dtype)
    image_ndim = images.ndim - 1
    if baselines.ndim <= image_ndim:  # one baseline shared by all images
        baselines = jnp.broadcast_to(baselines, images.shape[1:])[None, None]
        return jnp.broadcast_to(baselines, (images.shape[0], 1, *images.shape[1:]))
    if baselines.ndim == image_ndim + 1:  # K baselines shared by all images
        return jnp.broadcast_to(baselines[None], (images.shape[0], *baselines.shape))
    if baselines.ndim == image_ndim + 2:
        return baselines
    raise ValueError(
        f"baselines of shape {baselines.shape} do not fit images of shape {images.shape}; "
        "expected [H, W, C], [K, H, W, C] or [B, K, H, W, C]."
    )


def integrated_gradients_batch(
    f: ScoreFn,
    images: jax.Array,
    baselines: jax.Array | float = 0.0,
    targets: jax.Array | None = None,
    *,
    steps: int = 50,
    method: str = "gausslegendre",
    chunk_size: int | None = None,
    chunk_loop: str = "auto",
    f_args: Sequence[Any] = (),
) -> IGResult:
    """Integrated gradients of many images, targets and baselines in one compiled program.

    Args:
      f: ``f(image, target, *f_args) -> scalar`` when ``targets`` is given, else
        ``f(image, *f_args) -> scalar``.
      images: [B, H, W, C].
      baselines: scalar, [H, W, C] (shared), [K, H, W, C] (K shared baselines) or
        [B, K, H, W, C]; attributions are averaged over the K baselines (the paper used K=10
        uniform random images), the K axis being vmapped, not looped over.
      targets: [B] int class indices passed to ``f``, or None.
      steps, method, chunk_size, chunk_loop, f_args: as in ``integrated_gradients``. Images
        and baselines are vmapped too, so one chunk evaluates ``B * K * chunk_size`` gradients
        at once: size ``chunk_size`` (or B) for the memory you have.

    Returns:
      ``IGResult(attributions [B, H, W, C], completeness_error [B], score_difference [B])``.
    """
    images = jnp.asarray(images)
    if not jnp.issubdtype(images.dtype, jnp.floating):  # uint8 images: attribute in float32
        images = images.astype(jnp.float32)
    baselines = _broadcast_baselines(images, baselines)
    if targets is not None:
        targets = jnp.asarray(targets, jnp.int32)
    return loops.pick_jit(_IG_BATCH_JITS, images, baselines, targets, f_args)(
        f,
        images,
        baselines,
        targets,
        tuple(f_args),
        steps=steps,
        method=method,
        chunk_size=chunk_size,
        chunk_loop=chunk_loop,
    )


def integrated_gradients_batch_adaptive(
    f: ScoreFn,
    images: jax.Array,
    baselines: jax.Array | float = 0.0,
    targets: jax.Array | None = None,
    *,
    tol: float = 1e-2,
    relative: bool = True,
    start_steps: int = 16,
    max_steps: int = 1024,
    method: str = "gausslegendre",
    chunk_size: int | None = None,
    chunk_loop: str = "auto",
    f_args: Sequence[Any] = (),
) -> tuple[IGResult, int]:
    """``integrated_gradients_batch`` with ``steps`` doubled until every image's completeness
    error is below ``tol``.

    Args:
      tol: tolerance on ``|completeness_error|``, divided by ``|f(x) - mean_k f(b_k)|`` when
        ``relative``.
      start_steps, max_steps: first and largest step count; each new count compiles once.
      Others as in ``integrated_gradients_batch``.

    Returns:
      ``(IGResult, steps_used)``. If ``max_steps`` is reached first, the last result is
      returned (check the errors).
    """
    options = dict(method=method, chunk_size=chunk_size, chunk_loop=chunk_loop, f_args=f_args)
    steps = int(start_steps)
    while True:
        result = integrated_gradients_batch(f, images, baselines, targets, steps=steps, **options)
        error = np.abs(np.asarray(result.completeness_error))
        if relative:
            error = error / np.maximum(np.abs(np.asarray(result.score_difference)), 1e-12)
        if float(error.max()) < tol or steps * 2 > max_steps:
            return result, steps
        steps *= 2


def integrated_gradients_adaptive(
    f: ScoreFn, x: jax.Array, baseline: jax.Array | float = 0.0, **options: Any
) -> tuple[jax.Array, jax.Array, int]:
    """Integrated gradients of one image with ``steps`` doubled until the completeness error
    is below ``tol``: ``integrated_gradients_batch_adaptive`` on a batch of one.

    Args:
      f: ``f(image [H, W, C], *f_args) -> scalar``.
      x: image [H, W, C]; baseline: broadcastable to ``x``.
      options: ``tol``, ``relative``, ``start_steps``, ``max_steps``, ``method``,
        ``chunk_size``, ``chunk_loop``, ``f_args``, as in ``integrated_gradients_batch_adaptive``.

    Returns:
      ``(attributions [H, W, C], completeness_error [], steps_used)``.
    """
    result, steps = integrated_gradients_batch_adaptive(
        f, jnp.asarray(x)[None], baseline, **options
    )
    return result.attributions[0], result.completeness_error[0], steps


# The paper's protocol: softmax probability of the predicted class, left Riemann sums with 50
# steps, averaged over 10 uniform random baselines in [0, 255]. Unlike the reference code,
# x - baseline is in the space of the gradients (pixel space), so completeness holds.
PAPER_PRESET: dict[str, Any] = {
    "score": "probability",
    "target": "predicted",
    "method": "riemann_left",
    "steps": 50,
    "baseline": "uniform",
    "num_baselines": 10,
}


def paper_integrated_gradients(
    logits_fn: Callable[..., jax.Array],
    images: jax.Array,
    key: jax.Array,
    *,
    f_args: Sequence[Any] = (),
    targets: jax.Array | None = None,
    chunk_size: int | None = None,
    chunk_loop: str = "auto",
) -> IGResult:
    """The paper's IG protocol (``PAPER_PRESET``) on images [B, H, W, C] in pixel space.

    Args:
      logits_fn: ``logits_fn(image [H, W, C] pixel space, *f_args) -> [num_classes]``.
      images: [B, H, W, C] float pixel values in [0, 255].
      key: PRNG key for the uniform random baselines.
      targets: [B] classes; None = predicted class (the paper's).
      chunk_size, chunk_loop: as in ``integrated_gradients``.
    """
    images = jnp.asarray(images, jnp.float32)
    if targets is None:
        targets = targets_lib.predicted_class(logits_fn, images, f_args)
    score = targets_lib.class_score_fn(logits_fn, PAPER_PRESET["score"])
    baselines = baselines_lib.make_baselines(
        "uniform", images, key, num=PAPER_PRESET["num_baselines"]
    )
    return integrated_gradients_batch(
        score,
        images,
        baselines,
        targets,
        steps=PAPER_PRESET["steps"],
        method=PAPER_PRESET["method"],
        chunk_size=chunk_size,
        chunk_loop=chunk_loop,
        f_args=f_args,
    )
