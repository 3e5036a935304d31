"""End to end: a real training workdir (train wing) -> tools/attribute.py -> files."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _attribute(workdir, out, *flags, devices=2):
    """Runs tools/attribute.py in a fresh process on ``devices`` CPU devices."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(devices)}
    command = [
        sys.executable,
        os.path.join(REPO, "tools", "attribute.py"),
        f"--workdir={workdir}",
        f"--out={out}",
        *flags,
    ]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)


@pytest.mark.slow
def test_attribute_tool_on_a_trained_workdir(tmp_path, tiny_trained_workdir):
    out = tmp_path / "attributions"
    done = _attribute(
        tiny_trained_workdir,
        out,
        "--method=ig",
        "--steps=4",
        "--num_images=3",
        "--baseline=black",
        "--deletion_steps=4",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 images ->" in done.stdout
    metrics = json.loads((out / "attribution_metrics.json").read_text())
    assert metrics["method"] == "ig" and metrics["steps"] == 4 and metrics["num_images"] == 3
    for key in (
        "completeness_error",
        "localization_cells",
        "localization_nuclei",
        "pointing_game",
        "deletion_auc",
        "insertion_auc",
    ):
        assert set(metrics[key]) == {"mean", "per_image"}
        assert len(metrics[key]["per_image"]) == 3
    for image_id in metrics["insertion_auc"]["per_image"]:
        assert (out / f"{image_id}.png").exists() and (out / f"{image_id}.npy").exists()
        assert metrics["images"][image_id]["panel"] == f"{image_id}.png"
        assert metrics["images"][image_id]["cells"]["num_cells"] >= 1
    assert (out / "attribution_metrics.md").exists()
    for name in metrics["figures"].values():
        assert (out / name).exists(), name
    assert "occlusion_spearman=" in done.stdout or metrics["occlusion_spearman"]["mean"] is None


@pytest.mark.slow
def test_attention_on_a_network_without_attention_is_one_clear_line(tmp_path, tiny_trained_workdir):
    out = tmp_path / "attention"
    done = _attribute(tiny_trained_workdir, out, "--method=attention", devices=1)
    assert done.returncode == 1
    assert "error: method='attention' needs a network with attention, but ResNet" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


@pytest.mark.slow
def test_methods_compared_with_a_noise_tunnel_and_evaluations(tmp_path, tiny_trained_workdir):
    """--method with a comma list: each method (here in a VarGrad tunnel) into its folder,
    with the evaluations asked for, and the methods table at OUT."""
    out = tmp_path / "compare"
    done = _attribute(
        tiny_trained_workdir,
        out,
        "--method=gradient,gradcam",
        "--noise_tunnel=vargrad",
        "--noise_samples=2",
        "--evaluate=complexity",
        "--num_images=2",
        "--deletion_steps=2",
        "--max_cells=16",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"2 methods -> {out}/methods_table.md" in done.stdout
    table = json.loads((out / "methods_table.json").read_text())
    assert table["methods"] == ["gradient + vargrad", "gradcam + vargrad"]
    assert table["num_images"] == {"gradient + vargrad": 2, "gradcam + vargrad": 2}
    for label, folder in table["folders"].items():
        metrics = json.loads((out / folder / "attribution_metrics.json").read_text())
        assert metrics["noise_tunnel"] == "vargrad" and metrics["noise_samples"] == 2
        assert metrics["evaluation"]["evaluate"] == ["complexity"]
        assert table["cells"][label]["sparseness"]["n"] == 2
    assert "## Robustness and complexity" in (out / "methods_table.md").read_text()
