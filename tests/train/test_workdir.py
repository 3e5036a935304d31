"""What may change when a run is resumed, and that a refused resume writes nothing."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cervix_jax.train import TrainingError, evaluate, train_and_evaluate
from cervix_jax.train import workdir as workdir_lib
from tests.train import helpers
from tests.tree_snapshot import snapshot

ROOT = Path(__file__).resolve().parents[2]


def test_no_changes_between_a_config_and_its_saved_json(tmp_path):
    config = helpers.small_config()
    workdir_lib.write_config(config, tmp_path)
    assert workdir_lib.config_changes(workdir_lib.load_config_json(tmp_path), config) == []


def test_changes_list_every_computing_field_and_skip_the_operational_ones():
    saved = helpers.small_config()
    new = helpers.small_config(
        **{
            "model.name": "other",
            "data.image_size": 64,
            "num_epochs": 13,
            "batch_size": 16,
            "optim.lr": 1.0,
            "data.num_workers": 3,
            "data.manual_dir": "/elsewhere",
            "log_every_steps": 7,
        }
    )
    changes = workdir_lib.config_changes(saved, new)
    assert [c[0] for c in changes] == [
        "batch_size",
        "data.image_size",
        "model.name",
        "num_epochs",
        "optim.lr",
    ]
    assert ("data.image_size", 32, 64) in changes


def test_a_field_missing_from_the_saved_config_is_a_change():
    saved = helpers.small_config().to_dict()
    del saved["label_smoothing"]
    changes = workdir_lib.config_changes(saved, helpers.small_config())
    assert changes == [("label_smoothing", "(absent)", 0.0)]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("finished")
    config = helpers.small_config(num_epochs=1)
    train_and_evaluate(config, workdir, parts=helpers.parts(config))
    return workdir, config


@pytest.mark.parametrize(
    "overrides",
    [{"model.name": "densenet121"}, {"num_epochs": 13, "batch_size": 16}, {"data.fold": 1}],
)
def test_resuming_with_other_settings_is_refused_before_anything_is_written(finished, overrides):
    workdir, config = finished
    before = snapshot(workdir)
    other = helpers.small_config(**{"num_epochs": 1, **overrides})
    with pytest.raises(TrainingError) as error:
        train_and_evaluate(other, workdir, parts=helpers.parts(other))
    message = str(error.value)
    for field, value in overrides.items():
        assert field in message and repr(value) in message
    assert "another --workdir" in message
    assert snapshot(workdir) == before


def test_a_workdir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(TrainingError, match="is a file"):
        workdir_lib.check_resumable(helpers.small_config(), path)


@pytest.mark.slow
def test_main_refuses_another_model_in_a_trained_workdir(tiny_trained_workdir):
    before = snapshot(tiny_trained_workdir)
    saved = json.loads((tiny_trained_workdir / "config.json").read_text())
    result = subprocess.run(
        [sys.executable, "main.py", "--config=configs/densenet121.py",
         f"--workdir={tiny_trained_workdir}", "--config.data.synthetic=True",
         f"--config.data.synthetic_images_per_class={saved['data']['synthetic_images_per_class']}",
         "--config.data.image_size=32", "--config.batch_size=8", "--config.num_epochs=1"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "model.name: 'resnet50_tiny' (saved) -> 'densenet121' (now)" in result.stderr
    assert snapshot(tiny_trained_workdir) == before


def test_eval_mode_refuses_settings_that_change_the_run_and_writes_nothing(finished):
    workdir, config = finished
    before = snapshot(workdir)
    other = helpers.small_config(**{"num_epochs": 1, "data.image_size": 16})
    with pytest.raises(TrainingError) as error:
        evaluate(other, workdir, parts=helpers.parts(other))
    message = str(error.value)
    assert "data.image_size: 32 (saved) -> 16 (now)" in message and "\n" not in message
    assert snapshot(workdir) == before


def test_eval_mode_uses_the_saved_config(finished):
    workdir, config = finished
    report = json.loads((workdir / "report.json").read_text())
    # No config: the saved one; operational settings (workers, eval batch) may differ.
    again = evaluate(None, workdir, parts=helpers.parts(config))
    assert again["confusion_matrix"] == report["confusion_matrix"]
    relaxed = helpers.small_config(**{"num_epochs": 1, "eval_batch_size": 4})
    assert evaluate(relaxed, workdir, parts=helpers.parts(config))["accuracy"] == again["accuracy"]


@pytest.mark.parametrize("kind", ["missing", "empty", "file"])
def test_eval_mode_on_a_path_that_is_not_a_training_workdir_creates_nothing(tmp_path, kind):
    path = tmp_path / "not_a_run"
    if kind == "empty":
        path.mkdir()
    elif kind == "file":
        path.write_text("x")
    before = snapshot(tmp_path)
    config = helpers.small_config()
    with pytest.raises(TrainingError, match="is not a training workdir"):
        evaluate(config, path, parts=helpers.parts(config))
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_main_eval_prints_no_warnings(tiny_trained_workdir, tmp_path):
    """An evaluation that goes well says so without warnings (Orbax used to warn twice that the
    checkpoint folder is opened read-only, TFDS that a folder has no dataset_info.json)."""
    workdir = tmp_path / "run"
    shutil.copytree(tiny_trained_workdir, workdir)
    saved = json.loads((workdir / "config.json").read_text())
    result = subprocess.run(
        [sys.executable, "main.py", "--mode=eval", f"--workdir={workdir}",
         "--config=configs/resnet50.py", "--config.model.name=resnet50_tiny",
         "--config.data.synthetic=True",
         f"--config.data.synthetic_images_per_class={saved['data']['synthetic_images_per_class']}",
         "--config.data.image_size=32", "--config.data.num_workers=0", "--config.batch_size=8",
         "--config.eval_batch_size=8", "--config.num_epochs=1"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test (4 images, checkpoint step" in result.stdout
    assert result.stderr.strip() == "", result.stderr[-3000:]
