"""How the explain wing lays out repeated gradient computations for the compiler.

On XLA CPU, input-gradient convolutions inside an XLA while loop run on a slow path
(docs/design.md, "No while loops around backward passes on CPU"), so chunks of gradient passes
are unrolled in one program there (``chunk_loop='auto'``) and compiled with the memory-optimised
scheduler, which keeps peak memory set by one chunk rather than by all of them
(docs/performance.md). Every method that loops over gradient passes (integrated gradients, Blur
and Guided IG, the randomization cascade, noise tunnels, perturbation metrics) uses these helpers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
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


def chunked_schedule(
    method: str, steps: int, chunk_size: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature points and weights reshaped to [num_chunks, chunk]; padding gets weight 0."""
    alphas, weights = quadrature.points_and_weights(method, steps)
    if chunk_size is None:
        chunk = steps
    elif chunk_size < 1:
        raise ValueError(f"chunk_size must be None or >= 1, got {chunk_size}.")
    else:
        chunk = min(chunk_size, steps)
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
