"""The model registry: names -> Flax modules, variable initialisation and shapes.

Re-exported by ``cervix_jax.models`` (its ``__init__`` holds no logic).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cervix_jax.models._common import POOLED_FEATURES, parse_dtype
from cervix_jax.models.densenet import DenseNet
from cervix_jax.models.residual_attention import ResidualAttentionNet
from cervix_jax.models.resnet import ResNet

_TINY_RESNET = dict(stage_sizes=(1, 1, 1, 1), width=8)
_TINY_DENSENET = dict(block_config=(2, 2, 2, 2), growth_rate=8, num_init_features=16)
_TINY_ATTENTION = dict(stem_features=8, stage_features=(32, 64, 128, 256))

# name -> (module class, architecture defaults). Tiny variants differ only in these numbers.
_REGISTRY: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "resnet50": (ResNet, dict(stage_sizes=(3, 4, 6, 3), width=64)),
    "densenet121": (DenseNet, dict(block_config=(6, 12, 24, 16), growth_rate=32)),
    "densenet121_rca": (
        DenseNet,
        dict(block_config=(6, 12, 24, 16), growth_rate=32, ca_placement="last_layer"),
    ),
    "attention56": (ResidualAttentionNet, dict(modules_per_stage=(1, 1, 1))),
    "attention92": (ResidualAttentionNet, dict(modules_per_stage=(1, 2, 3))),
    "resnet50_tiny": (ResNet, _TINY_RESNET),
    "densenet121_tiny": (DenseNet, _TINY_DENSENET),
    # r=4 so that the 8 new maps keep 2 hidden units (r=16 would leave none).
    "densenet121_rca_tiny": (
        DenseNet,
        dict(_TINY_DENSENET, ca_placement="last_layer", ca_reduction=4),
    ),
    "attention56_tiny": (ResidualAttentionNet, dict(_TINY_ATTENTION, modules_per_stage=(1, 1, 1))),
    # Two modules in stage 2 keep module stacking exercised; three in stage 3 would double the
    # compile time of the tests for no new code path.
    "attention92_tiny": (ResidualAttentionNet, dict(_TINY_ATTENTION, modules_per_stage=(1, 2, 1))),
}

MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def create_model(name: str, num_classes: int, **options: Any) -> nn.Module:
    """Builds a registered model.

    Args:
      name: one of ``MODEL_NAMES``.
      num_classes: classifier outputs (5 for SIPaKMeD).
      **options: overrides of the model's fields, e.g. ``dropout_rate=0.5``,
        ``dtype='bfloat16'``, ``ca_placement='transitions'``.

    Returns:
      An unbound Flax module; ``module.apply(variables, x, train=...)``.
    """
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}; registered models: {', '.join(MODEL_NAMES)}.")
    cls, defaults = _REGISTRY[name]
    fields = {f.name for f in dataclasses.fields(cls)} - {"parent", "name", "num_classes"}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(
            f"Model {name!r} ({cls.__name__}) has no option(s) {unknown}; "
            f"valid options: {sorted(fields)}."
        )
    kwargs = {**defaults, **options}
    if "dtype" in kwargs:
        kwargs["dtype"] = parse_dtype(kwargs["dtype"])
    return cls(num_classes=num_classes, **kwargs)


def _input_shape(input_shape: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(input_shape, int | np.integer):
        return (1, int(input_shape), int(input_shape), 3)
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4:
        raise ValueError(f"input_shape must be an image size or [B, H, W, C]; got {shape}.")
    return shape


def _init_fn(model: nn.Module, shape: tuple[int, ...]) -> Callable[[jax.Array], dict]:
    def init(rng: jax.Array) -> dict:
        variables = model.init({"params": rng}, jnp.zeros(shape, jnp.float32), train=False)
        # Dropping the Grad-CAM collections here also lets JAX drop the forward pass that
        # computed them: the jitted init only evaluates the initialisers.
        return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}

    return init


@functools.lru_cache(maxsize=32)
def _jitted_init(model: nn.Module, shape: tuple[int, ...]) -> Callable[[jax.Array], dict]:
    # Compiling hundreds of inlined threefry draws dominates initialisation on CPU (10-30 s
    # for these models on 2 cores); the code runs once, so skip XLA's backend optimisation
    # there: 3x faster to compile for the tiny models, and faster overall for the full ones.
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
    return jax.jit(_init_fn(model, shape), compiler_options=options)


def init_variables(
    model: nn.Module, rng: jax.Array, input_shape: int | Sequence[int] = 224
) -> dict[str, Any]:
    """Initialises ``{'params', 'batch_stats'}`` (float32) under ``jax.jit``.

    Args:
      model: a module from :func:`create_model` (any Linen module taking ``(x, train=)``).
      rng: PRNG key for the initialisers.
      input_shape: an image size S (shape ``[1, S, S, 3]``) or a full ``[B, H, W, C]``; the
        parameters of the registered models do not depend on it, only the traced shapes do.
    """
    shape = _input_shape(input_shape)
    try:
        init = _jitted_init(model, shape)
    except TypeError:  # an unhashable module: no cache
        init = _jitted_init.__wrapped__(model, shape)
    return init(rng)


def abstract_variables(model: nn.Module, input_shape: int | Sequence[int] = 224) -> dict[str, Any]:
    """``jax.ShapeDtypeStruct`` tree of :func:`init_variables` (no computation)."""
    return jax.eval_shape(_init_fn(model, _input_shape(input_shape)), jax.random.key(0))


def last_conv_perturbation(model: nn.Module, input_shape: Sequence[int]) -> dict[str, jax.Array]:
    """Zero ``perturbations`` collection for inputs of shape ``[B, H, W, C]``.

    ``apply({**variables, 'perturbations': p}, x)`` with ``p`` from here computes the same
    logits; ``jax.grad`` with respect to ``p['last_conv']`` is the gradient of the output with
    respect to the last conv feature map (Grad-CAM).
    """
    shape = _input_shape(input_shape)

    def init(rng: jax.Array) -> dict:
        return model.init({"params": rng}, jnp.zeros(shape, jnp.float32), train=False)[
            "perturbations"
        ]

    abstract = jax.eval_shape(init, jax.random.key(0))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract)


def pooled_features(model: nn.Module, variables: dict, x: jax.Array) -> jax.Array:
    """``[B, D] float32``: what the classifier head of ``model`` reads for ``x`` (inference).

    The last conv feature map average-pooled, before dropout and the dense layer (``D``: 2048
    for ResNet-50, 1024 for DenseNet-121); every registered model sows it into
    ``intermediates['pooled_features']``. ``x: [B, H, W, 3]`` normalised, as for ``apply``.
    """
    _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
    return state["intermediates"][POOLED_FEATURES][0].astype(jnp.float32)


def count_params(params: Any) -> int:
    """Number of scalars in a pytree of arrays or ``ShapeDtypeStruct`` s."""
    return int(sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params)))
