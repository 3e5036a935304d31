"""Grad-CAM (Selvaraju et al. 2017) on a model's last convolutional feature map.

Contract (docs/design.md): every model sows its last convolutional feature map ``A`` into the
``intermediates`` collection under the name ``last_conv`` and wraps it with
``self.perturb('last_conv', A)``. Flax's ``perturb`` adds a zero variable from the
``perturbations`` collection to ``A``; the gradient of the score w.r.t. that variable is
``d score / d A``. Grad-CAM then weights each channel by its spatially averaged gradient::

    cam = relu(sum_k mean_ij(d score / d A_ijk) * A_ijk)

and upsamples the [h, w] map bilinearly to the image size.

Grad-CAM is the one method that needs model internals, so unlike the ``f``-based methods it
takes a Flax module and its variables. The model is applied one image at a time (inside
``jax.vmap``) in inference mode, so one image's map never depends on the rest of the batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

LAST_CONV = "last_conv"


def without_capture_collections(variables: Mapping[str, Any]) -> dict[str, Any]:
    """``variables`` without the collections Grad-CAM's capture writes (``perturbations``,
    ``intermediates``): what a plain forward pass reads.

    ``model.init`` also creates zero ``perturbations`` of the init batch's shape; they must not
    travel into ``apply`` with another batch shape.
    """
    return {k: v for k, v in variables.items() if k not in ("perturbations", "intermediates")}


def _find_leaf(tree: Mapping[str, Any], name: str, what: str) -> tuple[tuple[str, ...], Any]:
    flat = traverse_util.flatten_dict(tree)
    hits = [(path, value) for path, value in flat.items() if path[-1] == name]
    if len(hits) != 1:
        paths = ["/".join(map(str, p)) for p in flat]
        raise ValueError(
            f"Expected exactly one '{name}' in the model's {what}, found {len(hits)} among "
            f"{paths}. Models must sow and perturb their last conv feature map as "
            f"'{name}' (docs/design.md, cervix_jax.models)."
        )
    return hits[0]


def _score(logits: jax.Array, target: jax.Array, kind: str) -> jax.Array:
    if kind == "logit":
        return logits[target]
    if kind == "probability":
        return jax.nn.softmax(logits)[target]
    raise ValueError(f"Unknown Grad-CAM score {kind!r}; expected 'logit' or 'probability'.")


def _cam_one(model, preprocess, kind, upsample, variables, image, target):
    x = image if preprocess is None else preprocess(image)
    x = x[None]
    _, shapes = jax.eval_shape(
        lambda v: model.apply(v, x, train=False, mutable=["perturbations"]), variables
    )
    path, shape = _find_leaf(shapes.get("perturbations", {}), LAST_CONV, "perturbations")
    zeros = traverse_util.unflatten_dict({path: jnp.zeros(shape.shape, shape.dtype)})

    def score_of(perturbations):
        logits, state = model.apply(
            {**variables, "perturbations": perturbations},
            x,
            train=False,
            mutable=["intermediates"],
        )
        _, sown = _find_leaf(state["intermediates"], LAST_CONV, "intermediates")
        activation = sown[0] if isinstance(sown, tuple) else sown
        return _score(logits[0], target, kind), activation[0]

    grads, activation = jax.grad(score_of, has_aux=True)(zeros)
    grad = traverse_util.flatten_dict(grads)[path][0]  # [h, w, k]
    channel_weights = grad.mean(axis=(0, 1))
    cam = jax.nn.relu(jnp.einsum("hwk,k->hw", activation, channel_weights))
    if upsample:
        cam = jax.image.resize(cam, image.shape[:2], method="bilinear")
    return cam


@functools.partial(jax.jit, static_argnames=("model", "preprocess", "kind", "upsample"))
def _gradcam_jit(model, preprocess, kind, upsample, variables, images, targets):
    one = functools.partial(_cam_one, model, preprocess, kind, upsample, variables)
    return jax.vmap(one)(images, targets)


@functools.partial(jax.jit, static_argnames=("model", "preprocess"))
def _predict(model, preprocess, variables, images):
    x = images if preprocess is None else jax.vmap(preprocess)(images)
    return jnp.argmax(model.apply(variables, x, train=False), axis=-1).astype(jnp.int32)


def gradcam(
    model: nn.Module,
    variables: Mapping[str, Any],
    images: jax.Array,
    targets: jax.Array | None = None,
    *,
    preprocess: Callable[[jax.Array], jax.Array] | None = None,
    score: str = "logit",
    upsample: bool = True,
) -> jax.Array:
    """Grad-CAM maps of a Flax model following the ``last_conv`` contract.

    Args:
      model: Linen module; ``model.apply(variables, x [1, H, W, C], train=False)`` -> logits.
      variables: ``{'params', 'batch_stats', ...}`` (other collections are dropped).
      images: [B, H, W, C], in the space ``preprocess`` expects (pixel space with a
        normalising ``preprocess``; the model's own input space when None).
      targets: [B] classes; None = predicted class.
      preprocess: per-image function applied before the model (hashable: define it once).
      score: ``logit`` (Grad-CAM's usual choice) or ``probability``.
      upsample: bilinear resize of the map to [H, W]; False keeps the feature map's [h, w].

    Returns:
      cams [B, H, W] (or [B, h, w]), non-negative, in the score's units (not normalised).
    """
    variables = without_capture_collections(variables)
    images = jnp.asarray(images, jnp.float32)
    if targets is None:
        targets = _predict(model, preprocess, variables, images)
    targets = jnp.asarray(targets, jnp.int32)
    return _gradcam_jit(model, preprocess, score, upsample, variables, images, targets)
