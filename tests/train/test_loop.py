"""train_and_evaluate end to end on a tiny model: artefacts, honest report, resume, NaN,
kills and signals."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cervix_jax.data import normalize
from cervix_jax.train import Parts, TrainingError, evaluate, train_and_evaluate
from cervix_jax.train import checkpoints as ckpt_lib
from cervix_jax.train.workdir import read_history
from tests.train import helpers

ROOT = Path(__file__).resolve().parents[2]
REPORT_KEYS = {
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "per_class",
    "confusion_matrix",
    "class_names",
    "checkpoint_step",
    "num_examples",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 3-epoch run on 4 devices, shared by the tests below."""
    workdir = tmp_path_factory.mktemp("run")
    config = helpers.small_config(num_epochs=3)
    data = helpers.data_module()
    report = train_and_evaluate(config, workdir, parts=helpers.parts(config, data))
    return workdir, config, data, report


def test_every_artefact_is_written(trained):
    workdir, config, _, report = trained
    assert REPORT_KEYS <= set(report)
    on_disk = json.loads((workdir / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    history = read_history(workdir)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    keys = {"epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    assert all(keys <= set(h) for h in history)
    # The rate the last step of each epoch used (constant here; warm-up and decay: test_step).
    assert [h["learning_rate"] for h in history] == pytest.approx([config.optim.lr] * 3)
    assert history[-1]["step"] == 3 * (48 // config.batch_size)
    assert json.loads((workdir / "config.json").read_text())["batch_size"] == config.batch_size
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    md = (workdir / "report.md").read_text()
    assert "| accuracy |" in md and "Confusion matrix" in md
    for png in ("confusion_matrix.png", "training_curves.png"):
        assert (workdir / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    assert (workdir / "checkpoints").is_dir()
    # The best-validation checkpoint is the one evaluated.
    best = max(history, key=lambda h: (h["val_accuracy"], -h["val_loss"]))
    assert report["checkpoint_step"] == best["step"]


def test_report_matches_saved_predictions(trained):
    workdir, _, data, report = trained
    pred = np.load(workdir / "predictions_test.npz")
    # Every test example exactly once, labels from the data, not from the model.
    np.testing.assert_array_equal(pred["index"], np.sort(data.splits["test"]))
    np.testing.assert_array_equal(pred["label"], data.metadata.labels[pred["index"]])
    y, p = pred["label"], pred["logits"].argmax(-1)
    np.testing.assert_array_equal(p, pred["pred"])
    assert report["num_examples"] == len(y)
    assert report["accuracy"] == pytest.approx(np.mean(y == p))
    cm = np.zeros((5, 5), int)
    for t, q in zip(y, p, strict=True):
        cm[t, q] += 1
    assert report["confusion_matrix"] == cm.tolist()
    recalls, f1s = [], []
    for c, name in enumerate(helpers.CLASS_NAMES):
        tp = np.sum((y == c) & (p == c))
        prec = tp / np.sum(p == c) if np.sum(p == c) else 0.0
        rec = tp / np.sum(y == c) if np.sum(y == c) else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        if np.sum(y == c):
            recalls.append(rec)
        f1s.append(f1)
        assert report["per_class"][name]["support"] == int(np.sum(y == c))
        assert report["per_class"][name]["f1"] == pytest.approx(f1)
    assert report["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert report["macro_f1"] == pytest.approx(np.mean(f1s))
    # The task is learnable: a trained tiny net must beat chance by far.
    assert report["accuracy"] >= 0.6


def test_eval_mode_reproduces_report(trained):
    workdir, config, data, report = trained
    again = evaluate(
        config, workdir, parts=Parts(data=data, model=helpers.TinyNet(), normalize_fn=normalize)
    )
    for key in ("accuracy", "confusion_matrix", "checkpoint_step", "num_examples"):
        assert again[key] == report[key]


def test_four_device_checkpoint_restores_on_one_device(trained):
    workdir, config, _, _ = trained
    s4 = helpers.final_state(workdir, config)
    s1 = helpers.final_state(workdir, config, devices=jax.devices()[:1])
    leaf = jax.tree.leaves(s1.params)[0]
    assert leaf.sharding.num_devices == 1
    assert jax.tree.leaves(s4.params)[0].sharding.num_devices == 4
    assert helpers.tree_allclose(s1, s4, rtol=0, atol=0)
    # And the restored variables compute the same logits on either layout.
    x = normalize(helpers.learnable_images(2, 32)["image"])
    v1 = {"params": s1.params, "batch_stats": s1.batch_stats}
    v4 = jax.tree.map(np.asarray, v1)
    out1 = helpers.TinyNet().apply(v1, x, train=False)
    out4 = helpers.TinyNet().apply(v4, x, train=False)
    np.testing.assert_allclose(out1, out4, rtol=1e-6)


def test_resume_equals_uninterrupted(trained, tmp_path):
    workdir, config, _, report = trained
    data = helpers.data_module()
    # First "process": stops (as if killed) after epoch 1's checkpoint.
    parts = helpers.parts(config, data)
    partial = train_and_evaluate(config, tmp_path, parts=parts, stop_after_steps=1)
    assert partial == {} and not (tmp_path / "report.json").exists()
    assert [h["epoch"] for h in read_history(tmp_path)] == [1]
    # A copy without the saved data position, as after a change in the number of processes:
    # the iterator is re-positioned from the step number instead.
    shutil.copytree(tmp_path, tmp_path.with_name(tmp_path.name + "_noiter"))
    no_iter = tmp_path.with_name(tmp_path.name + "_noiter")
    (step_dir,) = [p for p in (no_iter / "checkpoints").iterdir() if p.name.isdigit()]
    shutil.rmtree(step_dir / "data_iter")
    # Second process: same command, same workdir, fresh data module and iterator.
    resumed = train_and_evaluate(config, tmp_path, parts=helpers.parts(config))
    # The re-positioned iterator (made at step 6) is saved with epoch 2 and restored exactly
    # when that run resumes in turn.
    assert train_and_evaluate(config, no_iter, parts=parts, stop_after_steps=7) == {}
    manager = ckpt_lib.make_manager(no_iter / "checkpoints", read_only=True)
    assert ckpt_lib.restore_meta(manager, 12)["data_start_step"] == 6
    manager.close()
    train_and_evaluate(config, no_iter, parts=helpers.parts(config))
    a = helpers.final_state(workdir, config)
    b = helpers.final_state(tmp_path, config)
    assert int(a.step) == int(b.step)
    assert helpers.tree_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert helpers.tree_allclose(a, helpers.final_state(no_iter, config), rtol=1e-6, atol=1e-7)
    h_a, h_b = read_history(workdir), read_history(tmp_path)
    np.testing.assert_allclose(
        [h["train_loss"] for h in h_a], [h["train_loss"] for h in h_b], rtol=1e-6
    )
    assert resumed["confusion_matrix"] == report["confusion_matrix"]


class _PoisonedNet(helpers.TinyNet):
    """TinyNet whose logits turn NaN from its 8th training call on (a counter in
    ``batch_stats``), as a diverging run would."""

    @helpers.nn.compact
    def __call__(self, x, train: bool = False):
        calls = self.variable("batch_stats", "calls", lambda: jnp.zeros((), jnp.int32))
        logits = helpers.TinyNet.__call__(self, x, train)
        if train and not self.is_initializing():
            calls.value = calls.value + 1
            logits = jnp.where(calls.value >= 8, jnp.nan, logits)
        return logits


def test_nan_loss_stops_before_a_poisoned_checkpoint(tmp_path):
    config = helpers.small_config(num_epochs=3)
    parts = helpers.parts(config, model=_PoisonedNet())
    steps_per_epoch = 48 // config.batch_size
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at step 8 \(epoch 2\)"):
        train_and_evaluate(config, tmp_path, parts=parts)
    manager = ckpt_lib.make_manager(tmp_path / "checkpoints", read_only=True)
    assert list(manager.all_steps()) == [steps_per_epoch]
    assert [h["epoch"] for h in read_history(tmp_path)] == [1]


def test_sigkill_then_resume_equals_uninterrupted(trained, tmp_path):
    """A real kill (SIGKILL, mid-epoch, maybe mid-save), then the same command again."""
    workdir, config, _, report = trained
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.train.kill_worker", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        # Orbax renames a checkpoint into place only when it is complete.
        while not (tmp_path / "checkpoints" / "6").exists():
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        time.sleep(0.3)  # into epoch 2 (a batch is 8 records at 0.1 s each)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "report.json").exists()
    resumed = train_and_evaluate(config, tmp_path, parts=helpers.parts(config))
    a, b = helpers.final_state(workdir, config), helpers.final_state(tmp_path, config)
    assert helpers.tree_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert resumed["confusion_matrix"] == report["confusion_matrix"]
    assert [h["epoch"] for h in read_history(tmp_path)] == [1, 2, 3]


def _start_worker(workdir, num_workers: int) -> subprocess.Popen:
    """The kill worker in a session of its own: a signal to its process group reaches its grain
    workers too, as a terminal's Ctrl-C or a scheduler's signal does."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.train.kill_worker", str(workdir), str(num_workers)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _signal_in_epoch_2(proc: subprocess.Popen, workdir, signum: int) -> tuple[str, str]:
    """Waits for epoch 1's checkpoint, sends ``signum`` to the worker's process group a moment
    into epoch 2, and returns its (stdout, stderr) once it has exited."""
    try:
        deadline = time.monotonic() + 300
        while not (workdir / "checkpoints" / "6").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.05)
        time.sleep(0.5)  # into epoch 2 (a batch is 8 records at 0.1 s each)
        os.killpg(proc.pid, signum)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert _group_ends(proc.pid), "a process of the run (a grain worker?) outlived it"
    return out, err


def _group_ends(pgid: int, timeout_s: float = 60) -> bool:
    """Whether process group ``pgid`` is empty within ``timeout_s`` (multiprocessing's
    resource tracker leaves a moment after the processes it served)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    """SIGINT to the whole process group (grain workers included), as Ctrl-C in a terminal."""
    out, err = _signal_in_epoch_2(_start_worker(tmp_path, 2), tmp_path, signal.SIGINT)
    shown = f"stderr:\n{err[-3000:]}\nstdout:\n{out[-1000:]}"
    for noise in ("Traceback", "KeyboardInterrupt", "leaked"):
        assert noise not in out + err, shown
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1, shown
    match = re.fullmatch(
        r"interrupted at step (\d+); the latest checkpoint is step (\d+); re-run the same "
        r"command to resume",
        lines[0],
    )
    assert match, shown
    reached, latest = int(match[1]), int(match[2])
    assert reached >= latest >= 6 and (tmp_path / "checkpoints" / str(latest)).is_dir(), shown


@pytest.mark.slow
def test_sigterm_saves_the_step_reached_and_the_same_command_resumes_exactly(trained, tmp_path):
    """SIGTERM to the process group mid-epoch (grain workers included), as a scheduler sends
    before a kill: a checkpoint at the step reached, exit 143; then the same command finishes
    the run as if it had never stopped, without warnings about leaked shared memory or
    read-only checkpoint folders."""
    workdir, config, _, report = trained
    out, err = _signal_in_epoch_2(_start_worker(tmp_path, 2), tmp_path, signal.SIGTERM)
    shown = f"stderr:\n{err[-3000:]}\nstdout:\n{out[-1000:]}"
    for noise in ("Traceback", "leaked"):  # resource_tracker: leaked shared_memory objects
        assert noise not in out + err, shown
    last = err.strip().splitlines()[-1]
    match = re.fullmatch(
        r"terminated \(SIGTERM\) at step (\d+); the latest checkpoint is step \1; re-run the "
        r"same command to resume",
        last,
    )
    assert match, shown
    stopped = int(match[1])
    assert 6 < stopped < 18 and (tmp_path / "checkpoints" / str(stopped)).is_dir(), shown
    assert not (tmp_path / "report.json").exists()

    again = _start_worker(tmp_path, 2)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    assert f"resumed from {tmp_path / 'checkpoints'} step {stopped}" in out
    for noise in ("leaked", "read only", "Traceback"):
        assert noise not in err, err[-3000:]
    a, b = helpers.final_state(workdir, config), helpers.final_state(tmp_path, config)
    assert helpers.tree_allclose(a, b, rtol=1e-6, atol=1e-7)
    h_a, h_b = read_history(workdir), read_history(tmp_path)
    assert [h["epoch"] for h in h_b] == [1, 2, 3]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose([h[key] for h in h_b], [h[key] for h in h_a], rtol=1e-6)
    resumed = json.loads((tmp_path / "report.json").read_text())
    assert resumed["confusion_matrix"] == report["confusion_matrix"]
