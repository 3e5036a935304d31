"""Inference (forward) and train-step throughput of the models, one JSON line per measurement.

    python bench/models.py                                  # all five models, 224x224, batch 16
    python bench/models.py --model=resnet50 --measure=forward --batch_size=32
    python bench/models.py --model=densenet121_rca --image_size=128 --dtype=bfloat16

Each (model, measurement) pair runs in its own process, so ``peak_rss_mb`` is that
measurement's alone. ``forward``: ``apply(train=False)`` under ``jax.jit`` on a float32
normalised batch (inference). ``train``: the project's train step, exactly as
``bench/train_step.py`` measures it. Fields: those of ``bench/_common.py`` plus ``measure``,
``first_call_s`` (first execution after compilation), ``init_s`` and ``num_params`` (forward).
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

_TRAIN_STEP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_step.py")

_MODELS = flags.DEFINE_list(
    "model",
    ["resnet50", "densenet121", "densenet121_rca", "attention56", "attention92"],
    "Models (cervix_jax.models names), comma-separated.",
)
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side in pixels.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Images per call.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per measurement.")
_REMAT = flags.DEFINE_bool("remat", False, "Recompute block activations in the backward pass.")
_KINDS = flags.DEFINE_list("measure", ["forward", "train"], "forward and/or train.")
_WORKER = flags.DEFINE_string("worker", "", "Internal: model whose forward pass to time here.")


def measure_forward(name: str, image_size: int, batch_size: int, dtype: str, repeats: int) -> dict:
    """Times the jitted eval-mode forward pass of one model; returns the JSON record."""
    import time

    import jax

    from cervix_jax import models

    model = models.create_model(name, 5, dtype=dtype)
    start = time.perf_counter()
    variables = jax.block_until_ready(models.init_variables(model, jax.random.key(0), image_size))
    init_s = time.perf_counter() - start
    images = jax.random.normal(jax.random.key(1), (batch_size, image_size, image_size, 3))
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
    start = time.perf_counter()
    compiled = forward.lower(variables, images).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(compiled(variables, images))
    first_call_s = time.perf_counter() - start
    times = _common.time_repeats(
        lambda: jax.block_until_ready(compiled(variables, images)), repeats
    )
    return {
        "bench": "forward",
        "model": name,
        "image_size": image_size,
        "batch_size": batch_size,
        "dtype": dtype,
        **_common.summarize(times, batch_size),
        "peak_rss_mb": _common.peak_rss_mb(),
        "compile_s": round(compile_s, 2),
        "first_call_s": round(first_call_s, 2),
        "init_s": round(init_s, 2),
        "num_params": models.count_params(variables["params"]),
        **_common.environment(),
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    runtime.setup()  # before anything starts a JAX backend
    size, batch, dtype = _IMAGE_SIZE.value, _BATCH_SIZE.value, _DTYPE.value
    if _WORKER.value:
        name = _WORKER.value
        _common.emit(
            {"measure": "forward", **measure_forward(name, size, batch, dtype, _REPEATS.value)}
        )
        return
    for kind in _KINDS.value:
        if kind not in ("forward", "train"):
            raise app.UsageError(f"--measure={kind!r}: use forward and/or train.")
    for name in _MODELS.value:
        for kind in _KINDS.value:
            common = [f"--image_size={size}", f"--batch_size={batch}", f"--dtype={dtype}"]
            common.append(f"--repeats={_REPEATS.value}")
            if kind == "forward":
                record = _common.run_isolated(__file__, [f"--worker={name}", *common])
            else:  # the same step and record as bench/train_step.py
                args = [f"--model={name}", "--worker", "--steps=1", f"--remat={_REMAT.value}"]
                record = _common.run_isolated(_TRAIN_STEP, [*args, *common])
            _common.emit({"model": name, "measure": kind, **record})


if __name__ == "__main__":
    app.run(main)
