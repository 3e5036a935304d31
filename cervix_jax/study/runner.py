"""Running the grid: train each cell (or resume it, or skip it when finished), explain its test
fold, write its page; then assemble the study (``collect.py``).

Every check that can refuse the command runs first (`check_plan`: model options, each cell's
config (``train.check_config``), a workdir that holds another run's checkpoints, explanations
made with other settings), so a refused command writes nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import ml_collections

from cervix_jax import models, reports, train
from cervix_jax.explain import batch
from cervix_jax.study.crossval import run_fold
from cervix_jax.study.errors import StudyError
from cervix_jax.study.grid import Cell, StudySpec, cell_config, save_spec

ATTRIBUTIONS = "attributions"  # a run's explanation folder
# Settings of attribution_metrics.json that change the maps; another value is a conflict.
_EXPLAIN_FIELDS = ("method", "steps", "ig_method", "baseline", "num_baselines", "target", "score")


def _log(message: str) -> None:
    if jax.process_index() == 0:
        print(message, flush=True)


def explanation_state(out_dir: Path, settings: batch.Settings) -> tuple[str, dict | None]:
    """``('none', None)``, ``('same', metrics)`` or ``('other', metrics)``: whether ``out_dir``
    holds a finished explanation, made with ``settings`` or with other settings."""
    path = out_dir / "attribution_metrics.json"
    if not path.is_file():
        return "none", None
    metrics = json.loads(path.read_text())
    wanted = {
        "method": settings.method,
        "steps": settings.steps,
        "ig_method": settings.ig_method,
        "baseline": settings.baseline,
        "num_baselines": settings.num_baselines,
        "target": settings.target,
        "score": settings.score,
    }
    same = all(metrics.get(k) == wanted[k] for k in _EXPLAIN_FIELDS)
    return ("same" if same else "other"), metrics


def check_plan(
    base: ml_collections.ConfigDict, spec: StudySpec, workdir: str | os.PathLike, cells
) -> None:
    """Refuses (`StudyError`) what would fail or overwrite later; reads only."""
    options = base.model.options.to_dict()
    for name in spec.models:
        try:
            models.create_model(name, 5, **options)
        except ValueError as e:
            raise StudyError(f"--config.model.options do not fit {name}: {e}") from None
    for cell in cells:
        config = cell_config(base, spec, cell, workdir)
        run_dir = cell.run_dir(workdir)
        try:
            train.check_config(config, check_model=False)  # the options are checked above
            train.check_resumable(config, run_dir)
        except train.TrainingError as e:
            raise StudyError(f"cell {cell.name}: {e}") from None
        state, metrics = explanation_state(run_dir / ATTRIBUTIONS, spec.explain.settings())
        if spec.explain.enabled and state == "other":
            found = ", ".join(f"{k}={metrics.get(k)}" for k in _EXPLAIN_FIELDS)
            raise StudyError(
                f"cell {cell.name}: {run_dir / ATTRIBUTIONS} holds explanations made with other "
                f"settings ({found}); give the same --ig_steps/--ig_baselines or move it away."
            )


def explain_run(spec: StudySpec, run_dir: Path, num_test: int) -> None:
    """Integrated gradients over the run's test fold into ``RUN/attributions`` (skipped when it
    is there with the same settings and number of images)."""
    settings = spec.explain.settings()
    out = run_dir / ATTRIBUTIONS
    wanted = min(spec.explain.num_images or num_test, num_test)
    state, metrics = explanation_state(out, settings)
    if state == "same" and metrics.get("num_images") == wanted:
        return
    batch.attribute_split(
        run_dir,
        out,
        settings,
        split="test",
        num_images=spec.explain.num_images or None,
        per_device_batch=spec.explain.per_device_batch,
        progress=jax.process_index() == 0,
    )


def run_cell(
    base: ml_collections.ConfigDict, spec: StudySpec, cell: Cell, workdir: str | os.PathLike
) -> dict:
    """Trains (resumes, or skips) the cell's run, explains its test fold, writes its page;
    returns its test report."""
    run_dir = cell.run_dir(workdir)
    report = run_fold(cell_config(base, spec, cell, workdir), run_dir)
    if spec.explain.enabled:
        explain_run(spec, run_dir, int(report["num_examples"]))
    if jax.process_index() == 0:
        reports.write_run_report(run_dir)
    return report


def run_grid(
    base: ml_collections.ConfigDict,
    spec: StudySpec,
    workdir: str | os.PathLike,
    only: Cell | None = None,
) -> None:
    """Runs every cell of ``spec`` (or only ``only``) in order, after `check_plan`; saves the
    spec first, so ``--collect`` knows the grid even while cells are still running."""
    cells = [only] if only is not None else spec.cells()
    check_plan(base, spec, workdir, cells)
    if jax.process_index() == 0:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        save_spec(workdir, spec)
    for i, cell in enumerate(cells, start=1):
        _log(f"=== cell {i}/{len(cells)}: {cell.name} -> {cell.run_dir(workdir)}")
        report = run_cell(base, spec, cell, workdir)
        _log(f"=== {cell.name}: test accuracy {report['accuracy']:.4f}")
