"""study.html from a hand-written study: the grid, the paired comparisons, the paper's numbers,
links to each run's page, nothing fetched from a network."""

import json
import re
from urllib.parse import unquote

from cervix_jax import reports, study
from tests.study.fake_study import two_model_study


def test_study_page(tmp_path):
    spec = two_model_study(tmp_path, skip=("resnet50/full/2",))
    for cell in spec.cells():
        if cell.run_dir(tmp_path).is_dir():
            reports.write_run_report(cell.run_dir(tmp_path))
            init = "/w/densenet121" if cell.model == "densenet121" else ""
            (cell.run_dir(tmp_path) / "config.json").write_text(json.dumps({"init_from": init}))
    result = study.collect(tmp_path, spec)
    html = reports.study_report_html(result, tmp_path)
    # One tab per metric in the results, one per compared metric.
    assert html.count('data-tab="res-') == 4 and html.count('data-tab="cmp-') == 4
    assert "<b>0.800 ± 0.000</b>" in html  # densenet121, the best of its column
    assert "paper: 89.11% · 1 split · 101 test images" in html
    assert "densenet121 − resnet50" in html and "densenet121 better" in html
    assert "1 of 6 cells unfinished" in html and "resnet50/full/2" in html
    # What the runs started from, read from their config.json.
    assert "Fine-tuned from ImageNet weights: densenet121 from /w/densenet121." in html
    assert "Trained from scratch (no ImageNet weights): resnet50." in html
    links = [unquote(h) for h in re.findall(r'href="([^"#]+)"', html)]
    assert len(links) == 5 and all((tmp_path / link).is_file() for link in links)
    assert "https://" not in html and "http://" not in html
    assert html.count('src="data:image/png;base64,') == 4 + 1  # forest plots and class bars
