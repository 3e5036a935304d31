"""Multi-host for real: 2 processes x 2 CPU devices on loopback (JAX distributed runtime, gloo)
train exactly like 1 process x 4 devices; one writer; the checkpoint restores in 1 process."""

import io
import json

import numpy as np
import psutil
import pytest

from cervix_jax.train import train_and_evaluate
from cervix_jax.train.workdir import read_history
from tests.train import helpers
from tools.launch_local import launch


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
    multi, single = tmp_path / "multi", tmp_path / "single"
    log = io.StringIO()
    code = launch(
        ["-m", "tests.train.multihost_worker", f"--workdir={multi}"],
        num_processes=2,
        devices_per_process=2,
        sink=log,
    )
    assert code == 0, log.getvalue()[-4000:]
    out = log.getvalue()
    assert "[p0] process 0 done" in out and "[p1] process 1 done" in out
    # Only process 0 writes progress lines and files.
    assert "[p0] epoch 1/2" in out and "[p1] epoch" not in out
    assert out.count("] test (") == 1  # one final report, by process 0

    config = helpers.multihost_config()
    data = helpers.data_module()
    report = train_and_evaluate(config, single, parts=helpers.parts(config, data))

    h_multi, h_single = read_history(multi), read_history(single)
    assert len(h_multi) == 2
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(
            [h[key] for h in h_multi], [h[key] for h in h_single], rtol=1e-5, atol=1e-6
        )
    # The checkpoint written by 2 processes restores in this single process (4 devices).
    a, b = helpers.final_state(multi, config), helpers.final_state(single, config)
    assert helpers.tree_allclose(a.params, b.params, rtol=1e-4, atol=1e-5)
    multi_report = json.loads((multi / "report.json").read_text())
    assert multi_report["num_examples"] == len(data.splits["test"]) == report["num_examples"]
    assert multi_report["confusion_matrix"] == report["confusion_matrix"]
    pred = np.load(multi / "predictions_test.npz")
    np.testing.assert_array_equal(pred["index"], np.sort(data.splits["test"]))
    assert len(list((multi / "tensorboard").glob("events.*"))) == 1


@pytest.mark.slow
def test_a_process_failing_mid_run_fails_the_launch(tmp_path):
    """Process 1's data source breaks in its 4th training step while process 0 waits for it in
    a collective: the launcher must exit non-zero naming process 1, and stop process 0."""
    workdir_flag = f"--workdir={tmp_path / 'failing'}"  # also identifies the processes below
    log = io.StringIO()
    code = launch(
        [
            "-m",
            "tests.train.multihost_worker",
            workdir_flag,
            "--fail_process=1",
            "--fail_after_reads=14",
        ],
        num_processes=2,
        devices_per_process=2,
        grace_s=5,
        sink=log,
    )
    out = log.getvalue()
    assert code == 1, out[-4000:]
    # Process 0 may fail a moment later on the broken connection (gloo); the launcher names the
    # process that exited first.
    assert "launch_local: process 1 of 2 exited with status 1" in out, out[-4000:]
    assert "[p1] RuntimeError: injected failure" in out  # the traceback reached the launcher
    assert "[p0] epoch 1/2 step 2/12" in out  # it failed mid-run, after training began
    assert "done" not in out and not (tmp_path / "failing" / "report.json").exists()
    left = [
        p for p in psutil.process_iter(["cmdline"]) if workdir_flag in (p.info["cmdline"] or [])
    ]
    assert left == []
