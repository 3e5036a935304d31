"""tools/attribute.py on 2 processes (loopback, launch_local): one writer, same numbers as one
process."""

import io
import json

import numpy as np
import pytest

from cervix_jax.explain import batch
from tools import launch_local


@pytest.mark.slow
def test_two_process_attribution_equals_one_process(tmp_path, tiny_trained_workdir):
    workdir = tiny_trained_workdir

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
    for key in batch.METRIC_KEYS + batch.CELL_METRIC_KEYS:
        assert set(multi[key]["per_image"]) == set(single[key]["per_image"])
        for image_id, value in single[key]["per_image"].items():
            if value is None:  # e.g. occlusion_spearman of an image with 2 cells
                assert multi[key]["per_image"][image_id] is None, (key, image_id)
                continue
            np.testing.assert_allclose(
                multi[key]["per_image"][image_id], value, rtol=1e-4, atol=1e-6
            )
    panels = [p for p in (tmp_path / "multi").rglob("*.png") if p.parent != tmp_path / "multi"]
    assert len(panels) == 4  # the run's figures sit at the top, once
    assert sorted(p.name for p in (tmp_path / "multi").glob("*.png")) == [
        "cell_scores.png",
        "curves.png",
    ]
