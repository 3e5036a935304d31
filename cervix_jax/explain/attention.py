"""The attention networks' own maps, as explanations of their own (``method='attention'``).

The models sow their attention into the ``intermediates`` collection (cervix_jax.models):

- Residual Attention Network (``attention56``, ``attention92``): every attention module's soft
  mask, averaged over channels (``soft_mask``, in (0, 1)). The maps of all modules are
  upsampled bilinearly to the input and averaged with equal weights: each module gates the
  trunk at its own depth and resolution (stage 1 sees fine detail, stage 3 whole cells), and
  none of them alone is "the" attention of the network.
- Channel attention (``densenet121_rca``): the feature map a channel-attention layer rescales,
  activated and weighted by the layer's attention weights, as a class activation map weighs
  channels (``channel_attention_map``). With several layers (``ca_placement='dense_blocks'`` or
  ``'transitions'``) the deepest one is used, the last weighting before the classifier.
  The map is upsampled bilinearly to the input.

Soft masks win when a model has both. The maps do not depend on the target class: they are
what the network attends to, not evidence for a class. A model without attention raises
`ExplainError`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from cervix_jax.explain.errors import ExplainError
from cervix_jax.explain.gradcam import without_capture_collections
from cervix_jax.models import CHANNEL_ATTENTION_MAP, SOFT_MASK


def _sown_maps(intermediates: Mapping[str, Any], name: str) -> list[jax.Array]:
    """The ``[B, h, w]`` maps sown under ``name``, in the order the forward pass made them."""
    flat = traverse_util.flatten_dict(dict(intermediates))
    return [value[0] for path, value in flat.items() if path[-1] == name]


def _no_attention_error(model: nn.Module) -> ExplainError:
    return ExplainError(
        f"method='attention' needs a network with attention, but {type(model).__name__} sows "
        f"no '{SOFT_MASK}' or '{CHANNEL_ATTENTION_MAP}' map: use it with attention56, "
        "attention92 or densenet121_rca (or their _tiny variants), or choose another method "
        "(ig, gradcam, ...)."
    )


def attention_kind(model: nn.Module, variables: Mapping[str, Any], image_shape) -> str:
    """``'soft_mask'`` or ``'channel_attention_map'``: the maps ``attention_maps`` combines for
    ``model`` (shapes only, nothing is computed).

    Raises:
      ExplainError: the model sows neither (no attention).
    """
    x = jax.ShapeDtypeStruct((1, *tuple(image_shape)), jnp.float32)
    variables = without_capture_collections(variables)
    _, state = jax.eval_shape(
        lambda v, z: model.apply(v, z, train=False, mutable=["intermediates"]), variables, x
    )
    for name in (SOFT_MASK, CHANNEL_ATTENTION_MAP):
        if _sown_maps(state.get("intermediates", {}), name):
            return name
    raise _no_attention_error(model)


def _combine(intermediates, size: tuple[int, int], model) -> jax.Array:
    """One ``[B, H, W]`` map from the sown ones (see the module docstring)."""
    upsample = lambda m: jax.image.resize(m, (m.shape[0], *size), method="bilinear")
    masks = _sown_maps(intermediates, SOFT_MASK)
    if masks:
        return jnp.mean(jnp.stack([upsample(m) for m in masks]), axis=0)
    cams = _sown_maps(intermediates, CHANNEL_ATTENTION_MAP)
    if cams:
        return upsample(cams[-1])
    raise _no_attention_error(model)


@functools.partial(jax.jit, static_argnames=("model", "preprocess"))
def _attention_jit(model, preprocess, variables, images):
    x = images if preprocess is None else jax.vmap(preprocess)(images)
    _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
    return _combine(state["intermediates"], images.shape[1:3], model)


def attention_maps(
    model: nn.Module,
    variables: Mapping[str, Any],
    images: jax.Array,
    *,
    preprocess: Callable[[jax.Array], jax.Array] | None = None,
) -> jax.Array:
    """The network's own attention map of each image.

    Args:
      model: a Linen module that sows ``soft_mask`` or ``channel_attention_map`` maps
        (``attention56``, ``attention92``, ``densenet121_rca`` and their tiny variants).
      variables: ``{'params', 'batch_stats', ...}`` (capture collections are dropped).
      images: [B, H, W, C] in the space ``preprocess`` expects (pixel space with a
        normalising ``preprocess``; the model's input space when None).
      preprocess: per-image function applied before the model (hashable: define it once).

    Returns:
      [B, H, W] float32, non-negative, upsampled to the input (module docstring).

    Raises:
      ExplainError: the model has no attention.
    """
    variables = without_capture_collections(variables)
    return _attention_jit(model, preprocess, variables, jnp.asarray(images, jnp.float32))
