"""Config files, config strings, command-line overrides and their refusals."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from absl import flags
from ml_collections import config_flags

ROOT = Path(__file__).resolve().parents[2]


def _parse(*argv):
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "", flag_values=fv, lock_config=True, sys_argv=["prog", *argv]
    )
    fv(["prog", *argv])
    return fv.config


@pytest.mark.parametrize(
    "name, model",
    [
        ("resnet50", "resnet50"),
        ("densenet121", "densenet121"),
        ("rca", "densenet121_rca"),
        ("attention92", "attention92"),
    ],
)
def test_model_files_keep_the_paper_protocol(name, model):
    config = _parse(f"--config={ROOT}/configs/{name}.py")
    assert config.model.name == model
    assert (config.data.image_size, config.batch_size, config.num_epochs) == (224, 16, 50)
    assert (config.optim.name, config.optim.lr, config.data.variant) == ("adam", 1e-3, "full")


def test_config_string_and_overrides():
    config = _parse(
        f"--config={ROOT}/configs/rca.py:cropped,demo",
        "--config.optim.lr=3e-4",
        "--config.data.fold=2",
        "--config.model.options.ca_reduction=8",
    )
    assert config.data.variant == "cropped" and config.data.synthetic
    assert config.data.image_size < 224
    assert config.optim.lr == pytest.approx(3e-4)
    assert config.data.fold == 2 and config.model.options.ca_reduction == 8


def test_unknown_key_is_refused_with_its_name():
    with pytest.raises(Exception, match="no_such_knob"):
        _parse(f"--config={ROOT}/configs/rca.py", "--config.optim.no_such_knob=1")


def test_wrong_type_is_refused_with_its_name():
    with pytest.raises(Exception, match="lr"):
        _parse(f"--config={ROOT}/configs/rca.py", "--config.optim.lr=fast")
    with pytest.raises(Exception, match="num_epochs"):
        _parse(f"--config={ROOT}/configs/rca.py", "--config.num_epochs=2.5")


def test_unknown_config_string_is_refused():
    with pytest.raises(Exception, match="croped"):
        _parse(f"--config={ROOT}/configs/rca.py:croped")


def test_main_refuses_unknown_key_without_running(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--config=configs/rca.py",
            f"--workdir={tmp_path}",
            "--config.optim.lrr=1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "lrr" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("manual_dir", ["unset", "empty"])
def test_main_without_sipakmed_fails_fast_with_instructions(tmp_path, manual_dir):
    command = [
        sys.executable,
        "main.py",
        "--config=configs/rca.py",
        f"--workdir={tmp_path / 'w'}",
        f"--config.data.tfds_data_dir={tmp_path / 'tfds'}",
    ]
    if manual_dir == "empty":
        (tmp_path / "raw").mkdir()
        command.append(f"--config.data.manual_dir={tmp_path / 'raw'}")
    start = time.monotonic()
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert out.returncode == 1, out.stderr[-3000:]
    assert "--config.data.manual_dir=/path/to/" in out.stderr  # the exact option to set
    assert "im_Dyskeratotic" in out.stderr  # the download instructions
    assert "Traceback" not in out.stderr
    assert elapsed < 60, f"took {elapsed:.0f} s to report a missing dataset"
