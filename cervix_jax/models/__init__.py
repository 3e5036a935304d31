"""Models: the paper's four architectures as pure Flax Linen modules, and torchvision import.

Public surface (contract in docs/design.md):

- ``create_model(name, num_classes, **options) -> nn.Module`` for ``resnet50``, ``densenet121``,
  ``densenet121_rca``, ``attention56``, ``attention92`` and ``<name>_tiny`` (same code, fewer
  blocks, narrower; for tests). Common options: ``dropout_rate`` (0.5), ``dtype`` ('float32'
  or 'bfloat16' compute; parameters stay float32); any other dataclass field of the model
  class (e.g. ``ca_placement='dense_blocks'``, ``ca_block='rcab'`` for ``densenet121_rca``).
- ``model.apply(variables, x, train=..., rngs={'dropout': key}, mutable=['batch_stats'])``
  with ``x: [B, H, W, 3]`` float (normalised) and ``variables = {'params', 'batch_stats'}``;
  returns float32 logits ``[B, num_classes]`` (and the updated batch_stats in train mode).
- Grad-CAM: every model exposes its last convolutional feature map (the map that is average
  pooled into the head) under the name ``last_conv``:
  ``apply(..., mutable=['intermediates'])`` returns it as ``intermediates['last_conv'][0]``,
  and passing ``perturbations={'last_conv': zeros}`` (see :func:`last_conv_perturbation`)
  lets ``jax.grad`` with respect to the perturbation give its gradient.
- Embeddings: ``pooled_features(model, variables, x) -> [B, D]``, the pooled last conv map
  the head reads (before dropout), sown into ``intermediates['pooled_features']``.
- Attention maps (``cervix_jax.explain.attention``): with ``mutable=['intermediates']`` each
  Residual Attention module returns its soft mask averaged over channels as
  ``intermediates[...]['soft_mask']`` (``SOFT_MASK``) and each channel-attention layer its input
  weighted by its attention weights as ``[...]['channel_attention_map']``
  (``CHANNEL_ATTENTION_MAP``); both ``[B, h, w]`` float32, parameters and logits unchanged.
- ``init_variables(model, rng, input_shape)``: ``{'params', 'batch_stats'}`` only (Flax's own
  ``model.init`` also returns the ``intermediates`` and ``perturbations`` collections made by
  the Grad-CAM hook; ``apply`` does not need them). ``abstract_variables`` gives the shapes.
- ``BatchNorm``: the models' BatchNorm layer (Flax's variables and semantics, folded into one
  multiply-add; torchvision's epsilon and momentum by default).
- ``count_params(params)``; ``from_torchvision(arch, state_dict)``, ``merge_pretrained``,
  ``load_converted(dir)``, ``converted_metadata(dir)`` (see ``cervix_jax.models.torchvision``).
"""

from __future__ import annotations

from cervix_jax.models._common import (
    CHANNEL_ATTENTION_MAP,
    LAST_CONV,
    POOLED_FEATURES,
    SOFT_MASK,
    BatchNorm,
)
from cervix_jax.models.channel_attention import RCAB, ChannelAttention
from cervix_jax.models.densenet import DenseNet
from cervix_jax.models.registry import (
    MODEL_NAMES,
    abstract_variables,
    count_params,
    create_model,
    init_variables,
    last_conv_perturbation,
    pooled_features,
)
from cervix_jax.models.residual_attention import ResidualAttentionNet
from cervix_jax.models.resnet import ResNet
from cervix_jax.models.torchvision import (
    TORCHVISION_ARCHS,
    converted_metadata,
    from_torchvision,
    load_converted,
    merge_pretrained,
    read_state_dict,
    save_converted,
)

__all__ = [
    "CHANNEL_ATTENTION_MAP",
    "LAST_CONV",
    "SOFT_MASK",
    "MODEL_NAMES",
    "POOLED_FEATURES",
    "RCAB",
    "TORCHVISION_ARCHS",
    "BatchNorm",
    "ChannelAttention",
    "DenseNet",
    "ResNet",
    "ResidualAttentionNet",
    "abstract_variables",
    "converted_metadata",
    "count_params",
    "create_model",
    "from_torchvision",
    "init_variables",
    "last_conv_perturbation",
    "load_converted",
    "merge_pretrained",
    "read_state_dict",
    "pooled_features",
    "save_converted",
]
