"""Integrated-gradients throughput and peak memory, one JSON line per chunk size.

    python bench/attribution.py --model=resnet50 --image_size=224 --steps=50 \
        --method=gausslegendre --chunk_sizes=10,50

Each chunk size runs in its own subprocess so that peak resident memory (``ru_maxrss``) is that
chunk size's alone. Per line: ``images_per_s`` (median over ``--repeats`` timed calls after
compilation), ``images_per_s_min``/``_max`` and ``spread`` ((max - min) / median of the call
times), ``completeness_error`` (relative, of the last call), ``peak_rss_mb`` and
``compile_s`` (ahead-of-time lowering + compilation of the IG program). Weights are random
(``init_variables``): speed and memory do not depend on them. ``f`` is the softmax probability
of class 0 of one pixel-space image, normalised inside ``f`` (as in ``cervix_jax.explain``).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app, flags

_MODEL = flags.DEFINE_string("model", "resnet50", "Name for cervix_jax.models.create_model.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side in pixels.")
_STEPS = flags.DEFINE_integer("steps", 50, "Integration steps.")
_METHOD = flags.DEFINE_string("method", "gausslegendre", "Quadrature rule.")
_CHUNK_SIZES = flags.DEFINE_list("chunk_sizes", ["10", "50"], "Chunk sizes to compare.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per chunk size.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 5, "Classifier outputs.")
_WORKER = flags.DEFINE_integer("worker_chunk_size", 0, "Internal: run one chunk size here.")


def _run_one(chunk_size: int) -> dict:
    # isort: off
    import cervix_jax  # noqa: F401  (sets XLA flags before jax initialises)
    import jax
    import jax.numpy as jnp
    # isort: on

    from cervix_jax import explain, models

    size = _IMAGE_SIZE.value
    model = models.create_model(_MODEL.value, _NUM_CLASSES.value)
    variables = models.init_variables(model, jax.random.key(0), size)

    def logits_fn(image, variables):
        x = explain.to_normalised_space(image)
        return model.apply(variables, x[None], train=False)[0]

    f = explain.class_score_fn(logits_fn, "probability")
    x = jax.random.uniform(jax.random.key(1), (size, size, 3), jnp.float32, 0.0, 255.0)
    baseline = jnp.zeros_like(x)
    f_args = (jnp.int32(0), variables)
    statics = dict(steps=_STEPS.value, method=_METHOD.value, chunk_size=chunk_size)

    start = time.perf_counter()
    compiled = explain.compile_integrated_gradients(f, x, baseline, f_args=f_args, **statics)
    compile_s = time.perf_counter() - start

    jax.block_until_ready(compiled(x, baseline, f_args))  # warm-up: first-call allocations
    times = []
    for _ in range(_REPEATS.value):
        start = time.perf_counter()
        attributions, error, delta = jax.block_until_ready(compiled(x, baseline, f_args))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "model": _MODEL.value,
        "image_size": size,
        "steps": _STEPS.value,
        "method": _METHOD.value,
        "chunk_size": chunk_size,
        "images_per_s": 1.0 / median,
        "images_per_s_min": 1.0 / max(times),
        "images_per_s_max": 1.0 / min(times),
        "spread": (max(times) - min(times)) / median,
        "repeats": len(times),
        "completeness_error": abs(float(error)) / max(abs(float(delta)), 1e-12),
        "peak_rss_mb": peak_kb / 1024.0,
        "compile_s": compile_s,
        "device": str(jax.devices()[0].device_kind),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def main(argv):
    del argv
    if _WORKER.value:
        print(json.dumps(_run_one(_WORKER.value)), flush=True)
        return
    for chunk in _CHUNK_SIZES.value:
        args = [a for a in sys.argv[1:] if not a.startswith("--worker_chunk_size")]
        command = [sys.executable, os.path.abspath(__file__), *args, f"--worker_chunk_size={chunk}"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            sys.stderr.write(done.stderr[-4000:])
            raise SystemExit(
                f"bench/attribution.py: chunk size {chunk} failed ({done.returncode})."
            )
        print(lines[-1], flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    app.run(main)
