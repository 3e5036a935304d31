"""Tiny Linen models for the explain tests, following the models wing's contract.

``last_conv`` is sown into ``intermediates`` and wrapped with ``self.perturb`` (docs/design.md);
``apply(variables, x [B, H, W, 3] normalised, train=False)`` returns logits.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from cervix_jax import explain, models
from cervix_jax.explain import baselines


class _Head(nn.Module):
    """Holds the last conv in a submodule, to test that nested ``last_conv`` paths are found."""

    features: int

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.features, (3, 3))(x)
        self.sow("intermediates", "last_conv", x)
        return self.perturb("last_conv", x)


class TinyCNN(nn.Module):
    num_classes: int = 3
    features: int = 6
    activation: str = "relu"  # relu | softplus
    batch_norm: bool = False
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        act = jax.nn.relu if self.activation == "relu" else jax.nn.softplus
        x = nn.Conv(self.features, (3, 3), strides=2)(x)
        if self.batch_norm:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = act(x)
        x = act(_Head(self.features)(x))
        x = x.mean(axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


class TinyAttentionCNN(nn.Module):
    """A soft-mask attention block like the Residual Attention Network's, sown under the
    models wing's name (``models.SOFT_MASK``), on a 2x-downsampled map: cheap to compile."""

    num_classes: int = 5
    features: int = 8

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = jax.nn.relu(nn.Conv(self.features, (3, 3), strides=2)(x))
        mask = jax.nn.sigmoid(nn.Conv(self.features, (3, 3))(x))
        self.sow("intermediates", models.SOFT_MASK, mask.mean(axis=-1))
        x = jax.nn.relu(_Head(self.features)((1 + mask) * x))
        return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


class SoftplusMLP(nn.Module):
    """A smooth network: every rule's error is governed by its order."""

    num_classes: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.softplus(nn.Dense(16)(x))
        return nn.Dense(self.num_classes)(x)


def init(model, key, size=16, batch=2):
    """Variables without ``perturbations`` (they carry the init batch's shape)."""
    variables = model.init(key, jnp.zeros((batch, size, size, 3)), train=False)
    return explain.without_capture_collections(variables)


@functools.cache
def logits_fn(model):
    """Pixel-space ``logits_fn(image [H, W, 3], variables) -> [num_classes]`` (cached)."""

    def fn(image, variables):
        x = baselines.to_normalized_space(image)
        return model.apply(variables, x[None], train=False)[0]

    return fn


def normalize(image):
    return baselines.to_normalized_space(image)
