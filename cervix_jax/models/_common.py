"""Pieces shared by every architecture: torchvision-equivalent conv/BatchNorm settings, the
paper's classification head and the Grad-CAM feature map hook.

Why these settings: the modules are meant to load torchvision weights and reproduce its logits,
so BatchNorm uses torchvision's ``eps=1e-5`` and momentum 0.1 (Flax counts momentum the other
way: 0.9), and every convolution pads explicitly like PyTorch (``'SAME'`` pads stride-2 convs
differently from PyTorch on even sizes). One difference remains in training only: Flax's
running variance averages the biased batch variance, PyTorch's the unbiased one (a factor
n / (n - 1), n = batch x height x width values per channel: under 0.2% at batch 16 on 7x7).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Name of the last convolutional feature map (Grad-CAM contract in docs/design.md).
LAST_CONV = "last_conv"
# Name of the pooled features the classifier head reads (embeddings).
POOLED_FEATURES = "pooled_features"
# Names of the attention networks' own maps in ``intermediates`` (docs/design.md): each
# Residual Attention module's soft mask and each channel-attention layer's weighted feature
# map, [B, h, w] float32 (``cervix_jax.explain.attention`` turns them into one map).
SOFT_MASK = "soft_mask"
CHANNEL_ATTENTION_MAP = "channel_attention_map"

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # torch momentum 0.1: running = 0.9 * running + 0.1 * batch

# He-normal on fan-out, the initialisation torchvision uses for ResNet convolutions; good for
# training any of these ReLU networks from scratch.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch.nn.Linear's default weight distribution: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
dense_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def parse_dtype(dtype: Any) -> jnp.dtype:
    """Returns a compute dtype from 'float32' / 'bfloat16' / a numpy or jax dtype."""
    try:
        parsed = jnp.dtype(dtype)
    except TypeError as e:
        raise ValueError(f"dtype={dtype!r} is not a dtype; use 'float32' or 'bfloat16'.") from e
    if parsed not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
        raise ValueError(f"dtype={dtype!r}: compute dtype must be float32, bfloat16 or float16.")
    return parsed


def conv(
    features: int,
    kernel: int,
    *,
    stride: int = 1,
    padding: int | None = None,
    use_bias: bool = False,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> nn.Conv:
    """A square convolution with PyTorch's explicit symmetric padding (default kernel // 2)."""
    pad = kernel // 2 if padding is None else padding
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=conv_init,
        name=name,
    )


class BatchNorm(nn.Module):
    """Batch normalisation over all axes but the last, applied as one multiply-add per element.

    Same parameters (``scale``, ``bias``), statistics (``batch_stats/mean``, ``var``) and
    semantics as ``flax.linen.BatchNorm`` with ``use_fast_variance``: batch mean and biased
    variance in float32 during training, running averages with Flax's ``momentum``. The
    difference is the formulation: the statistics and parameters are folded into one
    per-channel ``a = scale / sqrt(var + eps)`` and ``b = bias - mean * a`` (the form PyTorch's
    CPU kernel uses), so the full-size tensor is read once and written once, where Flax's
    ``(x - mean) * (scale / sqrt(var + eps)) + bias`` makes XLA CPU emit separate full-size
    passes and a materialised broadcast. Measured on the 2-core Xeon (docs/performance.md):
    ResNet-50 train step at 224 +9% images/s and -14% peak memory; a DenseNet-121 dense block
    (fwd + bwd) 8% faster. Outputs equal Flax's to float32 rounding (tested).
    """

    use_running_average: bool
    momentum: float = BN_MOMENTUM
    epsilon: float = BN_EPSILON
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``x: [..., C]`` -> same shape, in ``dtype``."""
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        x32 = x.astype(jnp.float32)
        if self.use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            mean = x32.mean(axes)
            var = jnp.maximum((x32 * x32).mean(axes) - mean * mean, 0.0)
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * var
        a = scale * jax.lax.rsqrt(var + self.epsilon)
        b = bias - mean * a
        return (x32 * a + b).astype(self.dtype)


class BottleneckUnit(nn.Module):
    """What the two bottleneck residual units share (subclasses add ``__call__``).

    ResNet's (`resnet.Bottleneck`, post-activation) and the Residual Attention Network's
    (`residual_attention.ResidualUnit`, pre-activation) both output ``features`` channels through
    a ``features // 4`` bottleneck, 1x1 -> 3x3 with ``stride`` -> 1x1, and project the shortcut
    with a strided 1x1 conv where they change the shape; compute in ``dtype``.
    """

    features: int
    stride: int = 1
    dtype: Any = jnp.float32


def batch_norm(train: bool, *, dtype: Any = jnp.float32, name: str | None = None) -> BatchNorm:
    """BatchNorm with torchvision's epsilon and momentum; statistics stay float32."""
    return BatchNorm(use_running_average=not train, dtype=dtype, name=name)


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """PyTorch ``MaxPool2d(3, stride=2, padding=1)`` (pads with -inf, output ceil(n / 2))."""
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def stem(
    x: jax.Array, features: int, *, train: bool, dtype: Any, names: tuple[str, str]
) -> jax.Array:
    """The ImageNet stem of every model: 7x7/2 conv, BatchNorm, ReLU, 3x3/2 max-pool.

    ``x: [B, H, W, 3]`` is cast to ``dtype`` first; returns ``[B, H/4, W/4, features]``.
    ``names`` are the conv's and the BatchNorm's (torchvision's names differ by model).
    """
    x = conv(features, 7, stride=2, dtype=dtype, name=names[0])(x.astype(dtype))
    x = nn.relu(batch_norm(train, dtype=dtype, name=names[1])(x))
    return max_pool_3x3_s2(x)


def expose_last_conv(module: nn.Module, x: jax.Array) -> jax.Array:
    """Publishes the last conv feature map ``x: [B, h, w, C]`` for Grad-CAM.

    Sown into ``intermediates['last_conv']`` (a 1-tuple) when that collection is mutable, and
    wrapped by ``module.perturb('last_conv', ...)``: pass a zero
    ``perturbations={'last_conv': zeros}`` to ``apply`` and differentiate with respect to it to
    get the map's gradient. Without a ``perturbations`` collection this is the identity.
    """
    module.sow("intermediates", LAST_CONV, x)
    return module.perturb(LAST_CONV, x)


def classifier_head(
    features: jax.Array,
    *,
    num_classes: int,
    dropout_rate: float,
    train: bool,
    dtype: Any,
) -> jax.Array:
    """The paper's head: Dropout(p) then Linear, named ``head``; returns float32 logits.

    ``features: [B, C]`` pooled features; returns ``[B, num_classes]``.
    """
    features = nn.Dropout(rate=dropout_rate, deterministic=not train, name="dropout")(features)
    logits = nn.Dense(
        num_classes,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=dense_init,
        bias_init=nn.initializers.zeros,
        name="head",
    )(features)
    return logits.astype(jnp.float32)


def last_conv_to_logits(module: nn.Module, x: jax.Array, *, train: bool, dtype: Any) -> jax.Array:
    """The end every model shares: expose ``x`` as ``last_conv``, average-pool (sown as
    ``pooled_features``), paper head.

    ``module`` must have ``num_classes`` and ``dropout_rate`` fields; call it from the module's
    compact ``__call__`` so the head's parameters are named under that module.
    """
    x = expose_last_conv(module, x)
    pooled = global_avg_pool(x)
    # What the head sees (before dropout): sown for `registry.pooled_features`.
    module.sow("intermediates", POOLED_FEATURES, pooled)
    return classifier_head(
        pooled,
        num_classes=module.num_classes,
        dropout_rate=module.dropout_rate,
        train=train,
        dtype=dtype,
    )


def maybe_remat(block: type[nn.Module], remat: bool) -> type[nn.Module]:
    """``block`` wrapped in ``nn.remat`` (recompute activations in the backward pass) if asked.

    Blocks are called as ``block(...)(x, train)``; ``train`` (argument 2, counting ``self``) is
    static. Parameter names and values are unchanged, so checkpoints are interchangeable.
    Measured on the CPU machine (jax 0.10.2): XLA CPU does not lower peak memory with it
    (ResNet-50 @ 128, batch 16: 2711 -> 2599 MB peak RSS, 16% slower); it is meant for
    accelerators, whose schedulers do honour rematerialisation.
    """
    return nn.remat(block, static_argnums=(2,)) if remat else block


def global_avg_pool(x: jax.Array) -> jax.Array:
    """``[B, H, W, C] -> [B, C]`` mean over space, accumulated in float32."""
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(x.dtype)
