"""Integrated-gradients throughput and peak memory, one JSON line per chunk size.

    python bench/attribution.py --model=resnet50 --image_size=224 --steps=50 \
        --method=gausslegendre --chunk_sizes=10,25,50
    python bench/attribution.py --model=resnet50 --image_size=128 --ynn=on,off,on,off
    python bench/attribution.py --chunk_sizes=10 --chunk_loops=scan,unrolled,scan,unrolled

Each (XLA flag setting, chunk loop, chunk size) runs in its own process, so peak resident
memory is that setting's alone; settings are run in the order given, so ``on,off,on,off``
alternates them. ``--chunk_loops`` picks how the chunks are looped over
(``cervix_jax.explain.integrated_gradients``: ``auto``, ``scan`` or ``unrolled``).
``--ynn=off`` sets ``CERVIX_JAX_DEFAULT_XLA_FLAGS=0`` (``cervix_jax.runtime.setup()`` then does
not add the default YNN fusion flag) and drops a YNN flag from ``XLA_FLAGS``. Per
line, besides the fields of ``bench/_common.py`` (``batch_size`` is 1: one image per call,
``images_per_s`` is images per second): ``steps``, ``method``, ``chunk_size``, ``chunk_loop``,
``ynn``, ``completeness_error`` (relative: ``|sum(attributions) - (f(x) - f(b))| / |f(x) -
f(b)|``, of the last call) and ``first_call_s``. Weights are random (speed and memory do not
depend on them). ``f`` is the softmax probability of class 0 of one pixel-space image,
normalised inside ``f`` (as in ``cervix_jax.explain``); the baseline is black.
"""

from __future__ import annotations

import os
import sys

try:  # a Python without the project's packages says what to do instead of a traceback
    from absl import app, flags

    from cervix_jax import runtime
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

import _common  # bench/_common.py (a script's own folder is on sys.path)

_MODEL = flags.DEFINE_string("model", "resnet50", "Name for cervix_jax.models.create_model.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side in pixels.")
_STEPS = flags.DEFINE_integer("steps", 50, "Integration steps.")
_METHOD = flags.DEFINE_string("method", "gausslegendre", "Quadrature rule.")
_CHUNK_SIZES = flags.DEFINE_list("chunk_sizes", ["10", "50"], "Chunk sizes to compare.")
_CHUNK_LOOPS = flags.DEFINE_list(
    "chunk_loops", ["auto"], "IG chunk loops to run, in order (auto/scan/unrolled)."
)
_YNN = flags.DEFINE_list("ynn", ["on"], "YNN XLA flag settings to run, in order (on/off).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per chunk size.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 5, "Classifier outputs.")
_WORKER = flags.DEFINE_integer("worker_chunk_size", 0, "Internal: run one chunk size here.")


def measure(
    name: str,
    image_size: int,
    steps: int,
    method: str,
    chunk_size: int,
    repeats: int,
    chunk_loop: str = "auto",
) -> dict:
    """Times compiled single-image IG for one chunk size; returns the JSON record."""
    import time

    import jax
    import jax.numpy as jnp

    from cervix_jax import explain, models

    model = models.create_model(name, _NUM_CLASSES.value)
    variables = models.init_variables(model, jax.random.key(0), image_size)

    def logits_fn(image, variables):
        return model.apply(variables, explain.to_normalized_space(image)[None], train=False)[0]

    f = explain.class_score_fn(logits_fn, "probability")
    x = jax.random.uniform(jax.random.key(1), (image_size, image_size, 3), jnp.float32, 0.0, 255.0)
    baseline = jnp.zeros_like(x)
    f_args = (jnp.int32(0), variables)

    start = time.perf_counter()
    compiled = explain.lower_integrated_gradients(
        f,
        x,
        baseline,
        f_args=f_args,
        steps=steps,
        method=method,
        chunk_size=chunk_size,
        chunk_loop=chunk_loop,
    ).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(compiled(x, baseline, f_args))  # first-call allocations
    first_call_s = time.perf_counter() - start
    out = {}

    def call():
        out["result"] = jax.block_until_ready(compiled(x, baseline, f_args))

    times = _common.time_repeats(call, repeats)
    _, error, delta = out["result"]
    return {
        "bench": "integrated_gradients",
        "model": name,
        "image_size": image_size,
        "batch_size": 1,
        "dtype": "float32",
        "steps": steps,
        "method": method,
        "chunk_size": chunk_size,
        "chunk_loop": chunk_loop,
        "ynn": "ynn_fusion_type" in os.environ.get("XLA_FLAGS", ""),
        **_common.summarize(times, 1),
        "completeness_error": abs(float(error)) / max(abs(float(delta)), 1e-12),
        "peak_rss_mb": _common.peak_rss_mb(),
        "compile_s": round(compile_s, 2),
        "first_call_s": round(first_call_s, 2),
        **_common.environment(),
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    runtime.setup()  # before anything starts a JAX backend
    if _WORKER.value:
        _common.emit(
            measure(
                _MODEL.value,
                _IMAGE_SIZE.value,
                _STEPS.value,
                _METHOD.value,
                _WORKER.value,
                _REPEATS.value,
                _CHUNK_LOOPS.value[0],
            )
        )
        return
    for setting in _YNN.value:
        if setting not in ("on", "off"):
            raise app.UsageError(f"--ynn={setting!r}: use on and/or off.")
    base = [
        f"--model={_MODEL.value}",
        f"--image_size={_IMAGE_SIZE.value}",
        f"--steps={_STEPS.value}",
        f"--method={_METHOD.value}",
        f"--repeats={_REPEATS.value}",
        f"--num_classes={_NUM_CLASSES.value}",
    ]
    for setting in _YNN.value:
        env = None
        if setting == "off":  # neither the library's default nor a user's YNN flag
            kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if "ynn_fusion" not in f]
            env = {"CERVIX_JAX_DEFAULT_XLA_FLAGS": "0", "XLA_FLAGS": " ".join(kept)}
        for loop in _CHUNK_LOOPS.value:
            for chunk in _CHUNK_SIZES.value:
                args = [*base, f"--chunk_loops={loop}", f"--worker_chunk_size={chunk}"]
                _common.emit(_common.run_isolated(__file__, args, env))


if __name__ == "__main__":
    app.run(main)
