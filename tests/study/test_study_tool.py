"""tools/study.py end to end on a tiny grid: one cell alone (--only), --collect with a cell
missing, the plain command finishing the grid and skipping what is done (bad flags:
tests/test_cli_bad_inputs.py)."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GRID = [
    "--config.data.synthetic=true",
    "--config.data.synthetic_images_per_class=6",
    "--config.data.image_size=32",
    "--config.data.num_workers=0",
    "--config.num_epochs=1",
    "--config.batch_size=4",
    "--config.eval_batch_size=8",
    "--models=resnet50_tiny,densenet121_tiny",
    "--variants=full",
    "--folds=3",
    "--run_folds=0",
    "--ig_steps=2",
    "--ig_baselines=1",
    "--bootstrap_samples=200",
]


def _study(workdir, *args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "1"}
    command = [sys.executable, os.path.join(REPO, "tools", "study.py"), f"--workdir={workdir}"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=900
    )


@pytest.mark.slow
def test_only_collect_then_the_whole_grid(tmp_path):
    w = tmp_path / "study"
    done = _study(w, *GRID, "--only=resnet50_tiny/full/0")
    assert done.returncode == 0, done.stderr[-3000:]
    resnet = w / "runs/resnet50_tiny/full/fold_0"
    assert (resnet / "report.html").is_file()
    assert (resnet / "attributions/attribution_metrics.json").is_file()
    assert not (w / "study.json").exists()  # one cell of an array job assembles nothing

    done = _study(w, "--collect")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "missing or unfinished: densenet121_tiny/full/0" in done.stdout
    assert json.loads((w / "study.json").read_text())["missing"] == ["densenet121_tiny/full/0"]

    before = (resnet / "report.json").stat().st_mtime_ns
    done = _study(w, *GRID)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("training ") == 1  # only the missing cell trains
    assert (resnet / "report.json").stat().st_mtime_ns == before
    result = json.loads((w / "study.json").read_text())
    assert result["missing"] == [] and len(result["runs"]) == 2
    assert {c["metric"] for c in result["comparisons"]} >= {"accuracy", "localization_cells"}
    assert (w / "study.md").is_file() and (w / "study.html").is_file()
    html = (w / "study.html").read_text()
    assert 'href="runs/densenet121_tiny/full/fold_0/report.html"' in html
