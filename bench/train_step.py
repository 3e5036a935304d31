"""Train-step throughput: images/second of the project's jitted train step, one line per model.

    python bench/train_step.py --model=resnet50 --image_size=224 --batch_size=16
    python bench/train_step.py --model=resnet50,densenet121,densenet121_rca --repeats=3

The step is ``cervix_jax.train.make_train_step`` as training uses it: uint8 images
augmented (random rotation/flips) and normalised inside the step, the configured optimiser
(``configs/default.py``), dropout, BatchNorm statistics, state donated. Random uint8 images and
random weights (speed does not depend on them). Each model runs in its own process. A line
holds the fields of ``bench/_common.py`` plus ``steps_per_repeat`` (steps per timed repeat),
``first_call_s`` (the first execution after compilation) and ``remat``.
"""

from __future__ import annotations

import sys

try:  # a Python without the project's packages says what to do instead of a traceback
    from absl import app, flags

    from cervix_jax import runtime
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

import _common  # bench/_common.py (a script's own folder is on sys.path)

_MODEL = flags.DEFINE_list("model", ["resnet50"], "cervix_jax.models names, comma-separated.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side in pixels.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Global batch size.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_REMAT = flags.DEFINE_bool("remat", False, "Recompute block activations in the backward pass.")
_AUGMENT = flags.DEFINE_bool("augment", True, "Random rotation/flips inside the step.")
_STEPS = flags.DEFINE_integer("steps", 2, "Steps per timed repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats.")
_WORKER = flags.DEFINE_bool("worker", False, "Internal: measure --model here.")


def measure(
    name: str,
    image_size: int,
    batch_size: int,
    *,
    dtype: str = "float32",
    remat: bool = False,
    augment: bool = True,
    steps: int = 2,
    repeats: int = 3,
) -> dict:
    """Times the project's train step for one model; returns the JSON record."""
    import time

    import jax
    import numpy as np

    from cervix_jax import data, models
    from cervix_jax.train import create_state, make_optimizer, make_schedule, make_train_step
    from cervix_jax.train import mesh as mesh_lib
    from configs import default

    config = default.get_config()
    mesh = mesh_lib.make_mesh()
    options = {"remat": True} if remat else {}  # not every model has the field
    model = models.create_model(name, 5, dtype=dtype, **options)
    tx = make_optimizer(config.optim, make_schedule(config.optim, 100, 1))
    variables = models.init_variables(model, jax.random.key(0), image_size)
    state = jax.device_put(
        create_state(variables, tx, jax.random.key_data(jax.random.key(1))),
        mesh_lib.replicated(mesh),
    )
    augment_fn = (lambda k, x: data.augment(k, x, config.data.augment)) if augment else None
    step = make_train_step(model, tx, mesh, augment_fn=augment_fn, normalize_fn=data.normalize)
    rng = np.random.default_rng(0)
    batch = mesh_lib.global_batch(
        {
            "image": rng.integers(0, 256, (batch_size, image_size, image_size, 3), np.uint8),
            "label": rng.integers(0, 5, (batch_size,), np.int32),
        },
        mesh,
    )
    holder = {"state": state}

    def call():
        for _ in range(steps):
            holder["state"], metrics = step(holder["state"], batch)
        jax.block_until_ready((holder["state"], metrics))

    start = time.perf_counter()
    compiled = step.lower(holder["state"], batch).compile()
    compile_s = time.perf_counter() - start
    step = compiled
    start = time.perf_counter()
    holder["state"], metrics = step(holder["state"], batch)
    jax.block_until_ready(metrics)
    first_call_s = time.perf_counter() - start
    times = _common.time_repeats(call, repeats)
    return {
        "bench": "train_step",
        "model": name,
        "image_size": image_size,
        "batch_size": batch_size,
        "dtype": dtype,
        "remat": remat,
        "augment": augment,
        **_common.summarize(times, steps * batch_size),
        "steps_per_repeat": steps,
        "peak_rss_mb": _common.peak_rss_mb(),
        "compile_s": round(compile_s, 2),
        "first_call_s": round(first_call_s, 2),
        **_common.environment(),
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    runtime.setup()  # before anything starts a JAX backend
    settings = dict(
        image_size=_IMAGE_SIZE.value,
        batch_size=_BATCH_SIZE.value,
        dtype=_DTYPE.value,
        remat=_REMAT.value,
        augment=_AUGMENT.value,
        steps=_STEPS.value,
        repeats=_REPEATS.value,
    )
    if _WORKER.value:
        _common.emit(measure(_MODEL.value[0], **settings))
        return
    for name in _MODEL.value:
        args = [f"--model={name}", "--worker"] + [f"--{k}={v}" for k, v in settings.items()]
        _common.emit(_common.run_isolated(__file__, args))


if __name__ == "__main__":
    app.run(main)
