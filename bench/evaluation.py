"""Time per image of the attribution tool's evaluation suite, and where the time goes.

    python bench/evaluation.py --model=resnet50 --image_size=224 --steps=50 --num_images=1
    python bench/evaluation.py --evaluations=base,all --randomization_stages=4

One JSON line per configuration of ``--evaluations``, each one global batch of
``--num_images`` random images through ``explain.batch.make_explainer(...).explain_batch``,
the tool's own step: ``base`` is what every run computes (the method's maps, the input
gradient, deletion/insertion, the cell occlusion), a name of ``explain.batch.EVALUATIONS``
is ``base`` plus that evaluation, ``all`` is ``base`` plus every one, and ``parts`` times
the pieces of ``base`` alone (one line each, ``part``: ``method``, ``input_gradient``,
``deletion_insertion``), which says where the time of ``base`` goes. Per line, besides the
fields of ``bench/_common.py`` (``batch_size`` = ``--num_images``): ``evaluate``, ``method``,
``steps``, ``chunk_size`` (IG points per chunk, resolved), ``baseline``,
``randomization_stages`` (the stages run), ``perturbation_samples``, ``s_per_image`` (median
of the timed calls), ``over_base_s_per_image`` (this configuration minus ``base`` when
``base`` ran first: the evaluation's own cost), ``first_call_s`` and ``compile_s`` (tracing,
lowering and XLA compilation within the first call, from JAX's monitoring events). With
``--repeats=0`` (the default: at 224 px one call of the whole suite takes minutes on 2 cores)
the one timed run is the first call less its compilation, which still holds the first run's
own costs (ResNet-50 at 224: 17.5 s for ``base`` against 12.0 s in steady state); with
``--repeats=N`` it is N more calls, the number to report. Weights are random (the time does
not depend on them); one device.
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
    ["base", "parts", "randomization", "random_logit", "faithfulness", "infidelity"]
    + ["max_sensitivity", "complexity", "all"],
    "Configurations to time, in order: base, parts, names of explain.batch.EVALUATIONS, all.",
)
_STAGES = flags.DEFINE_integer(
    "randomization_stages", 0, "Randomization stages (0 = one per layer)."
)
_PERTURBATIONS = flags.DEFINE_integer("perturbation_samples", 10, "Infidelity/sensitivity.")
_DELETION_STEPS = flags.DEFINE_integer("deletion_steps", 16, "Deletion/insertion points.")
_CHUNK = flags.DEFINE_integer(
    "chunk_size", 0, "IG points per chunk (0: automatic, explain.batch.resolve_chunk_size)."
)
flags.register_validator("chunk_size", lambda v: v >= 0, "expected 0 (automatic) or more")
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


def _timed(call, repeats: int) -> dict:
    """Times ``call`` (blocking): its first call, the compilation within it, and ``repeats``
    more calls (none: the first call less its compilation); returns the record's timing fields
    and the first call's output under ``'output'``."""
    import time

    _compile_seconds[0] = 0.0
    start = time.perf_counter()
    output = call()
    first_call_s = time.perf_counter() - start
    compile_s = _compile_seconds[0]
    times = _common.time_repeats(call, repeats) or [first_call_s - compile_s]
    return {
        "output": output,
        "times": times,
        "first_call_s": round(first_call_s, 2),
        "compile_s": round(compile_s, 2),
    }


def _record(settings, timing: dict, num_images: int, **fields) -> dict:
    import numpy as np

    return {
        "bench": "evaluation",
        **fields,
        "method": settings.method,
        "steps": settings.steps,
        "chunk_size": settings.chunk_size,
        "baseline": settings.baseline,
        "perturbation_samples": settings.perturbation_samples,
        "s_per_image": round(float(np.median(timing["times"])) / num_images, 3),
        **_common.summarize(timing["times"], num_images),
        "peak_rss_mb": _common.peak_rss_mb(),
        "first_call_s": timing["first_call_s"],
        "compile_s": timing["compile_s"],
    }


def measure(model, variables, settings, images, repeats: int) -> dict:
    """Times one configuration of the tool's step; returns the record."""
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
    # To numpy on the host: each call blocks until done.
    timing = _timed(lambda: explainer.explain_batch(rows, 0), repeats)
    stages = max(0, len(explainer.randomization_stages) - 1) or None
    return _record(
        explainer.settings,
        timing,
        len(images),
        evaluate=",".join(settings.evaluate) or "base",
        randomization_stages=stages,
    )


def measure_parts(model, variables, settings, images, repeats: int) -> list[dict]:
    """Times the pieces of ``base`` one by one, each jitted alone as the step compiles it
    (the memory-optimised scheduler): the method's maps, the panels' input gradient and the
    deletion/insertion curves of those maps; one record per part, ``part`` naming it."""
    import jax
    import jax.numpy as jnp

    from cervix_jax.explain import batch, loops, methods, saliency, scores, targets

    settings = batch.resolve_chunk_size(settings, len(images))
    method = methods.AttributionMethod(model, None, settings)
    pixels = jnp.asarray(images, jnp.float32)
    classes = jnp.zeros(len(images), jnp.int32)
    keys = methods.image_keys(jax.random.key(0), len(images))
    probability = targets.class_score_fn(methods.pixel_logits_fn(model, None), "probability")

    def jitted(part):
        call = jax.jit(part, compiler_options=loops.MEMORY_OPTIMIZED)
        return lambda: jax.block_until_ready(call(variables))

    records = []
    timing = _timed(jitted(lambda v: method(pixels, classes, v, keys)), repeats)
    maps = timing["output"]  # the deletion/insertion part ranks the pixels by these
    records.append(_record(settings, timing, len(images), evaluate="parts", part="method"))
    others = {
        "input_gradient": lambda v: saliency.input_gradients(
            method.score_fn, pixels, classes, (v,)
        ),
        "deletion_insertion": lambda v: scores.deletion_insertion(
            probability, pixels, maps, classes, steps=settings.deletion_steps, f_args=(v,)
        ),
    }
    for name, part in others.items():
        timing = _timed(jitted(part), repeats)
        records.append(_record(settings, timing, len(images), evaluate="parts", part=name))
    return records


def _settings(batch, config: str):
    """The ``explain.batch.Settings`` of one configuration (a ValueError names a bad flag)."""
    return batch.Settings(
        method=_METHOD.value,
        steps=_STEPS.value,
        baseline=_BASELINE.value,
        chunk_size=_CHUNK.value or None,
        deletion_steps=_DELETION_STEPS.value,
        evaluate=() if config in ("base", "parts") else config,
        randomization_stages=_STAGES.value or None,
        perturbation_samples=_PERTURBATIONS.value,
    )


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
    unknown = [c for c in configs if c not in ("base", "all", "parts", *batch.EVALUATIONS)]
    # One line each, before any work (app.UsageError would print the whole help first).
    if unknown:
        names = ", ".join(("base", "all", "parts", *batch.EVALUATIONS))
        sys.exit(f"--evaluations: unknown {', '.join(unknown)}; use {names}.")
    try:
        all_settings = [_settings(batch, config) for config in configs]
    except ValueError as e:
        sys.exit(f"bench/evaluation.py: {e}")
    size = _IMAGE_SIZE.value
    model = models.create_model(_MODEL.value, _NUM_CLASSES.value)
    variables = models.init_variables(model, jax.random.key(0), size)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (_NUM_IMAGES.value, size, size, 3), dtype=np.uint8)
    base_s = None
    for config, settings in zip(configs, all_settings, strict=True):
        if config == "parts":
            records = measure_parts(model, variables, settings, images, _REPEATS.value)
        else:
            records = [measure(model, variables, settings, images, _REPEATS.value)]
        if config == "base":
            base_s = records[0]["s_per_image"]
        for record in records:
            over = None if base_s is None else round(record["s_per_image"] - base_s, 3)
            _common.emit(
                {
                    "model": _MODEL.value,
                    "image_size": size,
                    "batch_size": _NUM_IMAGES.value,
                    "dtype": "float32",
                    **record,
                    "over_base_s_per_image": None if config == "parts" else over,
                    **_common.environment(),
                }
            )


if __name__ == "__main__":
    app.run(main)
