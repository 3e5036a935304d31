"""Optimizer and learning-rate schedule from the config (optax)."""

from __future__ import annotations

import jax
import ml_collections
import optax


def make_schedule(optim: ml_collections.ConfigDict, steps_per_epoch: int, num_epochs: int):
    """Linear warm-up from 0 over ``warmup_epochs``, then constant or cosine decay to 0."""
    total = max(1, int(steps_per_epoch * num_epochs))
    warmup = int(round(optim.warmup_epochs * steps_per_epoch))
    if optim.schedule == "constant":
        main = optax.constant_schedule(optim.lr)
    elif optim.schedule == "cosine":
        main = optax.cosine_decay_schedule(optim.lr, decay_steps=max(1, total - warmup))
    else:
        raise ValueError(
            f"config.optim.schedule={optim.schedule!r}: expected 'constant' or 'cosine'."
        )
    if warmup <= 0:
        return main
    ramp = optax.linear_schedule(0.0, optim.lr, transition_steps=warmup)
    return optax.join_schedules([ramp, main], boundaries=[warmup])


def _decay_mask(params):
    # Biases and BatchNorm scales (1-D) are not decayed: the usual practice, and what keeps
    # weight decay from fighting the normalisation layers.
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(
    optim: ml_collections.ConfigDict, lr: optax.ScalarOrSchedule
) -> optax.GradientTransformation:
    """``adam`` (the paper; ``weight_decay`` adds an L2 term as in torch.optim.Adam), ``adamw``
    (decoupled weight decay) or ``sgd`` (momentum ``optim.momentum``), optionally clipped by
    global norm first, at learning rate ``lr`` (the run's `make_schedule`)."""
    wd = float(optim.weight_decay)
    if optim.name == "adam":
        parts = [optax.add_decayed_weights(wd, mask=_decay_mask)] if wd else []
        parts.append(optax.adam(lr))
        tx = optax.chain(*parts)
    elif optim.name == "adamw":
        tx = optax.adamw(lr, weight_decay=wd, mask=_decay_mask)
    elif optim.name == "sgd":
        parts = [optax.add_decayed_weights(wd, mask=_decay_mask)] if wd else []
        parts.append(optax.sgd(lr, momentum=optim.get("momentum", 0.9), nesterov=False))
        tx = optax.chain(*parts)
    else:
        raise ValueError(f"config.optim.name={optim.name!r}: expected 'adam', 'adamw' or 'sgd'.")
    if optim.grad_clip_norm and optim.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), tx)
    return tx
