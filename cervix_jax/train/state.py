"""The training state: one pytree holding everything a resumed run needs on device."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class TrainState:
    """Pure pytree (no functions inside), so Orbax saves and restores it as is.

    Attributes:
      step: ``[] int32`` number of optimizer updates done.
      params: model parameters.
      batch_stats: BatchNorm running statistics (``{}`` for models without BatchNorm).
      opt_state: optax state.
      rng: ``[2] uint32`` raw PRNG key; the key of step ``s`` is ``fold_in(rng, s)``, so a
        resumed run draws the same augmentations and dropout masks as an uninterrupted one.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array


def create_state(variables: dict, tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
    """A fresh state from model variables (``{'params', 'batch_stats'?}``) and an optimizer."""
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=jnp.asarray(rng, jnp.uint32),
    )


def model_variables(state: TrainState) -> dict:
    """The state's ``{'params', 'batch_stats'}`` for ``model.apply`` (``batch_stats`` only when
    present)."""
    variables = {"params": state.params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables
