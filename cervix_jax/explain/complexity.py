"""Complexity: how concentrated is a map? One number per map, batched over maps [B, ...].

Every measure reads ``|map|`` over all its entries (pixels and channels), normalised by its
maximum, as Quantus does by default (``abs=True``, ``normalise_by_max``):

- ``sparseness``: Gini index of ``|map|`` (Chalasani et al. 2020, "Concise explanations of
  neural networks using adversarial training"; Quantus ``Sparseness``):
  ``sum_k (2k - n - 1) a_(k) / (n sum_k a_(k))`` over the ascending values ``a_(1..n)``,
  after adding ``1e-7`` to every value (Quantus' guard, so an all-zero map scores 0). 0 for a
  constant map, ``(n - 1) / n`` for a single non-zero entry. Higher = sparser.
- ``effective_complexity``: the number of entries with ``|map| / max |map| > eps``
  (Nguyen and Martinez 2020, "On quantitative aspects of model interpretability"; Quantus
  ``EffectiveComplexity``, ``eps = 1e-5``). Lower = simpler.
- ``entropy_complexity``: Shannon entropy (nats) of ``|map| / sum |map|`` (Bhatt et al. 2020,
  "Evaluating and aggregating feature-based model explanations"; Quantus ``Complexity``).
  ``log n`` for a constant map, 0 for a single non-zero entry. Lower = simpler.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _flat_abs(maps: jax.Array) -> jax.Array:
    """[B, ...] -> [B, n] of ``|map| / max |map|`` (an all-zero map stays zero)."""
    a = jnp.abs(jnp.asarray(maps, jnp.float32)).reshape(maps.shape[0], -1)
    top = a.max(axis=1, keepdims=True)
    return a / jnp.where(top > 0, top, 1.0)


def sparseness(maps: jax.Array, eps: float = 1e-7) -> jax.Array:
    """Gini index of ``|map|`` per map [B] (Chalasani et al. 2020; Quantus ``Sparseness``)."""
    a = jnp.sort(_flat_abs(maps) + eps, axis=1)
    n = a.shape[1]
    k = jnp.arange(1, n + 1, dtype=a.dtype)
    return ((2 * k - n - 1) * a).sum(axis=1) / (n * a.sum(axis=1))


def effective_complexity(maps: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Entries with ``|map| / max |map| > eps`` per map [B] int32 (Nguyen and Martinez 2020)."""
    return (_flat_abs(maps) > eps).sum(axis=1).astype(jnp.int32)


def entropy_complexity(maps: jax.Array) -> jax.Array:
    """Entropy (nats) of ``|map| / sum |map|`` per map [B] (Bhatt et al. 2020); NaN if all 0."""
    a = _flat_abs(maps)
    total = a.sum(axis=1, keepdims=True)
    p = a / jnp.where(total > 0, total, 1.0)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=1)
    return jnp.where(total[:, 0] > 0, entropy, jnp.nan)
