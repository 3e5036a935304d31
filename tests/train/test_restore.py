"""Restoring for analysis: only ``params`` and ``batch_stats`` of a checkpoint, on any number of
devices, without the optimizer that wrote it."""

import jax
import optax
import pytest

from cervix_jax import models
from cervix_jax.train import TrainingError
from cervix_jax.train import checkpoints as ckpt_lib
from cervix_jax.train import mesh as mesh_lib
from cervix_jax.train.restore import restore_model_variables
from cervix_jax.train.state import create_state, model_variables
from tests.train import helpers


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two checkpoints written on 4 devices by an optimizer the restore never learns of:
    step 5 (the best by validation accuracy) and step 10 (the latest)."""
    workdir = tmp_path_factory.mktemp("run")
    mesh = mesh_lib.make_mesh()
    assert mesh.devices.size == 4
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
    manager = ckpt_lib.make_manager(workdir / "checkpoints", keep_latest=1, keep_best=1)
    states = {}
    for step, seed, accuracy in ((5, 1, 0.9), (10, 2, 0.5)):
        variables = models.init_variables(helpers.TinyNet(), jax.random.PRNGKey(seed), 32)
        # BatchNorm statistics away from their (0, 1) init, so that a mix-up would show.
        variables["batch_stats"] = jax.tree.map(lambda x, s=seed: x + s, variables["batch_stats"])
        state = create_state(variables, tx, jax.random.PRNGKey(0)).replace(step=step)
        states[step] = jax.device_put(state, mesh_lib.replicated(mesh))
        val = {"val_accuracy": accuracy, "val_loss": 1.0}
        ckpt_lib.save(manager, step, states[step], meta={"epoch": step // 5}, metrics=val)
    manager.wait_until_finished()
    manager.close()
    return workdir, states


@pytest.mark.parametrize("which, step", [("best", 5), ("latest", 10), (10, 10)])
def test_restores_the_variables_of_the_chosen_checkpoint(checkpoints, which, step):
    workdir, states = checkpoints
    restored_step, variables = restore_model_variables(workdir, helpers.TinyNet(), 32, which=which)
    assert restored_step == step
    assert set(variables) == {"params", "batch_stats"}  # no optimizer state, no step, no key
    expected = model_variables(states[step])
    assert helpers.tree_allclose(variables, expected, rtol=0, atol=0)
    assert jax.tree.leaves(variables)[0].sharding.num_devices == 4


def test_a_four_device_checkpoint_restores_in_a_one_device_mesh(checkpoints):
    workdir, states = checkpoints
    mesh = mesh_lib.make_mesh(jax.devices()[:1])
    _, variables = restore_model_variables(workdir, helpers.TinyNet(), 32, mesh=mesh)
    assert all(leaf.sharding.num_devices == 1 for leaf in jax.tree.leaves(variables))
    assert helpers.tree_allclose(variables, model_variables(states[5]), rtol=0, atol=0)


def test_a_missing_step_is_refused_with_the_available_ones(checkpoints):
    workdir, _ = checkpoints
    with pytest.raises(TrainingError, match=r"no checkpoint at step 7 .* available: \[5, 10\]"):
        restore_model_variables(workdir, helpers.TinyNet(), 32, which=7)


def test_a_workdir_without_checkpoints_is_refused(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(TrainingError, match="no checkpoint in .*; train first"):
        restore_model_variables(tmp_path, helpers.TinyNet(), 32)
