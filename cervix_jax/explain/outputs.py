"""The files of an attribution run in OUT, each written atomically (``cervix_jax.files``).

Per image ``<image_id>.png`` (panel: image | input-gradient overlay | method overlay, signed
maps on a diverging scale by default, cell and nucleus outlines, the deciding cell marked,
true and predicted class in the heading; ``cervix_jax.explain.render``) and ``<image_id>.npy``
(raw attributions, [S, S, 3], or [S, S] for Grad-CAM and attention); per run
``attribution_metrics.json`` and ``.md``, ``curves.npz`` (every image's deletion and insertion
curve, and the imputed ones with ``faithfulness``) with ``curves.png`` (their mean and
spread), ``cell_scores.png`` (cell-level scores per class), and with the evaluations
``imputed_curves.png`` and ``randomization.png`` / ``randomization.npz`` (`run_figures`);
``methods_table.json`` and ``.md`` for a comparison of methods.
"""

from __future__ import annotations

import os

import numpy as np

from cervix_jax import files
from cervix_jax.explain import figures, render
from cervix_jax.explain.evaluation import RANDOMIZATION_MEASURES
from cervix_jax.explain.markdown import methods_table_markdown, metrics_markdown
from cervix_jax.explain.settings import Settings
from cervix_jax.explain.summary import class_name

# Per-image curves of the step kept for curves.npz (the imputed ones with ``faithfulness``).
CURVE_KEYS = (
    "deletion_curve",
    "insertion_curve",
    "imputed_deletion_curve",
    "imputed_insertion_curve",
)
FIGURES = {"curves": "curves.png", "curves_data": "curves.npz", "cell_scores": "cell_scores.png"}
EVALUATION_FIGURES = {
    "faithfulness": {"imputed_curves": "imputed_curves.png"},
    "randomization": {
        "randomization": "randomization.png",
        "randomization_data": "randomization.npz",
    },
}

# How the imputed curves' title names the fill (``faithfulness.FILL_KINDS``).
_FILL_WORDS = {
    "linear": "ROAD's noisy linear imputation",
    "blur": "the blurred image",
    "constant": "a constant",
}


def run_figures(settings: Settings) -> dict[str, str]:
    """The ``figures`` block: name -> file in OUT, for the run's evaluations too."""
    out = dict(FIGURES)
    for evaluation in settings.evaluate:
        out.update(EVALUATION_FIGURES.get(evaluation, {}))
    return out


def safe_relative_path(image_id: str) -> str:
    """``image_id`` as a relative path inside OUT (ids look like 'Dyskeratotic/008')."""
    parts = [p for p in str(image_id).replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if not parts:
        raise ValueError(f"image id {image_id!r} gives no usable file name.")
    return os.path.join(*parts)


def _heading(info: dict, method: str, class_names: tuple[str, ...]) -> str:
    """The panel's heading: true class, prediction and its probability, deciding cell."""
    parts = [
        f"true: {info['label_name'] or 'unknown'}",
        f"predicted: {info['predicted_name']} (p = {info['probability']:.2f})",
    ]
    if info["target"] != info["predicted"]:
        parts.append(f"explained: {class_name(class_names, info['target'])}")
    if info["cells"]["num_cells"]:
        parts.append(f"deciding cell ({method}): {info['cells']['deciding_cell'] or 'none'}")
    return "  |  ".join(parts)


def write_image_outputs(
    out, image_id: str, host, row: int, info: dict, *, method: str, class_names, style: str
) -> None:
    """``OUT/<image_id>.npy`` (raw attributions) and ``.png`` (the panel) of one image."""
    base = os.path.join(os.fspath(out), safe_relative_path(image_id))
    attributions = host["attributions"][row]
    files.atomic_save_npy(base + ".npy", np.asarray(attributions, np.float32))
    render.save_panel(
        base + ".png",
        host["image"][row],
        host["gradient"][row],
        attributions,
        titles=("image and cells", "input gradient", method),
        heading=_heading(info, method, class_names),
        style=style,
        cell_labels=host["cell_labels"][row],
        nucleus_labels=host["nucleus_labels"][row],
        deciding_cell=int(info["cells"]["deciding_cell"] or 0),
    )


def write_metrics(out, metrics: dict) -> None:
    """``OUT/attribution_metrics.json`` and ``OUT/attribution_metrics.md``."""
    files.atomic_write_json(os.path.join(out, "attribution_metrics.json"), metrics)
    files.atomic_write_text(os.path.join(out, "attribution_metrics.md"), metrics_markdown(metrics))


def write_methods_table(out, table: dict) -> None:
    """``OUT/methods_table.json`` and ``OUT/methods_table.md`` (``summary.methods_table``)."""
    files.atomic_write_json(os.path.join(out, "methods_table.json"), table)
    files.atomic_write_text(os.path.join(out, "methods_table.md"), methods_table_markdown(table))


def write_run_figures(out, metrics: dict, curves: dict[str, list], image_size: int) -> None:
    """The files of ``metrics['figures']``: ``curves.npz`` (per-image deletion/insertion
    curves, imputed ones too), ``curves.png``, ``cell_scores.png`` and, with the evaluations,
    ``imputed_curves.png``, ``randomization.npz`` and ``randomization.png``."""
    names = metrics["figures"]
    path = lambda name: os.path.join(out, names[name])
    steps = len(curves["deletion_curve"][0]) - 1
    pixels = image_size * image_size
    fraction = np.round(np.linspace(0, pixels, steps + 1)) / pixels
    arrays = {"image_id": np.asarray(curves["image_id"], dtype=str)}
    arrays["fraction"] = fraction.astype(np.float32)
    for key in CURVE_KEYS:
        if key in curves:
            arrays[key] = np.asarray(curves[key], np.float32)
    with files.atomic_path(path("curves_data")) as tmp:
        np.savez(tmp, **arrays)
    title = f"{metrics['method']} maps of {metrics['model']}"
    figures.plot_curves(
        path("curves"), fraction, arrays["deletion_curve"], arrays["insertion_curve"], title=title
    )
    if "imputed_curves" in names:
        fill = _FILL_WORDS.get(metrics["evaluation"]["fill"]["kind"], "?")
        figures.plot_curves(
            path("imputed_curves"),
            fraction,
            arrays["imputed_deletion_curve"],
            arrays["imputed_insertion_curve"],
            title=f"{title}, removed pixels replaced by {fill}",
        )
    figures.plot_cell_scores(path("cell_scores"), metrics)
    if "randomization" in names:
        _write_randomization(path, metrics, curves)


def _write_randomization(path, metrics: dict, curves: dict[str, list]) -> None:
    """``randomization.npz`` (image ids, stage names, measures, per-image curves) and the plot."""
    summary = metrics["randomization"]
    with files.atomic_path(path("randomization_data")) as tmp:
        np.savez(
            tmp,
            image_id=np.asarray(curves["image_id"], dtype=str),
            stages=np.asarray(summary["stages"], dtype=str),
            measures=np.asarray(RANDOMIZATION_MEASURES, dtype=str),
            curves=np.asarray(curves["randomization_curves"], np.float32),  # [N, stages, M]
        )
    figures.plot_randomization(
        path("randomization"),
        summary,
        kind=metrics["evaluation"]["randomization"]["kind"],
        title=f"{metrics['method']} maps of {metrics['model']} under model randomization",
    )
