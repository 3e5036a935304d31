"""Optimizer, schedule and class weights from the config."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cervix_jax.train.builders import class_weights
from cervix_jax.train.optim import make_optimizer, make_schedule
from tests.train import helpers


def test_warmup_then_cosine():
    optim = helpers.small_config(
        **{"optim.lr": 0.1, "optim.warmup_epochs": 2.0, "optim.schedule": "cosine"}
    ).optim
    sched = make_schedule(optim, steps_per_epoch=5, num_epochs=10)
    assert float(sched(0)) == 0.0
    assert float(sched(5)) == pytest.approx(0.05)
    assert float(sched(10)) == pytest.approx(0.1)
    assert float(sched(30)) == pytest.approx(0.05, rel=1e-4)  # halfway through the cosine
    assert float(sched(50)) == pytest.approx(0.0, abs=1e-7)
    constant = make_schedule(helpers.small_config().optim, steps_per_epoch=5, num_epochs=10)
    assert float(constant(0)) == float(constant(49)) == pytest.approx(3e-3)


def test_adamw_decays_matrices_not_biases_and_clipping_bounds_the_step():
    optim = helpers.small_config(
        **{"optim.name": "adamw", "optim.weight_decay": 0.5, "optim.lr": 0.1}
    ).optim
    tx = make_optimizer(optim, make_schedule(optim, 1, 1))
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
    zero = {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros((2,))}
    updates, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_allclose(updates["bias"], 0.0)

    sgd = helpers.small_config(
        **{"optim.name": "sgd", "optim.lr": 1.0, "optim.momentum": 0.0, "optim.grad_clip_norm": 1.0}
    ).optim
    tx = make_optimizer(sgd, make_schedule(sgd, 1, 1))
    grads = {"kernel": jnp.full((2, 2), 10.0), "bias": jnp.zeros((2,))}
    updates, _ = tx.update(grads, tx.init(params), params)
    assert float(optax.global_norm(updates)) == pytest.approx(1.0, rel=1e-5)


def test_unknown_optimizer_is_refused_by_name():
    optim = helpers.small_config(**{"optim.name": "lion"}).optim
    with pytest.raises(ValueError, match="config.optim.name='lion'"):
        make_optimizer(optim, optim.lr)


def test_class_weights_balanced():
    w = class_weights(np.array([0, 0, 0, 1, 2, 2]), num_classes=4)
    np.testing.assert_allclose(w, [6 / 12, 6 / 4, 6 / 8, 0.0])
