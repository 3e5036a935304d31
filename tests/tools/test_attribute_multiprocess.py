"""tools/attribute.py on 2 processes (loopback, launch_local): one writer, same numbers as one
process."""

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from cervix_jax import train
from cervix_jax.explain import batch
from configs import default

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import launch_local  # noqa: E402


@pytest.mark.slow
def test_two_process_attribution_equals_one_process(tmp_path):
    config = default.get_config()
    config.model.name = "resnet50_tiny"
    config.data.synthetic = True
    config.data.synthetic_images_per_class = 4
    config.data.image_size = 32
    config.data.num_workers = 0
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_epochs = 1
    workdir = tmp_path / "run"
    train.train_and_evaluate(config, os.fspath(workdir))

    options = ["--method=ig", "--steps=4", "--num_images=4", "--baseline=black"]
    log = io.StringIO()
    code = launch_local.launch(
        ["tools/attribute.py", f"--workdir={workdir}", f"--out={tmp_path / 'multi'}", *options],
        num_processes=2,
        devices_per_process=1,
        sink=log,
    )
    out = log.getvalue()
    assert code == 0, out[-4000:]
    assert "[p0] 4 images ->" in out and "[p1] 4 images" not in out  # one writer
    multi = json.loads((tmp_path / "multi" / "attribution_metrics.json").read_text())

    settings = batch.Settings(method="ig", steps=4, baseline="black")
    single = batch.attribute_split(
        workdir, tmp_path / "single", settings, num_images=4, write_images=False, progress=False
    )
    for key in batch.METRIC_KEYS:
        assert set(multi[key]["per_image"]) == set(single[key]["per_image"])
        for image_id, value in single[key]["per_image"].items():
            np.testing.assert_allclose(multi[key]["per_image"][image_id], value, rtol=1e-4)
    assert len(list((tmp_path / "multi").rglob("*.png"))) == 4
