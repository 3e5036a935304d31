"""Residual Attention Network (Wang et al., CVPR 2017): Attention-56 and Attention-92.

Follows the paper authors' PyTorch code (``models/AttentionResnet.py``, itself from
tengshaofeng/ResidualAttentionNetwork-pytorch) for 224x224 input:

- Pre-activation bottleneck residual unit (:class:`ResidualUnit`): BN-ReLU-1x1, BN-ReLU-3x3
  (stride), BN-ReLU-1x1 (4x); the projection shortcut (their ``conv4``) is applied to the
  *activated* input and exists only where channels or stride change (their code also allocates
  it where it is never used; those parameters are not counted here).
- Attention module (:class:`AttentionModule`): one residual unit, then a trunk of two units and
  a soft-mask branch: ``mask_levels`` max-pool downsamplings (3 / 2 / 1 in stages 1 / 2 / 3),
  one unit per level with a skip unit, two units at the bottom, bilinear upsampling back level
  by level (adding the level's features and its skip), the trunk added at the top, then
  2x [BN-ReLU-1x1 conv] and a sigmoid; output ``(1 + mask) * trunk`` then one more unit.
- Network: 7x7/2 conv-BN-ReLU, 3x3/2 max-pool, units 64->256, stage 1 attention, 256->512 /2,
  stage 2, 512->1024 /2, stage 3, 1024->2048 /2, two 2048 units, BN-ReLU, global average pool,
  Dropout, Linear. Attention-56 has (1, 1, 1) attention modules per stage, Attention-92 has
  (1, 2, 3).

Any input size works: each upsampling goes to the actual shape of the map it is added to
(their code hard-codes sizes for 224). Upsampling is bilinear with ``align_corners=True``,
matching their ``nn.UpsamplingBilinear2d``; ``align_corners=False`` gives half-pixel bilinear.
Their code has no dropout in this head; ``dropout_rate`` keeps the project's common head
(set 0.0 for theirs). The final average pool is global (their ``AvgPool2d(7)`` at 224).

Attention maps: each attention module sows its soft mask averaged over channels,
``[B, h, w]`` in (0, 1), into ``intermediates['<module>']['soft_mask']`` (only when that
collection is mutable; parameters and logits are unchanged).

Grad-CAM: the map after the final BN-ReLU (``[B, H/32, W/32, 2048]`` for the full models) is
named ``last_conv``: sown into ``intermediates['last_conv']`` and wrapped by
``self.perturb('last_conv', ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cervix_jax.models import _common


def _source_positions(out_size: int, in_size: int, align_corners: bool) -> np.ndarray:
    """Where each output pixel samples the input, in input pixel units (PyTorch's rule)."""
    if align_corners:
        if out_size == 1:
            return np.zeros(1)
        return np.arange(out_size) * ((in_size - 1) / (out_size - 1))
    # Half-pixel centres, clamped at the borders (PyTorch align_corners=False).
    pos = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    return np.clip(pos, 0.0, in_size - 1)


def _resize_axis(x: jax.Array, axis: int, out_size: int, align_corners: bool) -> jax.Array:
    pos = _source_positions(out_size, x.shape[axis], align_corners)
    lo = np.floor(pos).astype(np.int32)
    hi = np.minimum(lo + 1, x.shape[axis] - 1)
    shape = [1] * x.ndim
    shape[axis] = out_size
    frac = jnp.asarray((pos - lo).reshape(shape), x.dtype)
    below, above = jnp.take(x, lo, axis=axis), jnp.take(x, hi, axis=axis)
    return below + (above - below) * frac


def upsample_bilinear(x: jax.Array, size: tuple[int, int], align_corners: bool) -> jax.Array:
    """Bilinear resize of ``x: [B, h, w, C]`` to ``[B, size[0], size[1], C]``.

    Separable: two gathers of neighbouring rows (columns) with static indices and a linear
    blend, exact PyTorch semantics for either ``align_corners``. On the 2-core CPU this runs
    Attention-56's forward pass ~1.8x faster than the same interpolation written as two
    matrix products (which need the channels moved around), and it is differentiable.
    """
    x = _resize_axis(x, 1, size[0], align_corners)
    return _resize_axis(x, 2, size[1], align_corners)


class ResidualUnit(_common.BottleneckUnit):
    """Pre-activation: BatchNorm and ReLU before each conv; the projection shortcut (a conv
    only) takes the activated input."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        inner = self.features // 4
        activated = nn.relu(_common.batch_norm(train, dtype=self.dtype, name="bn1")(x))
        y = _common.conv(inner, 1, dtype=self.dtype, name="conv1")(activated)
        y = nn.relu(_common.batch_norm(train, dtype=self.dtype, name="bn2")(y))
        y = _common.conv(inner, 3, stride=self.stride, dtype=self.dtype, name="conv2")(y)
        y = nn.relu(_common.batch_norm(train, dtype=self.dtype, name="bn3")(y))
        y = _common.conv(self.features, 1, dtype=self.dtype, name="conv3")(y)
        if x.shape[-1] != self.features or self.stride != 1:
            x = _common.conv(
                self.features, 1, stride=self.stride, dtype=self.dtype, name="shortcut"
            )(activated)
        return x + y


class AttentionModule(nn.Module):
    """Trunk branch times (1 + soft mask); the mask branch is an hourglass of ``mask_levels``."""

    features: int
    mask_levels: int
    align_corners: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        def unit(name: str) -> ResidualUnit:
            return ResidualUnit(self.features, dtype=self.dtype, name=name)

        x = unit("first")(x, train)
        trunk = unit("trunk_1")(unit("trunk_0")(x, train), train)

        levels, skips = [], []
        y = x
        for level in range(1, self.mask_levels + 1):
            y = _common.max_pool_3x3_s2(y)
            if level < self.mask_levels:
                y = unit(f"down{level}")(y, train)
                levels.append(y)
                skips.append(unit(f"skip{level}")(y, train))
            else:
                y = unit("bottom_1")(unit("bottom_0")(y, train), train)
        for level in range(self.mask_levels - 1, 0, -1):
            target = levels[level - 1]
            y = upsample_bilinear(y, target.shape[1:3], self.align_corners)
            y = unit(f"up{level}")(y + target + skips[level - 1], train)
        y = upsample_bilinear(y, trunk.shape[1:3], self.align_corners) + trunk

        y = nn.relu(_common.batch_norm(train, dtype=self.dtype, name="mask_bn1")(y))
        y = _common.conv(self.features, 1, dtype=self.dtype, name="mask_conv1")(y)
        y = nn.relu(_common.batch_norm(train, dtype=self.dtype, name="mask_bn2")(y))
        y = _common.conv(self.features, 1, dtype=self.dtype, name="mask_conv2")(y)
        mask = nn.sigmoid(y)
        # The module's own explanation: where it lets the trunk through (channel mean).
        self.sow("intermediates", _common.SOFT_MASK, mask.astype(jnp.float32).mean(axis=-1))
        return unit("last")((1 + mask) * trunk, train)


class ResidualAttentionNet(nn.Module):
    """``__call__(x: [B, H, W, 3] float, train) -> [B, num_classes] float32``.

    Attributes:
      num_classes: classifier outputs.
      modules_per_stage: attention modules in stages 1-3; (1, 1, 1) = Attention-56,
        (1, 2, 3) = Attention-92.
      mask_levels: soft-mask downsamplings per stage (3, 2, 1).
      stem_features: channels of the 7x7 stem (64).
      stage_features: outputs of the four residual stages (256, 512, 1024, 2048).
      align_corners: bilinear upsampling convention of the soft mask (True, as their code).
      dropout_rate: dropout before the final dense layer.
      dtype: compute dtype; parameters and BatchNorm statistics stay float32.
      remat: recompute activations of each attention module and residual unit in the
        backward pass (for accelerators; see ``_common.maybe_remat``); same parameters.
    """

    num_classes: int
    modules_per_stage: Sequence[int] = (1, 2, 3)
    mask_levels: Sequence[int] = (3, 2, 1)
    stem_features: int = 64
    stage_features: Sequence[int] = (256, 512, 1024, 2048)
    align_corners: bool = True
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if len(self.modules_per_stage) != 3 or len(self.mask_levels) != 3:
            raise ValueError(
                "modules_per_stage and mask_levels need 3 entries (stages 1-3); got "
                f"{self.modules_per_stage} and {self.mask_levels}."
            )
        if len(self.stage_features) != 4:
            raise ValueError(f"stage_features needs 4 entries; got {self.stage_features}.")
        dtype = _common.parse_dtype(self.dtype)
        x = _common.stem(x, self.stem_features, train=train, dtype=dtype, names=("conv1", "bn1"))
        unit = _common.maybe_remat(ResidualUnit, self.remat)
        attention_module = _common.maybe_remat(AttentionModule, self.remat)
        for stage in range(3):
            features = self.stage_features[stage]
            stride = 1 if stage == 0 else 2
            x = unit(features, stride=stride, dtype=dtype, name=f"residual_block{stage + 1}")(
                x, train
            )
            for m in range(self.modules_per_stage[stage]):
                x = attention_module(
                    features,
                    mask_levels=self.mask_levels[stage],
                    align_corners=self.align_corners,
                    dtype=dtype,
                    name=f"attention{stage + 1}_{m + 1}",
                )(x, train)
        final = self.stage_features[3]
        x = unit(final, stride=2, dtype=dtype, name="residual_block4")(x, train)
        x = unit(final, dtype=dtype, name="residual_block5")(x, train)
        x = unit(final, dtype=dtype, name="residual_block6")(x, train)
        x = nn.relu(_common.batch_norm(train, dtype=dtype, name="bn_final")(x))
        return _common.last_conv_to_logits(self, x, train=train, dtype=dtype)
