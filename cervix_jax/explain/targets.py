"""Scalar scores of a classifier for attribution: logit or probability of a target class.

A classifier enters ``explain`` as ``logits_fn(image [H, W, C], *args) -> [num_classes]`` on
one image in pixel space (it normalises inside; see ``integrated_gradients.py``). The helpers
here turn it into the ``f(image, target, *args) -> scalar`` the attribution methods take.
They are cached per ``(logits_fn, kind)`` so the same ``f`` object (a static argument of the
compiled programs) comes back each time and nothing recompiles.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

LogitsFn = Callable[..., jax.Array]
SCORE_KINDS: tuple[str, ...] = ("probability", "logit", "log_probability")


@functools.lru_cache(maxsize=128)
def class_score_fn(logits_fn: LogitsFn, kind: str = "probability") -> Callable[..., jax.Array]:
    """``f(image, target, *args) -> scalar``: the chosen score of class ``target``.

    Args:
      logits_fn: ``logits_fn(image [H, W, C], *args) -> logits [num_classes]``.
      kind: ``probability`` (softmax, the paper's), ``logit`` or ``log_probability``.
    """
    if kind not in SCORE_KINDS:
        raise ValueError(f"Unknown score kind {kind!r}; expected one of {SCORE_KINDS}.")

    def score(image, target, *args):
        logits = logits_fn(image, *args)
        if kind == "logit":
            values = logits
        elif kind == "probability":
            values = jax.nn.softmax(logits)
        else:
            values = jax.nn.log_softmax(logits)
        return jnp.take(values, target)

    return score


@functools.partial(jax.jit, static_argnames=("logits_fn",))
def _predict(logits_fn, images, args):
    return jax.vmap(lambda im: logits_fn(im, *args))(images)


def predict_logits(logits_fn: LogitsFn, images: jax.Array, args: Sequence[Any] = ()) -> jax.Array:
    """Logits [B, num_classes] of images [B, H, W, C] (jitted, ``logits_fn`` static)."""
    return _predict(logits_fn, jnp.asarray(images), tuple(args))


def predicted_class(logits_fn: LogitsFn, images: jax.Array, args: Sequence[Any] = ()) -> jax.Array:
    """Arg-max class [B] int32 of images [B, H, W, C]."""
    return jnp.argmax(predict_logits(logits_fn, images, args), axis=-1).astype(jnp.int32)
