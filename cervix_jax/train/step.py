"""The jitted train and evaluation steps.

One ``jax.jit`` per step over the ``('data',)`` mesh: the state is replicated and donated, the
batch is sharded on its leading axis, and XLA inserts the cross-device reductions (BatchNorm
statistics and gradients are therefore global-batch quantities, independent of the device
count). Images arrive as uint8; augmentation and normalisation run here, from an explicit key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from cervix_jax.train import mesh as mesh_lib
from cervix_jax.train.state import TrainState

AugmentFn = Callable[[jax.Array, jax.Array], jax.Array]  # (key, images [B,H,W,3]) -> same
NormalizeFn = Callable[[jax.Array], jax.Array]  # uint8 [B,H,W,3] -> float32 [B,H,W,3]


def weighted_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
    *,
    label_smoothing: float = 0.0,
    class_weights: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy over the unmasked examples.

    Args:
      logits: ``[B, C]``; labels: ``[B] int``; mask: ``[B] bool`` (False = padding).
      label_smoothing: optax's ``smooth_labels`` factor.
      class_weights: ``[C]`` or None. With weights the mean is weighted by the true class's
        weight (``sum w_i l_i / sum w_i``, torch's ``CrossEntropyLoss(weight=...)``).

    Returns:
      ``(loss [], per_example [B])`` (per-example losses unweighted, zero on padding).
    """
    num_classes = logits.shape[-1]
    targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    per_example = optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)
    w = mask.astype(jnp.float32)
    if class_weights is not None:
        w = w * jnp.asarray(class_weights, jnp.float32)[labels]
    per_example = jnp.where(mask, per_example, 0.0)
    loss = jnp.sum(per_example * w) / jnp.maximum(jnp.sum(w), 1e-12)
    return loss, per_example


def make_train_step(
    model: nn.Module,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    *,
    augment_fn: AugmentFn | None,
    normalize_fn: NormalizeFn,
    label_smoothing: float = 0.0,
    class_weights: Any = None,
    schedule: optax.Schedule | None = None,
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """Returns ``step(state, batch) -> (state, metrics)``, jitted, state donated.

    ``batch``: ``image [B,H,W,3] uint8``, ``label [B] int32``, optional ``mask [B] bool``.
    ``metrics``: ``loss`` (mean over the batch), ``correct`` and ``count`` (sums), and with
    ``schedule`` (the one ``tx`` follows) ``learning_rate``, the rate this step used; replicated.
    ``augment_fn`` None trains on un-augmented images.
    """
    weights = None if class_weights is None else jnp.asarray(class_weights, jnp.float32)

    def step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        key = jax.random.fold_in(state.rng, state.step)
        aug_key, dropout_key = jax.random.split(key)
        images = batch["image"]
        if augment_fn is not None:
            images = augment_fn(aug_key, images)
        x = normalize_fn(images)
        labels = batch["label"].astype(jnp.int32)
        mask = batch.get("mask", jnp.ones(labels.shape, bool))

        def loss_fn(params):
            variables = {"params": params}
            if state.batch_stats:
                variables["batch_stats"] = state.batch_stats
            logits, updates = model.apply(
                variables,
                x,
                train=True,
                rngs={"dropout": dropout_key},
                mutable=["batch_stats"],
            )
            loss, _ = weighted_cross_entropy(
                logits, labels, mask, label_smoothing=label_smoothing, class_weights=weights
            )
            return loss, (logits, updates)

        (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        param_updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, param_updates)
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            batch_stats=updates.get("batch_stats", state.batch_stats),
            opt_state=opt_state,
        )
        correct = jnp.sum((jnp.argmax(logits, -1) == labels) & mask)
        metrics = {"loss": loss, "correct": correct, "count": jnp.sum(mask)}
        if schedule is not None:
            # optax's schedule counts updates as state.step does: this is the rate applied above.
            metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
        return new_state, metrics

    rep = mesh_lib.replicated(mesh)
    return jax.jit(
        step,
        in_shardings=(rep, mesh_lib.batch_sharding(mesh)),
        out_shardings=(rep, rep),
        donate_argnums=(0,),
    )


def make_eval_step(
    model: nn.Module, mesh: Mesh, *, normalize_fn: NormalizeFn
) -> Callable[[dict, dict], dict]:
    """Returns ``eval_step(variables, batch) -> outputs``, jitted.

    ``outputs`` (sharded like the batch): ``logits [B, C] float32``, ``loss [B]`` (0 on padding),
    ``label [B]``, ``mask [B]`` and, when the batch has it, ``index [B]``. Padding rows stay in
    the output with ``mask`` False so callers drop them on the host.
    """

    def eval_step(variables: dict, batch: dict) -> dict:
        labels = batch["label"].astype(jnp.int32)
        mask = batch.get("mask", jnp.ones(labels.shape, bool))
        logits = model.apply(variables, normalize_fn(batch["image"]), train=False)
        logits = logits.astype(jnp.float32)
        _, per_example = weighted_cross_entropy(logits, labels, mask)
        out = {"logits": logits, "loss": per_example, "label": labels, "mask": mask}
        if "index" in batch:
            out["index"] = batch["index"]
        return out

    data = mesh_lib.batch_sharding(mesh)
    return jax.jit(eval_step, in_shardings=(mesh_lib.replicated(mesh), data), out_shardings=data)
