"""How the explain wing lays out repeated gradient computations for the compiler.

On XLA CPU, input-gradient convolutions inside an XLA while loop run on a slow path
(docs/design.md, "No while loops around backward passes on CPU"), so chunks of gradient passes
are unrolled in one program there (``chunk_loop='auto'``) and compiled with the memory-optimised
scheduler, which keeps peak memory set by one chunk rather than by all of them
(docs/performance.md). Every method that loops over gradient passes (integrated gradients, Blur
and Guided IG, the randomization cascade, noise tunnels, perturbation metrics) uses these helpers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cervix_jax.explain import quadrature

CHUNK_LOOPS = ("auto", "scan", "unrolled")
# XLA CPU's default scheduler keeps part of every unrolled chunk's buffers alive to the end, so
# temporaries grow with the step count; the memory-optimised one reuses them. Other backends
# ignore the option.
MEMORY_OPTIMIZED = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}


def unroll_chunks(chunk_loop: str, name: str = "chunk_loop") -> bool:
    """Whether chunks are laid out in line (``'auto'``: on CPU) rather than in a ``scan``."""
    if chunk_loop not in CHUNK_LOOPS:
        raise ValueError(f"{name}={chunk_loop!r} is unknown; use one of {CHUNK_LOOPS}.")
    if chunk_loop == "auto":
        return jax.default_backend() == "cpu"
    return chunk_loop == "unrolled"


def even_chunk(n: int, limit: int) -> int:
    """The smallest chunk that covers ``n`` items in as few chunks of at most ``limit`` as
    possible: 50 under 32 is 2 x 25, not 32 + 18 padded to 64. A padded item still costs a
    pass, so the even split wastes fewest (fewer than one per chunk)."""
    num_chunks = -(-n // max(1, min(limit, n)))
    return -(-n // num_chunks)


def chunked_schedule(
    method: str, steps: int, chunk_size: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature points and weights reshaped to [num_chunks, chunk], chunks of at most
    ``chunk_size`` points split evenly (`even_chunk`); padding gets weight 0."""
    alphas, weights = quadrature.points_and_weights(method, steps)
    if chunk_size is None:
        chunk = steps
    elif chunk_size < 1:
        raise ValueError(f"chunk_size must be None or >= 1, got {chunk_size}.")
    else:
        chunk = even_chunk(steps, chunk_size)
    num_chunks = math.ceil(steps / chunk)
    pad = num_chunks * chunk - steps
    alphas = np.concatenate([alphas, np.zeros(pad)]).reshape(num_chunks, chunk)
    weights = np.concatenate([weights, np.zeros(pad)]).reshape(num_chunks, chunk)
    return alphas, weights


def jit_pair(fun: Callable, static_argnames: tuple[str, ...]) -> tuple[Callable, Callable]:
    """``fun`` jitted with ``MEMORY_OPTIMIZED`` (called at top level), and plainly (called
    inside a caller's trace, where JAX refuses compiler options); `pick_jit` chooses."""
    return (
        jax.jit(fun, static_argnames=static_argnames, compiler_options=MEMORY_OPTIMIZED),
        jax.jit(fun, static_argnames=static_argnames),
    )


def pick_jit(jitted: tuple[Callable, Callable], *arrays: Any) -> Callable:
    """The member of a `jit_pair` that fits where ``arrays`` come from (traced or concrete)."""
    traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(arrays))
    return jitted[1] if traced else jitted[0]


def over_samples(fn: Callable, xs: Any, batch_size: int | None) -> jax.Array:
    """``fn`` over the leading axis of ``xs``: one ``vmap`` when ``batch_size`` covers it all
    (``lax.map`` would wrap even one batch in a while loop); smaller batches bound memory."""
    n = jax.tree.leaves(xs)[0].shape[0]
    batch = min(batch_size or n, n)
    if batch == n:
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=batch)


def over_copies(
    fn: Callable[..., jax.Array],
    copies: jax.Array,
    row_args: Sequence[jax.Array | None] = (),
    together: int | None = None,
    group_loop: str = "auto",
) -> jax.Array:
    """A batched method over N copies of each of B images, the copies as rows of its batch.

    ``fn(rows [M, ...], *row_args [M, ...]) -> [M, ...]`` sees ``together`` copies of every
    image at once (M = B x together; None = all N): the method keeps the batch layout it has
    for the images themselves (no ``vmap`` around it, which XLA CPU's YNN fusion cannot
    always lay out), and each copy gets its image's ``row_args`` (target, PRNG key: the same
    baselines as the image). Groups are split evenly (`even_chunk`), the last one padded with
    repeats of the first copy and trimmed. Groups run one after another in line on CPU
    (``group_loop='auto'``, as the chunks of integrated gradients: backward passes inside an
    XLA loop take XLA CPU's slow path, 6x for ResNet-50 IG maps, docs/performance.md), in a
    ``lax.map`` elsewhere.

    Args:
      copies: [B, N, ...]; row_args: per-image arrays [B, ...] (None passes through).
      group_loop: ``auto`` | ``scan`` | ``unrolled`` (``CHUNK_LOOPS``).

    Returns:
      [B, N, ...] the maps of every copy.
    """
    b, n = copies.shape[:2]
    t = even_chunk(n, together or n)
    groups = -(-n // t)
    pad = groups * t - n
    if pad:
        copies = jnp.concatenate([copies, jnp.repeat(copies[:, :1], pad, axis=1)], axis=1)
    repeated = [None if a is None else jnp.repeat(a, t, axis=0) for a in row_args]

    def group(rows):  # [B, t, ...] -> [B, t, ...]
        out = fn(rows.reshape(b * t, *rows.shape[2:]), *repeated)
        return out.reshape(b, t, *out.shape[1:])

    grouped = jnp.swapaxes(copies.reshape(b, groups, t, *copies.shape[2:]), 0, 1)
    if groups == 1 or unroll_chunks(group_loop, "group_loop"):
        out = jnp.stack([group(grouped[i]) for i in range(groups)])
    else:
        out = jax.lax.map(group, grouped)
    out = jnp.swapaxes(out, 0, 1)  # [B, groups, t, ...]
    return out.reshape(b, groups * t, *out.shape[3:])[:, :n]


@dataclasses.dataclass(frozen=True)
class EachImage:
    """A per-image ``attr_fn(image, [target,] *args) -> map`` as a batched method
    ``(images [M], targets [M] | None, *args) -> maps [M, ...]`` (vmapped; hashable, static)."""

    attr_fn: Callable[..., jax.Array]

    def __call__(self, images, targets, *args):
        if targets is None:
            return jax.vmap(lambda x: self.attr_fn(x, *args))(images)
        return jax.vmap(lambda x, t: self.attr_fn(x, t, *args))(images, targets)
