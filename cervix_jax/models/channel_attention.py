"""RCAN channel attention (Zhang et al., ECCV 2018) as reusable Linen modules.

- :class:`ChannelAttention`: global average pool -> 1x1 conv C -> C/r -> ReLU -> 1x1 conv
  C/r -> C -> sigmoid -> rescale the input channels. Both convs have biases (as in RCAN and the
  paper's ``CALayer``): ``2 * C * (C // r) + C // r + C`` parameters, 162 for C=32, r=16.
- :class:`RCAB`: residual channel attention block, conv3x3 -> ReLU -> conv3x3 -> channel
  attention, plus the identity.

Both take and return ``[B, H, W, C]`` and infer ``C`` from the input. ``ChannelAttention``
sows ``mean_c(relu(x_c) * w_c)`` (``[B, H, W]``, its input weighted by its attention weights
``w``, as class activation maps weight channels) into ``intermediates['channel_attention_map']``
when that collection is mutable.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cervix_jax.models import _common


class _AttentionBlock(nn.Module):
    """The fields of both blocks (`make_attention` builds either from them): ``reduction`` is
    RCAN's r (default 16), ``dtype`` the compute dtype."""

    reduction: int = 16
    dtype: Any = jnp.float32


class ChannelAttention(_AttentionBlock):
    """``x * sigmoid(W2 relu(W1 mean_hw(x)))``."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        hidden = channels // self.reduction
        if hidden < 1:
            raise ValueError(
                f"ChannelAttention: {channels} channels with reduction={self.reduction} leaves "
                f"no hidden unit; use reduction <= {channels}."
            )
        y = jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(self.dtype)
        y = _common.conv(hidden, 1, use_bias=True, dtype=self.dtype, name="conv_down")(y)
        y = nn.relu(y)
        y = _common.conv(channels, 1, use_bias=True, dtype=self.dtype, name="conv_up")(y)
        weights = nn.sigmoid(y).astype(jnp.float32)  # [B, 1, 1, C]
        # A class activation map with the attention weights as channel weights: the
        # activated input channels, weighted by how much the layer lets each through.
        cam = (nn.relu(x.astype(jnp.float32)) * weights).mean(axis=-1)
        self.sow("intermediates", _common.CHANNEL_ATTENTION_MAP, cam)
        return x * weights.astype(x.dtype)


class RCAB(_AttentionBlock):
    """Residual channel attention block: ``x + CA(conv3x3(relu(conv3x3(x))))``."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        y = _common.conv(channels, 3, use_bias=True, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(y)
        y = _common.conv(channels, 3, use_bias=True, dtype=self.dtype, name="conv2")(y)
        y = ChannelAttention(self.reduction, dtype=self.dtype, name="channel_attention")(y)
        return x + y


def make_attention(kind: str, reduction: int, dtype: Any, name: str) -> nn.Module:
    """Returns a ``ChannelAttention`` (``kind='ca'``) or an ``RCAB`` (``kind='rcab'``)."""
    if kind == "ca":
        return ChannelAttention(reduction, dtype=dtype, name=name)
    if kind == "rcab":
        return RCAB(reduction, dtype=dtype, name=name)
    raise ValueError(f"channel attention block {kind!r} is unknown; use 'ca' or 'rcab'.")
