"""DenseNet-121 (torchvision's) and the paper's DenseNet-121 with RCAN channel attention.

Module names mirror torchvision's state dict (``denseblock4_denselayer16`` is
``features.denseblock4.denselayer16``, ``head`` is ``classifier``), so loading ImageNet weights
is a renaming (:func:`cervix_jax.models.from_torchvision`).

Channel attention (``ca_placement``):
- ``'none'``: plain DenseNet-121 (paper's Model 2).
- ``'last_layer'``: the paper's Model 3: channel attention on the ``growth_rate`` (32) new maps
  of the last dense layer of the last block (``denseblock4.denselayer16``), before they are
  concatenated; submodule ``denseblock4_denselayer16/channel_attention``.
- ``'dense_blocks'``: on the output of every dense block (``ca_block1`` ... ``ca_block4``).
- ``'transitions'``: on the output of every transition (``ca_transition1`` ...).
``ca_block='rcab'`` swaps the channel-attention layer for an RCAB at the same places;
``ca_reduction`` is RCAN's r.

Grad-CAM: ``relu(norm5(features))``, the map that is average-pooled into the classifier
(``[B, H/32, W/32, 1024]`` for DenseNet-121), is named ``last_conv``: sown into
``intermediates['last_conv']`` and wrapped by ``self.perturb('last_conv', ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cervix_jax.models import _common
from cervix_jax.models.channel_attention import make_attention

PLACEMENTS = ("none", "last_layer", "dense_blocks", "transitions")


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (bn_size * k) - BN-ReLU-3x3 conv (k); returns only the k new maps."""

    growth_rate: int
    bn_size: int = 4
    attention: str | None = None  # None, 'ca' or 'rcab' on the new maps
    ca_reduction: int = 16
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = nn.relu(_common.batch_norm(train, dtype=self.dtype, name="norm1")(x))
        y = _common.conv(self.bn_size * self.growth_rate, 1, dtype=self.dtype, name="conv1")(y)
        y = nn.relu(_common.batch_norm(train, dtype=self.dtype, name="norm2")(y))
        y = _common.conv(self.growth_rate, 3, dtype=self.dtype, name="conv2")(y)
        if self.attention is not None:
            y = make_attention(self.attention, self.ca_reduction, self.dtype, "channel_attention")(
                y
            )
        return y


class Transition(nn.Module):
    """BN-ReLU-1x1 conv (halves channels) - 2x2 average pool, stride 2 (floor, as PyTorch)."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.relu(_common.batch_norm(train, dtype=self.dtype, name="norm")(x))
        x = _common.conv(self.features, 1, dtype=self.dtype, name="conv")(x)
        return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")


class DenseNet(nn.Module):
    """DenseNet-BC. ``__call__(x: [B, H, W, 3] float, train) -> [B, num_classes] float32``.

    Attributes:
      num_classes: classifier outputs.
      block_config: dense layers per block; (6, 12, 24, 16) is DenseNet-121.
      growth_rate: new maps per dense layer (k = 32).
      num_init_features: stem channels (64).
      bn_size: bottleneck width factor (4).
      dropout_rate: dropout before the final dense layer (paper: 0.5).
      ca_placement, ca_block, ca_reduction: channel attention, see the module docstring.
      dtype: compute dtype; parameters and BatchNorm statistics stay float32.
      remat: recompute each dense layer's activations in the backward pass (for
        accelerators; see ``_common.maybe_remat``); same parameters.
    """

    num_classes: int
    block_config: Sequence[int] = (6, 12, 24, 16)
    growth_rate: int = 32
    num_init_features: int = 64
    bn_size: int = 4
    dropout_rate: float = 0.5
    ca_placement: str = "none"
    ca_block: str = "ca"
    ca_reduction: int = 16
    dtype: Any = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.ca_placement not in PLACEMENTS:
            raise ValueError(
                f"ca_placement={self.ca_placement!r} is unknown; use one of {PLACEMENTS}."
            )
        dtype = _common.parse_dtype(self.dtype)

        def attention(name: str) -> nn.Module:
            return make_attention(self.ca_block, self.ca_reduction, dtype, name)

        x = _common.stem(
            x, self.num_init_features, train=train, dtype=dtype, names=("conv0", "norm0")
        )
        num_blocks = len(self.block_config)
        dense_layer = _common.maybe_remat(DenseLayer, self.remat)
        for b, num_layers in enumerate(self.block_config, start=1):
            for n in range(1, num_layers + 1):
                is_last = b == num_blocks and n == num_layers
                layer_attention = (
                    self.ca_block if is_last and self.ca_placement == "last_layer" else None
                )
                new = dense_layer(
                    self.growth_rate,
                    bn_size=self.bn_size,
                    attention=layer_attention,
                    ca_reduction=self.ca_reduction,
                    dtype=dtype,
                    name=f"denseblock{b}_denselayer{n}",
                )(x, train)
                x = jnp.concatenate([x, new], axis=-1)
            if self.ca_placement == "dense_blocks":
                x = attention(f"ca_block{b}")(x)
            if b < num_blocks:
                x = Transition(x.shape[-1] // 2, dtype=dtype, name=f"transition{b}")(x, train)
                if self.ca_placement == "transitions":
                    x = attention(f"ca_transition{b}")(x)
        x = nn.relu(_common.batch_norm(train, dtype=dtype, name="norm5")(x))
        return _common.last_conv_to_logits(self, x, train=train, dtype=dtype)
