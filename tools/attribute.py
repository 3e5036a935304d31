"""Attribution maps and metrics for a split of a training workdir, or for image files.

    python tools/attribute.py --workdir=workdirs/demo --method=ig --steps=50 --split=test \
        --out=workdirs/demo/attributions --num_images=8 --baseline=uniform --target=predicted
    python tools/attribute.py --workdir=workdirs/demo --images='slides/*.png' --out=maps

Restores the best Orbax checkpoint of ``--workdir`` (any number of devices, or CPU), runs the
method over the split with images sharded across devices, and writes per image
``OUT/<image id>.png`` (image and cells | gradient overlay | attribution overlay, signed on a
diverging scale unless ``--panel_style=positive``) and ``.npy``, plus
``OUT/attribution_metrics.json`` and ``.md`` (with the cell-level scores and their aggregates
by class), ``curves.npz``/``curves.png`` and ``cell_scores.png`` (see
``cervix_jax.explain.batch``). ``--method=attention`` scores the network's own attention
maps (attention56, attention92, densenet121_rca) with the same metrics.
``--images`` (a folder, a quoted glob pattern or a file) explains image files instead of the
split, through the same code: ids are the file stems made unique, the true class is unknown and
the localization metrics are null (no cell outlines); ``images`` in the JSON maps each id to its
file.
``--paper`` selects the paper's IG protocol (probability of the predicted class, left Riemann,
50 steps, 10 uniform random baselines in [0, 255], pixel-space differences).

Several processes (hosts): as for main.py, ``--coordinator_address=HOST:PORT --num_processes=N
--process_id=I`` (or nothing where the cluster provides them, ``--distributed`` on a Cloud TPU
VM pod slice); the images are split over every device of every process and only process 0
writes files.
"""

from __future__ import annotations

import os
import sys

try:  # a Python without the project's packages says what to do instead of a traceback
    from absl import app, flags

    from cervix_jax import analysis, data, reports, runtime, train
    from cervix_jax.explain import (
        BASELINE_KINDS,
        PAPER_PRESET,
        QUADRATURE_RULES,
        SCORE_KINDS,
        ExplainError,
        batch,
        render,
    )
    from cervix_jax.train import distributed
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (config.json + checkpoints/).")
_OUT = flags.DEFINE_string(
    "out", None, "Output directory (default: WORKDIR/attributions_<method>)."
)
_METHOD = flags.DEFINE_enum(
    "method",
    "ig",
    batch.ATTRIBUTION_METHODS,
    "Method; attention = the network's own attention maps (attention56/92, densenet121_rca).",
)
_STEPS = flags.DEFINE_integer("steps", 50, "Integrated-gradients steps.")
_IG_METHOD = flags.DEFINE_enum(
    "ig_method",
    "gausslegendre",
    QUADRATURE_RULES,
    "Quadrature rule of integrated gradients (captum's names).",
)
_CHUNK = flags.DEFINE_integer(
    "chunk_size", 0, "IG points per vmapped chunk (0 = automatic: ~32 gradient passes per device)."
)
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Split to attribute.")
_IMAGES = flags.DEFINE_string(
    "images", None, "Image files instead of --split: a folder, a glob pattern (quoted) or a file."
)
_NUM_IMAGES = flags.DEFINE_integer(
    "num_images", 0, "First N images of the split or files (0 = all)."
)
_BASELINE = flags.DEFINE_enum(
    "baseline",
    "uniform",
    BASELINE_KINDS,
    "IG baseline in pixel space; uniform = --num_baselines random images (the paper's). Black "
    "is 10x cheaper but spreads IG over the bright slide background (cervix_jax.explain.batch).",
)
_NUM_BASELINES = flags.DEFINE_integer("num_baselines", 10, "Uniform random baselines averaged.")
_TARGET = flags.DEFINE_string("target", "predicted", "predicted | label | a class index.")
_SCORE = flags.DEFINE_enum("score", "probability", SCORE_KINDS, "Score attributed.")
_DELETION_STEPS = flags.DEFINE_integer("deletion_steps", 16, "Deletion/insertion curve steps.")
_SANITY = flags.DEFINE_bool("sanity_check", False, "Also correlate with re-initialised weights.")
_PER_DEVICE = flags.DEFINE_integer("per_device_batch", 1, "Images per device per step.")
_WHICH = flags.DEFINE_string("which", "best", "Checkpoint: best | latest | a step.")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed (random baselines, noise, re-init).")
_PAPER = flags.DEFINE_bool("paper", False, "The paper's IG protocol (overrides method flags).")
_MAX_CELLS = flags.DEFINE_integer(
    "max_cells",
    64,
    "Most cells an image may have (static size of the per-cell scores).",
    lower_bound=1,
)
_PANEL_STYLE = flags.DEFINE_enum(
    "panel_style",
    "signed",
    render.PANEL_STYLES,
    "Panels: signed (red for / blue against the target) or positive (the paper's green).",
)
distributed.define_flags()
flags.mark_flags_as_required(["workdir"])


def _check_counts() -> None:
    """Counts and sizes: a zero or negative one would mean no work or a silent clip."""
    for flag, low, meaning in (
        (_STEPS, 1, "integrated-gradients points"),
        (_NUM_BASELINES, 1, "random baselines averaged"),
        (_PER_DEVICE, 1, "images per device per step"),
        (_DELETION_STEPS, 1, "points of the deletion/insertion curves"),
        (_CHUNK, 0, "IG points per chunk, 0 = automatic"),
        (_NUM_IMAGES, 0, "first N images of the split or files, 0 = all"),
    ):
        if flag.value < low:
            raise ValueError(f"--{flag.name}={flag.value}: expected >= {low} ({meaning}).")


def _check_target(num_classes: int) -> None:
    target = _TARGET.value
    if target in ("predicted", "label"):
        return
    if not target.isdigit() or int(target) >= num_classes:
        raise ValueError(
            f"--target={target}: expected 'predicted', 'label' or a class index in "
            f"[0, {num_classes}) (the model has {num_classes} classes)."
        )


def _check_out(out: str) -> None:
    """``--out`` must be a folder or not exist yet, below a folder (never over a file)."""
    existing = os.path.abspath(out)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = "is a file" if existing == os.path.abspath(out) else f"is below a file, {existing}"
        raise ValueError(f"--out={out} {what}; give a folder for the attribution files.")


def _check_images() -> None:
    """``--images``: image files (each opens as an image) and a target they have."""
    if _TARGET.value == "label" and not _PAPER.value:
        raise ValueError(
            "--target=label explains the true class, which image files do not have; use "
            "--target=predicted or a class index with --images."
        )
    try:
        for path in image_files():
            data.check_image_file(path)
    except data.ImageError as e:
        raise ValueError(f"--images: {e}") from None


def _check_flags() -> None:
    """Refuses bad flag values in one line each, before anything is restored or written."""
    try:
        train.require_training_workdir(_WORKDIR.value)
    except train.TrainingError as e:
        raise ValueError(f"--workdir: {e}") from None
    _check_counts()
    # Every model of the registry is built with these classes.
    _check_target(len(data.CLASS_NAMES))
    analysis.parse_which(_WHICH.value, _WORKDIR.value, name="--which")
    if _IMAGES.value is not None:
        _check_images()
    if _OUT.value:
        _check_out(_OUT.value)


def image_files() -> list[str]:
    """The files of ``--images`` (the first ``--num_images``)."""
    return data.find_images(_IMAGES.value)[: _NUM_IMAGES.value or None]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        _check_flags()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    runtime.setup()  # before anything starts a JAX backend
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # Orbax and TFDS narrate every restore at INFO
    distributed.initialize_from_flags()
    import jax

    from cervix_jax.train import user_errors

    settings = dict(
        method=_METHOD.value,
        steps=_STEPS.value,
        ig_method=_IG_METHOD.value,
        chunk_size=_CHUNK.value or None,
        baseline=_BASELINE.value,
        num_baselines=_NUM_BASELINES.value,
        target=_TARGET.value,
        score=_SCORE.value,
        deletion_steps=_DELETION_STEPS.value,
        sanity_check=_SANITY.value,
        seed=_SEED.value,
        max_cells=_MAX_CELLS.value,
    )
    if _PAPER.value:
        settings.update(
            method="ig",
            steps=PAPER_PRESET["steps"],
            ig_method=PAPER_PRESET["method"],
            baseline=PAPER_PRESET["baseline"],
            num_baselines=PAPER_PRESET["num_baselines"],
            target=PAPER_PRESET["target"],
            score=PAPER_PRESET["score"],
        )
    settings = batch.Settings(**settings)
    out = _OUT.value or os.path.join(_WORKDIR.value, f"attributions_{settings.method}")
    which = int(_WHICH.value) if _WHICH.value.isdigit() else _WHICH.value
    common = dict(per_device_batch=_PER_DEVICE.value, which=which, panel_style=_PANEL_STYLE.value)
    try:
        if _IMAGES.value is None:
            metrics = batch.attribute_split(
                _WORKDIR.value,
                out,
                settings,
                split=_SPLIT.value,
                num_images=_NUM_IMAGES.value or None,
                **common,
            )
        else:
            paths = image_files()
            metrics = batch.attribute_files(_WORKDIR.value, out, paths, settings, **common)
    except (*user_errors(), ExplainError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    if jax.process_index() != 0:
        return
    reports.write_run_report(_WORKDIR.value, [out])  # the run's page, now with this gallery
    keys = batch.METRIC_KEYS + batch.CELL_METRIC_KEYS
    means = ", ".join(
        f"{k}={metrics[k]['mean']:.4g}" for k in keys if metrics[k]["mean"] is not None
    )
    print(f"{metrics['num_images']} images -> {out}: {means}")


if __name__ == "__main__":
    app.run(distributed.exit_at_once_on_failure(main))
