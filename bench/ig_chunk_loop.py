"""How the IG chunk loop is compiled: ``jax.lax.map`` (an XLA while loop) vs chunks unrolled.

    python bench/ig_chunk_loop.py --mode=map
    python bench/ig_chunk_loop.py --mode=unrolled

Same integrand as ``bench/attribution.py`` (ResNet-50, random weights, softmax probability of
class 0, black baseline, Gauss-Legendre points, chunks of ``--chunk_size``), written out here
so the loop over chunks can be swapped; run the modes alternately, one process each. Prints one
JSON line (fields of ``bench/_common.py`` plus ``mode`` and ``attribution_sum``).
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

_MODE = flags.DEFINE_enum("mode", "map", ["map", "unrolled"], "Loop over the chunks.")
_MODEL = flags.DEFINE_string("model", "resnet50", "cervix_jax.models name.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side in pixels.")
_STEPS = flags.DEFINE_integer("steps", 50, "Integration points.")
_CHUNK = flags.DEFINE_integer("chunk_size", 10, "Points per chunk.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls.")


def main(argv: list[str]) -> None:
    del argv
    import importlib

    # isort: off
    import cervix_jax  # noqa: F401  (sets XLA flags before jax initialises)
    import jax
    import jax.numpy as jnp
    # isort: on

    from cervix_jax import explain, models

    ig_module = importlib.import_module("cervix_jax.explain.integrated_gradients")
    size, mode = _IMAGE_SIZE.value, _MODE.value
    model = models.create_model(_MODEL.value, 5)
    variables = models.init_variables(model, jax.random.key(0), size)

    def logits_fn(image, variables):
        return model.apply(variables, explain.to_normalised_space(image)[None], train=False)[0]

    score = explain.class_score_fn(logits_fn, "probability")
    x = jax.random.uniform(jax.random.key(1), (size, size, 3), jnp.float32, 0.0, 255.0)
    baseline = jnp.zeros_like(x)
    alphas, weights = ig_module._chunked_schedule("gausslegendre", _STEPS.value, _CHUNK.value)

    @jax.jit
    def ig(x, baseline, target, variables):
        diff = x - baseline
        grad = jax.grad(lambda z: score(z, target, variables))

        def chunk(a, w):
            points = baseline[None] + a[:, None, None, None] * diff[None]
            return jnp.tensordot(w, jax.vmap(grad)(points), axes=1)

        a_all, w_all = jnp.asarray(alphas, x.dtype), jnp.asarray(weights, x.dtype)
        if mode == "map":
            total = jax.lax.map(lambda c: chunk(*c), (a_all, w_all)).sum(axis=0)
        else:
            total = sum(chunk(a_all[i], w_all[i]) for i in range(a_all.shape[0]))
        return diff * total

    args = (x, baseline, jnp.int32(0), variables)
    start = time.perf_counter()
    compiled = ig.lower(*args).compile()
    compile_s = time.perf_counter() - start
    out = jax.block_until_ready(compiled(*args))
    times = _common.time_repeats(lambda: jax.block_until_ready(compiled(*args)), _REPEATS.value)
    _common.emit(
        {
            "bench": "ig_chunk_loop",
            "mode": mode,
            "model": _MODEL.value,
            "image_size": size,
            "batch_size": 1,
            "dtype": "float32",
            "steps": _STEPS.value,
            "chunk_size": _CHUNK.value,
            **_common.summarise(times, 1),
            "attribution_sum": float(out.sum()),
            "peak_rss_mb": _common.peak_rss_mb(),
            "compile_s": round(compile_s, 2),
            **_common.environment(),
        }
    )


if __name__ == "__main__":
    app.run(main)
