"""Time per image of the attribution tool's evaluation suite, and where the time goes.

    python bench/evaluation.py --model=resnet50 --image_size=224 --steps=50 --num_images=1
    python bench/evaluation.py --evaluations=base,all --randomization_stages=4

One JSON line per configuration of ``--evaluations``, each one global batch of
``--num_images`` random images through ``explain.batch.make_explainer(...).explain_batch``,
the tool's own step: ``base`` is what every run computes (the method's maps, the input
gradient, deletion/insertion, the cell occlusion), a name of ``explain.batch.EVALUATIONS``
is ``base`` plus that evaluation, ``all`` is ``base`` plus every one. Per line, besides the
fields of ``bench/_common.py`` (``batch_size`` = ``--num_images``): ``evaluate``, ``method``,
``steps``, ``baseline``, ``randomization_stages`` (the stages run), ``perturbation_samples``,
``s_per_image`` (median of the timed calls), ``over_base_s_per_image`` (this configuration
minus ``base`` when ``base`` ran first: the evaluation's own cost), ``first_call_s`` and
``compile_s`` (tracing, lowering and XLA compilation within the first call, from JAX's
monitoring events). With ``--repeats=0`` (the default: at 224 px one call of the whole suite
takes minutes on 2 cores) the one timed run is the first call less its compilation; with
``--repeats=N`` it is N more calls. Weights are random (the time does not depend on them);
one device.
"""

from __future__ import annotations

import sys

try:  # a Python without the project's packages says what to do instead of a traceback
    from absl import app, flags

    from cervix_jax import runtime
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

import _common  # bench/_common.py (a script's own folder is on sys.path)

_MODEL = flags.DEFINE_string("model", "resnet50", "Name for cervix_jax.models.create_model.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side in pixels.")
_METHOD = flags.DEFINE_string("method", "ig", "Attribution method (explain.batch).")
_STEPS = flags.DEFINE_integer("steps", 50, "Points of the path method.")
_BASELINE = flags.DEFINE_string("baseline", "black", "IG baseline (black: one per image).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 1, "Images per call (one global batch).")
_EVALUATIONS = flags.DEFINE_list(
    "evaluations",
    ["base", "randomization", "random_logit", "faithfulness", "infidelity"]
    + ["max_sensitivity", "complexity", "all"],
    "Configurations to time, in order: base, names of explain.batch.EVALUATIONS, all.",
)
_STAGES = flags.DEFINE_integer(
    "randomization_stages", 0, "Randomization stages (0 = one per layer)."
)
_PERTURBATIONS = flags.DEFINE_integer("perturbation_samples", 10, "Infidelity/sensitivity.")
_DELETION_STEPS = flags.DEFINE_integer("deletion_steps", 16, "Deletion/insertion points.")
_REPEATS = flags.DEFINE_integer(
    "repeats", 0, "Timed calls after the first (0: the first call less its compilation)."
)
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 5, "Classifier outputs.")


# JAX's monitoring events of a compilation (their durations sum to the compile time).
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_seconds = [0.0]


def _on_event(name: str, seconds: float, **_) -> None:
    if name in _COMPILE_EVENTS:
        _compile_seconds[0] += seconds


def measure(model, variables, settings, images, repeats: int) -> dict:
    """Times one configuration: its first call (less its compilation) or ``repeats`` more
    calls; returns the record."""
    import time

    import numpy as np

    from cervix_jax.explain import batch

    explainer = batch.make_explainer(
        model, variables, settings, image_size=images.shape[1], per_device_batch=len(images)
    )
    rows = {
        "image": images,
        "label": np.zeros(len(images), np.int32),
        "index": np.arange(len(images)),
        "mask": np.ones(len(images), bool),
    }
    _compile_seconds[0] = 0.0
    start = time.perf_counter()
    explainer.explain_batch(rows, 0)  # to numpy on the host: blocks until done
    first_call_s = time.perf_counter() - start
    compile_s = _compile_seconds[0]
    times = _common.time_repeats(lambda: explainer.explain_batch(rows, 1), repeats)
    times = times or [first_call_s - compile_s]
    median = float(np.median(times))
    return {
        "bench": "evaluation",
        "evaluate": ",".join(settings.evaluate) or "base",
        "method": settings.method,
        "steps": settings.steps,
        "baseline": settings.baseline,
        "randomization_stages": max(0, len(explainer.randomization_stages) - 1) or None,
        "perturbation_samples": settings.perturbation_samples,
        "s_per_image": round(median / len(images), 3),
        **_common.summarize(times, len(images)),
        "peak_rss_mb": _common.peak_rss_mb(),
        "first_call_s": round(first_call_s, 2),
        "compile_s": round(compile_s, 2),
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    runtime.setup()  # before anything starts a JAX backend
    import jax
    import numpy as np

    jax.monitoring.register_event_duration_secs_listener(_on_event)

    from cervix_jax import models
    from cervix_jax.explain import batch

    configs = list(_EVALUATIONS.value)
    unknown = [c for c in configs if c not in ("base", "all", *batch.EVALUATIONS)]
    if unknown:
        raise app.UsageError(
            f"--evaluations: unknown {unknown}; use base, all or {batch.EVALUATIONS}."
        )
    size = _IMAGE_SIZE.value
    model = models.create_model(_MODEL.value, _NUM_CLASSES.value)
    variables = models.init_variables(model, jax.random.key(0), size)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (_NUM_IMAGES.value, size, size, 3), dtype=np.uint8)
    base_s = None
    for config in configs:
        settings = batch.Settings(
            method=_METHOD.value,
            steps=_STEPS.value,
            baseline=_BASELINE.value,
            deletion_steps=_DELETION_STEPS.value,
            evaluate=() if config == "base" else config,
            randomization_stages=_STAGES.value or None,
            perturbation_samples=_PERTURBATIONS.value,
        )
        record = measure(model, variables, settings, images, _REPEATS.value)
        if config == "base":
            base_s = record["s_per_image"]
        over = None if base_s is None else round(record["s_per_image"] - base_s, 3)
        _common.emit(
            {
                "model": _MODEL.value,
                "image_size": size,
                "batch_size": _NUM_IMAGES.value,
                "dtype": "float32",
                **record,
                "over_base_s_per_image": over,
                **_common.environment(),
            }
        )


if __name__ == "__main__":
    app.run(main)
