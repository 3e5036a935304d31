"""Attribution maps and metrics for a split of a training workdir, or for image files.

    python tools/attribute.py --workdir=workdirs/demo --method=ig --steps=50 --split=test \
        --out=workdirs/demo/attributions --num_images=8 --baseline=uniform --target=predicted
    python tools/attribute.py --workdir=workdirs/demo --images='slides/*.png' --out=maps
    python tools/attribute.py --workdir=workdirs/demo --method=ig,blur_ig,gradcam \
        --evaluate=all --num_images=8 --out=workdirs/demo/compare

Restores the best Orbax checkpoint of ``--workdir`` (any number of devices, or CPU), runs the
method over the split with images sharded across devices, and writes per image
``OUT/<image id>.png`` (image and cells | gradient overlay | attribution overlay, signed on a
diverging scale unless ``--panel_style=positive``) and ``.npy``, plus
``OUT/attribution_metrics.json`` and ``.md`` (with the cell-level scores and their aggregates
by class), ``curves.npz``/``curves.png`` and ``cell_scores.png`` (see
``cervix_jax.explain.batch``). ``--method=attention`` scores the network's own attention
maps (attention56, attention92, densenet121_rca) with the same metrics; ``blur_ig`` (Blur IG,
no baseline: the path starts at the image blurred by ``--blur_max_sigma``) and ``guided_ig``
(Guided IG, an adaptive path from the baseline) are path methods like ``ig``.
``--noise_tunnel=smoothgrad|smoothgrad_sq|vargrad`` wraps any method in the noise tunnel
(``--noise_samples`` copies, noise std ``--noise_level`` x 255); ``--method=smoothgrad`` is the
gradient in a smoothgrad tunnel.
``--evaluate=all`` (or a comma list of randomization, random_logit, faithfulness,
infidelity, max_sensitivity, complexity) adds the evaluation suite to the metrics, per image,
computed in the same compiled step: model randomization (``--randomization``, plotted in
``randomization.png``), the random-logit test, deletion/insertion with the removed pixels
imputed (``--fill``; ``imputed_curves.png``), infidelity, max-sensitivity and the complexity
of the maps. Several methods (``--method=ig,gradcam,attention``) run one after the other over
the same images, each into ``OUT/<method>/``, and ``OUT/methods_table.md`` (and ``.json``)
puts them side by side: methods as rows, metrics as columns, mean ± sd over the images.
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
        FILL_KINDS,
        PANEL_STYLES,
        PAPER_PRESET,
        QUADRATURE_RULES,
        RANDOMIZATION_KINDS,
        SCORE_KINDS,
        ExplainError,
        batch,
    )
    from cervix_jax.train import distributed
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (config.json + checkpoints/).")
_OUT = flags.DEFINE_string(
    "out", None, "Output directory (default: WORKDIR/attributions_<method>)."
)
_METHOD = flags.DEFINE_string(
    "method",
    "ig",
    f"Method, or a comma list of methods to compare (each into OUT/<method>, and "
    f"OUT/methods_table.md): {', '.join(batch.ATTRIBUTION_METHODS)}. attention = the "
    "network's own attention maps (attention56/92, densenet121_rca).",
)
_STEPS = flags.DEFINE_integer(
    "steps", 50, "Points of the path methods (ig, blur_ig: quadrature; guided_ig: path steps)."
)
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
_NOISE_TUNNEL = flags.DEFINE_enum(
    "noise_tunnel",
    "none",
    batch.NOISE_TUNNELS,
    "Noise tunnel around the method: smoothgrad (mean), smoothgrad_sq, vargrad (variance).",
)
_NOISE_SAMPLES = flags.DEFINE_integer(
    "noise_samples", 16, "Noisy copies per image (noise tunnel, --method=smoothgrad)."
)
_NOISE_LEVEL = flags.DEFINE_float("noise_level", 0.15, "Noise std as a fraction of 255.")
_BLUR_MAX_SIGMA = flags.DEFINE_float(
    "blur_max_sigma", 50.0, "blur_ig: blur (pixels) where the path starts."
)
_GUIDED_FRACTION = flags.DEFINE_float(
    "guided_fraction", 0.25, "guided_ig: share of the features moved per round."
)
_GUIDED_MAX_DISTANCE = flags.DEFINE_float(
    "guided_max_distance", 0.02, "guided_ig: how far a feature may leave the straight line."
)
_EVALUATE = flags.DEFINE_string(
    "evaluate",
    "",
    f"Evaluations to add to attribution_metrics.json: 'all' or a comma list of "
    f"{', '.join(batch.EVALUATIONS)} ('' = none).",
)
_FILL = flags.DEFINE_enum(
    "fill",
    "linear",
    FILL_KINDS,
    "faithfulness: what replaces removed pixels (linear = ROAD's noisy linear imputation).",
)
_RANDOMIZATION = flags.DEFINE_enum(
    "randomization",
    "cascading",
    RANDOMIZATION_KINDS,
    "randomization: re-initialise from the head down (cascading) or one layer at a time.",
)
_RANDOMIZATION_STAGES = flags.DEFINE_integer(
    "randomization_stages",
    0,
    "randomization: stages spread over depth (0 = one per layer).",
    lower_bound=0,
)
_PERTURBATION_SAMPLES = flags.DEFINE_integer(
    "perturbation_samples", 10, "infidelity, max_sensitivity: perturbations per image."
)
_INFIDELITY_NOISE = flags.DEFINE_float(
    "infidelity_noise", 2.55, "infidelity: std of the Gaussian perturbation (grey levels)."
)
_SENSITIVITY_RADIUS = flags.DEFINE_float(
    "sensitivity_radius", 5.1, "max_sensitivity: L-infinity radius (grey levels)."
)
_PANEL_STYLE = flags.DEFINE_enum(
    "panel_style",
    "signed",
    PANEL_STYLES,
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


def _methods() -> list[str]:
    """``--method`` as a list, each method once and known."""
    methods = [m.strip() for m in _METHOD.value.split(",") if m.strip()]
    unknown = [m for m in methods if m not in batch.ATTRIBUTION_METHODS]
    if not methods or unknown or len(set(methods)) != len(methods):
        raise ValueError(
            f"--method={_METHOD.value}: expected one or more of "
            f"{', '.join(batch.ATTRIBUTION_METHODS)}, comma-separated, each once."
        )
    return methods


def settings_list() -> list:
    """One ``batch.Settings`` per ``--method`` (``--paper``: IG with the paper's protocol).

    Raises:
      ValueError: a bad flag value, named (``Settings`` names its field, as the flag is named).
    """
    common = dict(
        steps=_STEPS.value,
        ig_method=_IG_METHOD.value,
        chunk_size=_CHUNK.value or None,
        baseline=_BASELINE.value,
        num_baselines=_NUM_BASELINES.value,
        target=_TARGET.value,
        score=_SCORE.value,
        noise_tunnel=_NOISE_TUNNEL.value,
        noise_samples=_NOISE_SAMPLES.value,
        noise_level=_NOISE_LEVEL.value,
        blur_max_sigma=_BLUR_MAX_SIGMA.value,
        guided_fraction=_GUIDED_FRACTION.value,
        guided_max_distance=_GUIDED_MAX_DISTANCE.value,
        deletion_steps=_DELETION_STEPS.value,
        sanity_check=_SANITY.value,
        evaluate=_EVALUATE.value,
        fill=_FILL.value,
        randomization=_RANDOMIZATION.value,
        randomization_stages=_RANDOMIZATION_STAGES.value or None,
        perturbation_samples=_PERTURBATION_SAMPLES.value,
        infidelity_noise=_INFIDELITY_NOISE.value,
        sensitivity_radius=_SENSITIVITY_RADIUS.value,
        seed=_SEED.value,
        max_cells=_MAX_CELLS.value,
    )
    methods = _methods()
    if _PAPER.value:
        methods = ["ig"]
        common.update(
            steps=PAPER_PRESET["steps"],
            ig_method=PAPER_PRESET["method"],
            baseline=PAPER_PRESET["baseline"],
            num_baselines=PAPER_PRESET["num_baselines"],
            target=PAPER_PRESET["target"],
            score=PAPER_PRESET["score"],
        )
    try:
        return [batch.Settings(method=m, **common) for m in methods]
    except ValueError as e:  # "field=value: ...", and each field is a flag of the same name
        raise ValueError(f"--{e}") from None


def _check_flags() -> list:
    """Refuses bad flag values in one line each, before anything is restored or written;
    returns one ``batch.Settings`` per ``--method``."""
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
    return settings_list()


def image_files() -> list[str]:
    """The files of ``--images`` (the first ``--num_images``)."""
    return data.find_images(_IMAGES.value)[: _NUM_IMAGES.value or None]


def _run(settings: list, out: str):
    """One method (``attribution_metrics.json``) or several (``methods_table.json``)."""
    which = int(_WHICH.value) if _WHICH.value.isdigit() else _WHICH.value
    common = dict(per_device_batch=_PER_DEVICE.value, which=which, panel_style=_PANEL_STYLE.value)
    paths = None if _IMAGES.value is None else image_files()
    if len(settings) > 1:
        where = dict(split=_SPLIT.value, num_images=_NUM_IMAGES.value or None)
        return batch.compare_methods(
            _WORKDIR.value, out, settings, **(dict(paths=paths) if paths else where), **common
        )
    if paths is None:
        split = dict(split=_SPLIT.value, num_images=_NUM_IMAGES.value or None)
        return batch.attribute_split(_WORKDIR.value, out, settings[0], **split, **common)
    return batch.attribute_files(_WORKDIR.value, out, paths, settings[0], **common)


def _summary_line(result: dict, out: str) -> str:
    """What the run wrote: the mean of every metric, or the methods compared."""
    if "methods" in result:  # methods_table.json
        return f"{len(result['methods'])} methods -> {out}/methods_table.md: " + ", ".join(
            f"{m} ({result['num_images'][m]} images)" for m in result["methods"]
        )
    means = ", ".join(
        f"{k}={result[k]['mean']:.4g}"
        for k in batch.metric_names(result)
        if result[k]["mean"] is not None
    )
    return f"{result['num_images']} images -> {out}: {means}"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        settings = _check_flags()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    runtime.setup()  # before anything starts a JAX backend
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # Orbax and TFDS narrate every restore at INFO
    distributed.initialize_from_flags()
    import jax

    from cervix_jax.train import user_errors

    names = "_".join(batch.run_folder(s) for s in settings)
    out = _OUT.value or os.path.join(_WORKDIR.value, f"attributions_{names}")
    try:
        result = _run(settings, out)
    except (*user_errors(), ExplainError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    if jax.process_index() != 0:
        return
    folders = [os.path.join(out, f) for f in result.get("folders", {}).values()] or [out]
    reports.write_run_report(_WORKDIR.value, folders)  # the run's page, now with the galleries
    print(_summary_line(result, out))


if __name__ == "__main__":
    app.run(distributed.exit_at_once_on_failure(main))
