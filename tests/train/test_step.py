"""The jitted train step: device-count independence, learning, loss options."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cervix_jax.data import normalize
from cervix_jax.models import init_variables
from cervix_jax.train import mesh as mesh_lib
from cervix_jax.train.optim import make_optimizer, make_schedule
from cervix_jax.train.state import create_state
from cervix_jax.train.step import make_eval_step, make_train_step, weighted_cross_entropy
from tests.train import helpers


def _run(devices, batches, config, steps):
    mesh = mesh_lib.make_mesh(devices)
    model = helpers.TinyNet()
    tx = make_optimizer(config.optim, make_schedule(config.optim, steps_per_epoch=4, num_epochs=2))
    variables = init_variables(model, jax.random.PRNGKey(0), 32)
    state = jax.device_put(
        create_state(variables, tx, jax.random.PRNGKey(1)), mesh_lib.replicated(mesh)
    )
    step = make_train_step(
        model, tx, mesh, augment_fn=helpers.aug_fn(config), normalize_fn=normalize
    )
    losses = []
    for i in range(steps):
        gb = mesh_lib.global_batch(batches[i % len(batches)], mesh, ["image", "label"])
        assert gb["image"].sharding.num_devices == len(devices)
        state, m = step(state, gb)
        losses.append(float(m["loss"]))
    return state, np.array(losses)


def _batches(n=2, size=16):
    arrays = helpers.learnable_images(n * size // 5 + 1, 32, seed=3)
    return [{k: v[i * size : (i + 1) * size] for k, v in arrays.items()} for i in range(n)]


def test_four_devices_equal_one_device():
    config = helpers.small_config(**{"optim.lr": 1e-2, "optim.grad_clip_norm": 1.0})
    batches = _batches()
    s1, l1 = _run(jax.devices()[:1], batches, config, 3)
    s4, l4 = _run(jax.devices()[:4], batches, config, 3)
    np.testing.assert_allclose(l1, l4, rtol=1e-5, atol=1e-6)
    assert helpers.tree_allclose(s1.params, s4.params, rtol=1e-4, atol=1e-5)
    assert helpers.tree_allclose(s1.batch_stats, s4.batch_stats, rtol=1e-4, atol=1e-5)
    assert int(s4.step) == 3
    # The parameters really moved (otherwise equality would be trivial).
    s0 = init_variables(helpers.TinyNet(), jax.random.PRNGKey(0), 32)
    assert not helpers.tree_allclose(s0["params"], s4.params)


def test_loss_falls_on_learnable_set():
    config = helpers.small_config(**{"optim.lr": 1e-2})
    _, losses = _run(jax.devices()[:1], _batches(6), config, 24)
    assert losses[-4:].mean() < 0.6 * losses[:4].mean(), losses


def test_weighted_cross_entropy_by_hand():
    logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    labels = jnp.array([0, 0, 1])
    mask = jnp.array([True, True, False])
    ce = np.array([np.log1p(np.exp(-2.0)), 1 + np.log1p(np.exp(-1.0))])
    loss, per = weighted_cross_entropy(logits, labels, mask)
    assert float(loss) == pytest.approx(ce.mean(), rel=1e-6)
    assert float(per[2]) == 0.0
    # Class weights: both unmasked examples are class 0, so weighting changes nothing ...
    loss_w, _ = weighted_cross_entropy(logits, labels, mask, class_weights=jnp.array([3.0, 1.0]))
    assert float(loss_w) == pytest.approx(ce.mean(), rel=1e-6)
    # ... unless the classes differ.
    loss_w2, _ = weighted_cross_entropy(
        logits, jnp.array([0, 1, 1]), mask, class_weights=jnp.array([3.0, 1.0])
    )
    ce2 = np.array([np.log1p(np.exp(-2.0)), np.log1p(np.exp(-1.0))])
    assert float(loss_w2) == pytest.approx((3 * ce2[0] + ce2[1]) / 4, rel=1e-6)
    # Label smoothing 0.2 over 2 classes: targets (0.9, 0.1).
    loss_s, _ = weighted_cross_entropy(logits[:1], labels[:1], mask[:1], label_smoothing=0.2)
    logp = jax.nn.log_softmax(logits[0])
    assert float(loss_s) == pytest.approx(float(-(0.9 * logp[0] + 0.1 * logp[1])), rel=1e-6)


def test_eval_step_keeps_padding_rows_masked():
    mesh = mesh_lib.make_mesh()
    model = helpers.TinyNet()
    variables = init_variables(model, jax.random.PRNGKey(0), 32)
    arrays = helpers.learnable_images(2, 32)
    batch = {
        "image": arrays["image"][:8],
        "label": arrays["label"][:8],
        "mask": np.array([True] * 6 + [False] * 2),
        "index": np.arange(8, dtype=np.int32),
    }
    step = make_eval_step(model, mesh, normalize_fn=normalize)
    out = mesh_lib.to_host(step(variables, mesh_lib.global_batch(batch, mesh)))
    assert out["logits"].shape == (8, 5)
    np.testing.assert_array_equal(out["mask"], batch["mask"])
    assert np.all(out["loss"][6:] == 0) and np.all(out["loss"][:6] > 0)


def test_the_step_reports_the_learning_rate_it_applied():
    """Under warm-up and cosine decay, the reported rate is the schedule at the step's own
    count, and it is the rate applied: plain SGD at that constant rate makes the same update."""
    config = helpers.small_config(
        **{
            "optim.name": "sgd",
            "optim.momentum": 0.0,
            "optim.lr": 0.1,
            "optim.schedule": "cosine",
            "optim.warmup_epochs": 1.0,
        }
    )
    mesh = mesh_lib.make_mesh(jax.devices()[:1])
    model = helpers.TinyNet()
    schedule = make_schedule(config.optim, steps_per_epoch=2, num_epochs=3)
    tx = make_optimizer(config.optim, schedule)
    variables = init_variables(model, jax.random.PRNGKey(0), 32)
    state = jax.device_put(
        create_state(variables, tx, jax.random.PRNGKey(1)), mesh_lib.replicated(mesh)
    )
    step = make_train_step(
        model, tx, mesh, augment_fn=None, normalize_fn=normalize, schedule=schedule
    )
    batch = mesh_lib.global_batch(_batches(1)[0], mesh, ["image", "label"])
    rates = []
    for _ in range(3):
        before = jax.tree.map(jnp.copy, state)
        state, m = step(state, batch)
        rates.append(float(m["learning_rate"]))
    np.testing.assert_allclose(rates, [float(schedule(k)) for k in range(3)], rtol=1e-6)
    assert rates[0] == 0.0 and 0 < rates[1] < rates[2] == pytest.approx(0.1)
    # The third step again, with a constant rate equal to the one reported.
    constant = make_optimizer(config.optim, rates[2])
    replay = make_train_step(model, constant, mesh, augment_fn=None, normalize_fn=normalize)
    replayed, _ = replay(
        jax.tree.map(jnp.copy, before.replace(opt_state=constant.init(before.params))), batch
    )
    assert helpers.tree_allclose(replayed.params, state.params, rtol=1e-6, atol=1e-7)
    assert not helpers.tree_allclose(before.params, state.params)
