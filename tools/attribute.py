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

    from cervix_jax import runtime
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


def image_files(settings) -> list[str]:
    """The files of ``--images`` (the first ``--num_images``), each checked before any work."""
    from cervix_jax import data

    if settings.target == "label":
        raise data.DataError(
            "--target=label explains the true class, which image files do not have; use "
            "--target=predicted or a class index with --images."
        )
    paths = data.find_images(_IMAGES.value)[: _NUM_IMAGES.value or None]
    for path in paths:
        data.check_image_file(path)
    return paths


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
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
            paths = image_files(settings)
            metrics = batch.attribute_files(_WORKDIR.value, out, paths, settings, **common)
    except (*user_errors(), ExplainError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    if jax.process_index() != 0:
        return
    from cervix_jax import reports

    reports.write_run_report(_WORKDIR.value, [out])  # the run's page, now with this gallery
    keys = batch.METRIC_KEYS + batch.CELL_METRIC_KEYS
    means = ", ".join(
        f"{k}={metrics[k]['mean']:.4g}" for k in keys if metrics[k]["mean"] is not None
    )
    print(f"{metrics['num_images']} images -> {out}: {means}")


if __name__ == "__main__":
    app.run(distributed.exit_at_once_on_failure(main))
