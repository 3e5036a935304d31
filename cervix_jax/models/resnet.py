"""ResNet-50 (torchvision's v1.5: the stride sits on the 3x3 conv of the bottleneck).

The paper's baseline: torchvision ``resnet50`` with its ``fc`` replaced by Dropout(0.5) +
Linear(2048, num_classes). Module names mirror torchvision's state-dict names (``layer2_0`` is
``layer2.0``, ``head`` is ``fc``) so :func:`cervix_jax.models.from_torchvision` is a renaming.

Grad-CAM: the output of ``layer4`` (after its final ReLU, ``[B, H/32, W/32, 2048]`` for the
full model) is the feature map named ``last_conv``: sown into ``intermediates['last_conv']`` and
wrapped by ``self.perturb('last_conv', ...)`` (see ``_common.expose_last_conv``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cervix_jax.models import _common


class Bottleneck(_common.BottleneckUnit):
    """Post-activation: each conv followed by BatchNorm (ReLU but after the last), ReLU after the
    sum; the projection shortcut is conv + BatchNorm."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        width = self.features // 4
        y = _common.conv(width, 1, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(_common.batch_norm(train, dtype=self.dtype, name="bn1")(y))
        y = _common.conv(width, 3, stride=self.stride, dtype=self.dtype, name="conv2")(y)
        y = nn.relu(_common.batch_norm(train, dtype=self.dtype, name="bn2")(y))
        y = _common.conv(self.features, 1, dtype=self.dtype, name="conv3")(y)
        y = _common.batch_norm(train, dtype=self.dtype, name="bn3")(y)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = _common.conv(
                self.features, 1, stride=self.stride, dtype=self.dtype, name="downsample_conv"
            )(x)
            x = _common.batch_norm(train, dtype=self.dtype, name="downsample_bn")(x)
        return nn.relu(x + y)


class ResNet(nn.Module):
    """Bottleneck ResNet. ``__call__(x: [B, H, W, 3] float, train) -> [B, num_classes] float32``.

    Attributes:
      num_classes: classifier outputs.
      stage_sizes: bottleneck blocks per stage; (3, 4, 6, 3) is ResNet-50.
      width: width of the first stage (stem has ``width`` channels; stage i has
        ``width * 2**i``, outputs 4x that).
      dropout_rate: dropout before the final dense layer (paper: 0.5).
      dtype: compute dtype; parameters and BatchNorm statistics stay float32.
      remat: recompute each block's activations in the backward pass (for accelerators;
        see ``_common.maybe_remat``); same parameters.
    """

    num_classes: int
    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    width: int = 64
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        dtype = _common.parse_dtype(self.dtype)
        x = _common.stem(x, self.width, train=train, dtype=dtype, names=("conv1", "bn1"))
        block = _common.maybe_remat(Bottleneck, self.remat)
        for i, num_blocks in enumerate(self.stage_sizes):
            for j in range(num_blocks):
                stride = 2 if i > 0 and j == 0 else 1
                x = block(
                    4 * self.width * 2**i, stride=stride, dtype=dtype, name=f"layer{i + 1}_{j}"
                )(x, train)
        return _common.last_conv_to_logits(self, x, train=train, dtype=dtype)
