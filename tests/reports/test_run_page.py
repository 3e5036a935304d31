"""report.html of a run: built from the workdir's files, every section, links that resolve,
nothing fetched from a network; the gallery with and without the ``images`` block."""

import json
import re
import shutil
from urllib.parse import unquote

import numpy as np
import pytest

from cervix_jax import reports
from cervix_jax.reports.run_page import confusion_table


def _gallery_data(html: str) -> dict:
    match = re.search(r'<script type="application/json" class="gallery-data">(.*?)</script>', html)
    return json.loads(match.group(1).replace("<\\/", "</"))


@pytest.mark.slow
def test_page_sections_links_and_no_network(explained_workdir):
    html = (explained_workdir / "report.html").read_text()
    for anchor in ("results", "curves", "confusion", "classes", "gallery-attributions", "config"):
        assert f'id="{anchor}"' in html
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    sources = re.findall(r'(?:src|href)="([^"#]+)"', html)
    for source in sources:
        assert source.startswith("data:") or (explained_workdir / unquote(source)).is_file()
    metrics = json.loads((explained_workdir / "attributions/attribution_metrics.json").read_text())
    data = _gallery_data(html)
    assert [item["id"] for item in data["items"]] == list(
        metrics["localization_cells"]["per_image"]
    )
    assert html.count('<figure class="thumb') == metrics["num_images"]
    assert [m["key"] for m in data["metrics"]][:3] == [
        "localization_cells",
        "localization_nuclei",
        "pointing_game",
    ]


@pytest.mark.slow
def test_gallery_falls_back_to_the_predictions(explained_workdir):
    # attribute_split's output here may lack the ``images`` block: classes then come from
    # predictions_test.npz. Either way they must be the run's predictions.
    data = _gallery_data((explained_workdir / "report.html").read_text())
    report = json.loads((explained_workdir / "report.json").read_text())
    names = report["class_names"]
    with np.load(explained_workdir / "predictions_test.npz") as npz:
        truth = {
            str(i): (names[y], names[p])
            for i, y, p in zip(npz["image_id"], npz["label"], npz["pred"], strict=True)
        }
    for item in data["items"]:
        assert (item["label"], item["pred"]) == truth[item["id"]]
        assert item["correct"] == (item["label"] == item["pred"])
        assert 0.0 < item["prob"] <= 1.0


@pytest.mark.slow
def test_gallery_reads_the_images_block(explained_workdir, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(explained_workdir, workdir)
    path = workdir / "attributions" / "attribution_metrics.json"
    metrics = json.loads(path.read_text())
    first = next(iter(metrics["localization_cells"]["per_image"]))
    shutil.copy(workdir / "attributions" / f"{first}.png", workdir / "attributions" / "p0.png")
    metrics["images"] = {
        first: {
            "label": None,
            "label_name": None,
            "predicted": 2,
            "predicted_name": "Metaplastic",
            "probability": 0.625,
            "target": 2,
            "panel": "p0.png",
            "map": f"{first}.npy",
            "source": "/data/slide.png",
        }
    }
    path.write_text(json.dumps(metrics))
    data = _gallery_data(reports.run_report_html(workdir))
    item = data["items"][0]
    assert (item["id"], item["pred"], item["prob"], item["panel"]) == (
        first,
        "Metaplastic",
        0.625,
        "attributions/p0.png",
    )
    # The block's null label wins over the predictions file: an image from a file has no label.
    assert item["label"] is None and item["correct"] is None and item["source"] == "/data/slide.png"
    assert len(data["items"]) == metrics["num_images"]  # the others still come from per_image


def test_page_of_a_workdir_without_results(tmp_path):
    html = reports.run_report_html(tmp_path)
    assert "No results yet" in html and "<script>" in html


def test_confusion_table_counts_and_shades():
    html = confusion_table([[3, 1], [0, 4]], ["a", "b"])
    assert re.findall(r">(\d)</td>", html) == ["3", "1", "0", "4"]
    assert 'class="num cm diag dark" style="--s:0.750"' in html
    assert 'style="--s:0.250"' in html  # the off-diagonal share of row a
