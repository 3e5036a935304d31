"""Forward and train-step throughput of the models, one JSON line per measurement.

    python bench/models.py                                   # all five models, 224x224, batch 16
    python bench/models.py --model=densenet121_rca --image_size=128 --batch_size=16 --dtype=bfloat16

Each (model, measurement) pair runs in its own subprocess, so ``peak_rss_mb`` (``ru_maxrss``)
belongs to that measurement alone. ``forward``: ``apply(train=False)`` under ``jax.jit``.
``train``: one Adam step (cross-entropy, dropout, BatchNorm statistics updated, parameters and
optimiser state donated). Per line: ``images_per_s`` (median over ``--repeats`` timed calls),
``images_per_s_min``/``_max``, ``spread`` ((max - min) / median of the call times),
``compile_s`` (lowering + compilation), ``first_call_s`` (the first execution, which on CPU can
hold one-off work of its own), ``init_s``, ``peak_rss_mb``, ``devices`` (the step runs on one
device), ``backend`` and ``xla_flags``. Weights are random: speed does not depend on them.
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_MODELS = flags.DEFINE_list(
    "model",
    ["resnet50", "densenet121", "densenet121_rca", "attention56", "attention92"],
    "Models (cervix_jax.models names), comma-separated.",
)
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side in pixels.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Images per call.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per measurement.")
_REMAT = flags.DEFINE_bool("remat", False, "Recompute block activations in the backward pass.")
_KINDS = flags.DEFINE_list("measure", ["forward", "train"], "forward and/or train.")
_WORKER = flags.DEFINE_string("worker", "", "Internal: 'model:kind' to run in this process.")


def _measure(name: str, kind: str) -> dict:
    # isort: off
    import cervix_jax  # noqa: F401  (sets XLA flags before jax initialises)
    import jax
    import jax.numpy as jnp
    import optax
    # isort: on

    from cervix_jax import models

    size, batch = _IMAGE_SIZE.value, _BATCH_SIZE.value
    model = models.create_model(name, 5, dtype=_DTYPE.value, remat=_REMAT.value)
    start = time.perf_counter()
    variables = jax.block_until_ready(models.init_variables(model, jax.random.key(0), size))
    init_s = time.perf_counter() - start
    images = jax.random.normal(jax.random.key(1), (batch, size, size, 3), jnp.float32)
    labels = jnp.arange(batch, dtype=jnp.int32) % 5

    if kind == "forward":
        fn = jax.jit(lambda v, x: model.apply(v, x, train=False))
        args = (variables, images)

        def call(args):
            jax.block_until_ready(compiled(*args))
            return args

    else:
        tx = optax.adam(1e-3)

        def step(params, batch_stats, opt_state, x, y, rng):
            def loss_fn(p):
                logits, new = model.apply(
                    {"params": p, "batch_stats": batch_stats},
                    x,
                    train=True,
                    rngs={"dropout": rng},
                    mutable=["batch_stats"],
                )
                loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
                return loss, new["batch_stats"]

            (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), batch_stats, opt_state, loss

        fn = jax.jit(step, donate_argnums=(0, 1, 2))
        params = variables["params"]
        args = (
            params,
            variables["batch_stats"],
            tx.init(params),
            images,
            labels,
            jax.random.key(2),
        )

        def call(args):
            params, batch_stats, opt_state, loss = compiled(*args)
            jax.block_until_ready(loss)
            return (params, batch_stats, opt_state, *args[3:])

    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    args = call(args)
    first_call_s = time.perf_counter() - start
    times = []
    for _ in range(_REPEATS.value):
        start = time.perf_counter()
        args = call(args)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "model": name,
        "measure": kind,
        "image_size": size,
        "batch_size": batch,
        "dtype": _DTYPE.value,
        "remat": _REMAT.value,
        "devices": 1,
        "backend": jax.default_backend(),
        "images_per_s": round(batch / median, 3),
        "images_per_s_min": round(batch / max(times), 3),
        "images_per_s_max": round(batch / min(times), 3),
        "spread": round((max(times) - min(times)) / median, 4),
        "repeats": len(times),
        "compile_s": round(compile_s, 2),
        "first_call_s": round(first_call_s, 2),
        "init_s": round(init_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "num_params": models.count_params(variables["params"]),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _WORKER.value:
        name, kind = _WORKER.value.split(":")
        print(json.dumps(_measure(name, kind)), flush=True)
        return
    for name in _MODELS.value:
        for kind in _KINDS.value:
            if kind not in ("forward", "train"):
                raise app.UsageError(f"--measure={kind!r}: use forward and/or train.")
            command = [
                sys.executable,
                os.path.abspath(__file__),
                f"--worker={name}:{kind}",
                f"--image_size={_IMAGE_SIZE.value}",
                f"--batch_size={_BATCH_SIZE.value}",
                f"--dtype={_DTYPE.value}",
                f"--repeats={_REPEATS.value}",
                f"--remat={_REMAT.value}",
            ]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                error = result.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
                print(json.dumps({"model": name, "measure": kind, "error": error[0]}), flush=True)
                continue
            print(result.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    app.run(main)
