"""notebooks/analysis.ipynb: committed without outputs, and run end to end (nbclient) against
the session's tiny trained workdir, so that it cannot rot.

The notebook's first code cell after the set-up is tagged ``parameters``; the test replaces it
(workdir, image files, fewer IG steps), as papermill would.
"""

from __future__ import annotations

import os

import nbformat
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "analysis.ipynb")


def _code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _has_image(cell) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.outputs)


def test_notebook_is_committed_without_outputs():
    cells = _code_cells(nbformat.read(NOTEBOOK, as_version=4))
    assert all(cell.outputs == [] and cell.execution_count is None for cell in cells)
    tagged = [cell for cell in cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and "WORKDIR = " in tagged[0].source


@pytest.mark.slow
def test_notebook_runs_on_a_trained_workdir(tiny_trained_workdir):
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    cells = _code_cells(notebook)
    (parameters,) = [cell for cell in cells if "parameters" in cell.metadata.get("tags", [])]
    parameters.source = "\n".join(
        [
            f"WORKDIR = {os.fspath(tiny_trained_workdir)!r}",
            'IMAGES = WORKDIR + "/tfds/*/raw/*/*/*.bmp"',
            "IG_STEPS = 4",
            "NUM_BASELINES = 2",
            "MAX_IMAGES = 8",
        ]
    )
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": REPO}}
    )
    client.execute()  # raises CellExecutionError with the cell's traceback if a cell fails

    load, predict, panels, table, embedding = cells[2:]
    assert "resnet50_tiny at 32 px, checkpoint best, 4 device(s)" in _text(load)
    predicted = _text(predict).splitlines()
    assert len(predicted) == 8 and all(".bmp: " in line for line in predicted)
    assert _has_image(panels)
    rows = _text(table).splitlines()
    keys = ["localization_cells", "localization_nuclei", "pointing_game"]
    assert rows[0].split() == ["class", "images", *keys]
    assert len(rows) == 5  # header + the four classes of the tiny test split
    assert _has_image(embedding)
