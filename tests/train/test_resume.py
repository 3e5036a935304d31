"""restore_or_init on its own: a fresh start, a resume (state, epoch, data position, history),
the fallback when the saved data position does not fit, init_from, and damaged checkpoints."""

import json
import shutil

import jax
import numpy as np
import pytest

from cervix_jax import models
from cervix_jax.train import Parts, TrainingError, evaluate, train_and_evaluate
from cervix_jax.train import checkpoints as ckpt_lib
from cervix_jax.train.builders import prepare_run, train_batches
from cervix_jax.train.optim import make_optimizer, make_schedule
from cervix_jax.train.resume import restore_or_init
from cervix_jax.train.workdir import read_history
from tests.train import helpers
from tests.tree_snapshot import snapshot

CONFIG = helpers.small_config()
STEPS_PER_EPOCH = 48 // CONFIG.batch_size  # helpers.data_module(): 48 training images


def _start(workdir, config=CONFIG):
    tx = make_optimizer(config.optim, make_schedule(config.optim, STEPS_PER_EPOCH, 2))
    run = prepare_run(config, workdir, Parts(data=helpers.data_module(), model=helpers.TinyNet()))
    manager = ckpt_lib.make_manager(workdir / "checkpoints")
    try:
        return restore_or_init(run, manager, tx), manager
    except Exception:
        manager.close()
        raise


def _write_history(workdir, epochs):
    lines = [json.dumps({"epoch": e, "step": e * STEPS_PER_EPOCH}) + "\n" for e in epochs]
    (workdir / "metrics.jsonl").write_text("".join(lines))


def _first_batch(start_step):
    return next(train_batches(CONFIG, helpers.data_module(), start_step))


def _save_after(workdir, steps, epoch):
    """A checkpoint as a run leaves it after ``steps`` steps (the parameters shifted so that a
    fresh init cannot pass for them); returns the saved state."""
    start, manager = _start(workdir)
    for _ in range(steps):
        next(start.batches)
    state = start.state.replace(
        step=start.state.step + steps, params=jax.tree.map(lambda p: p + 1.0, start.state.params)
    )
    val = {"val_accuracy": 0.5, "val_loss": 1.0}
    meta = {"epoch": epoch, **val, "data_start_step": start.data_start_step}
    ckpt_lib.save(manager, steps, state, data_iter=start.batches, meta=meta, metrics=val)
    manager.wait_until_finished()
    manager.close()
    return state


def test_fresh_start_initializes_from_the_seed_and_empties_the_history(tmp_path):
    _write_history(tmp_path, [1, 2])  # left by a run that never saved a checkpoint
    start, manager = _start(tmp_path)
    manager.close()
    assert (start.epoch, start.data_start_step, int(start.state.step)) == (0, 0, 0)
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(CONFIG.seed))
    expected = models.init_variables(helpers.TinyNet(), init_rng, CONFIG.data.image_size)
    assert helpers.tree_allclose(start.state.params, expected["params"], rtol=0, atol=0)
    assert helpers.tree_allclose(start.state.batch_stats, expected["batch_stats"], rtol=0, atol=0)
    np.testing.assert_array_equal(start.state.rng, state_rng)
    assert jax.tree.leaves(start.state.params)[0].sharding.num_devices == 4
    np.testing.assert_array_equal(next(start.batches)["index"], _first_batch(0)["index"])
    assert read_history(tmp_path) == []


def test_resume_restores_state_epoch_and_data_position_and_trims_the_history(tmp_path):
    saved = _save_after(tmp_path, steps=STEPS_PER_EPOCH, epoch=1)
    # Epoch 2 was logged, but the run died before its checkpoint landed.
    _write_history(tmp_path, [1, 2])
    start, manager = _start(tmp_path)
    manager.close()
    assert (start.epoch, start.data_start_step) == (1, 0)
    assert int(start.state.step) == STEPS_PER_EPOCH
    assert helpers.tree_allclose(start.state, saved, rtol=0, atol=0)
    np.testing.assert_array_equal(
        next(start.batches)["index"], _first_batch(STEPS_PER_EPOCH)["index"]
    )
    assert [h["epoch"] for h in read_history(tmp_path)] == [1]


def test_an_unusable_data_position_is_replaced_by_an_iterator_at_the_step(tmp_path):
    _save_after(tmp_path, steps=4, epoch=1)
    (step_dir,) = [p for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    shutil.rmtree(step_dir / "data_iter")  # as after a change in the number of processes
    start, manager = _start(tmp_path)
    manager.close()
    assert start.data_start_step == 4  # saved with the next checkpoint: its iterator's identity
    batch = next(start.batches)
    np.testing.assert_array_equal(batch["index"], _first_batch(4)["index"])
    np.testing.assert_array_equal(batch["image"], _first_batch(4)["image"])


def test_a_saved_data_start_step_makes_the_iterator_it_restores_into(tmp_path):
    # First resume: no usable position, so the iterator is made at step 4 ...
    _save_after(tmp_path, steps=4, epoch=1)
    (step_dir,) = [p for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    shutil.rmtree(step_dir / "data_iter")
    start, manager = _start(tmp_path)
    next(start.batches)
    next(start.batches)
    val = {"val_accuracy": 0.5, "val_loss": 1.0}
    meta = {"epoch": 2, **val, "data_start_step": 4}
    ckpt_lib.save(manager, 6, start.state, data_iter=start.batches, meta=meta, metrics=val)
    manager.wait_until_finished()
    manager.close()
    # ... and the next resume restores the saved position into an iterator made at step 4.
    again, manager = _start(tmp_path)
    manager.close()
    assert (again.epoch, again.data_start_step) == (2, 4)
    np.testing.assert_array_equal(next(again.batches)["index"], _first_batch(6)["index"])


def test_init_from_copies_converted_weights_into_a_fresh_start(tmp_path):
    source = models.init_variables(helpers.TinyNet(), jax.random.PRNGKey(7), 32)
    converted = models.save_converted(source, tmp_path / "converted")
    config = helpers.small_config(init_from=str(converted))
    start, manager = _start(tmp_path / "run", config)
    manager.close()
    # TinyNet has no module named 'head', so every weight comes from the source.
    assert helpers.tree_allclose(start.state.params, source["params"], rtol=0, atol=0)
    assert helpers.tree_allclose(start.state.batch_stats, source["batch_stats"], rtol=0, atol=0)
    assert start.epoch == 0 and int(start.state.step) == 0


def test_init_from_a_missing_path_is_refused_by_name(tmp_path):
    config = helpers.small_config(init_from=str(tmp_path / "nowhere"))
    with pytest.raises(TrainingError, match="config.init_from=.*nowhere.* does not exist"):
        _start(tmp_path / "run", config)


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """A run stopped after epoch 2 of 3 that keeps both epoch checkpoints (steps 6 and 12)."""
    workdir = tmp_path_factory.mktemp("two_checkpoints")
    config = helpers.small_config(num_epochs=3, checkpoint_keep_latest=2)
    assert (
        train_and_evaluate(config, workdir, parts=helpers.parts(config), stop_after_steps=12) == {}
    )
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir()) == [6, 12]
    return workdir, config


def _truncate_largest_file(folder):
    """Cuts the largest file below ``folder`` to half its size (commit markers stay intact);
    returns its path."""
    largest = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = largest.read_bytes()
    largest.write_bytes(data[: len(data) // 2])
    return largest


def test_a_damaged_latest_checkpoint_is_set_aside_and_the_previous_one_resumed(
    two_checkpoints, tmp_path, capsys
):
    source, config = two_checkpoints
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    truncated = _truncate_largest_file(workdir / "checkpoints" / "12" / "state")
    damaged = truncated.read_bytes()
    capsys.readouterr()
    report = train_and_evaluate(config, workdir, parts=helpers.parts(config))
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "checkpoint step 12" in warnings[0], err
    assert "resuming from step 6" in warnings[0] and "damaged_checkpoints" in warnings[0]
    # Kept (moved aside, never deleted), byte for byte.
    kept = (
        workdir
        / "damaged_checkpoints"
        / "12"
        / truncated.relative_to(workdir / "checkpoints" / "12")
    )
    assert kept.read_bytes() == damaged
    # The run went on from step 6: epochs 2 and 3 trained again, then the final report.
    assert [h["epoch"] for h in read_history(workdir)] == [1, 2, 3]
    assert report["num_examples"] == 16
    assert 18 in [int(p.name) for p in (workdir / "checkpoints").iterdir()]


def test_no_readable_checkpoint_is_one_error_naming_the_latest(two_checkpoints, tmp_path):
    source, config = two_checkpoints
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    for step in ("6", "12"):
        _truncate_largest_file(workdir / "checkpoints" / step / "state")
    before = snapshot(workdir)
    with pytest.raises(TrainingError, match="no checkpoint in .* can be read; the latest, step 12"):
        _start(workdir, config)
    assert snapshot(workdir) == before


def test_evaluating_a_damaged_checkpoint_names_it(two_checkpoints, tmp_path):
    source, config = two_checkpoints
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    best = max(read_history(workdir), key=lambda h: (h["val_accuracy"], -h["val_loss"]))["step"]
    # Every array data file (OCDBT's d/ folders, per process or not), cut to nothing: evaluation
    # reads only params and batch_stats, and where in which file they lie (rather than the
    # optimizer state) varies from run to run, so half a file could still hold them.
    data_files = [
        p for p in (workdir / "checkpoints" / str(best)).rglob("*") if p.parent.name == "d"
    ]
    assert data_files
    for data_file in data_files:
        data_file.write_bytes(b"")
    with pytest.raises(TrainingError, match=f"checkpoint step {best} in .* cannot be read"):
        evaluate(None, workdir, parts=helpers.parts(config))
