"""Train-step throughput of one model: images/second of the jitted, sharded train step.

    python bench/train_step.py --model=densenet121_rca --image_size=224 --batch_size=16

Prints one JSON line per measurement: model, image_size, batch_size, dtype, devices,
compile_s, images_per_s (median over repeats) with its min/max, steps per repeat, peak RSS of
the process (one process per model).
Standalone: random uint8 images, the real step (augment + normalise on device, Adam, BatchNorm).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[1]))

# isort: off
import cervix_jax  # noqa: E402,F401  (first: sets XLA flags before jax initialises)

# isort: on
import jax  # noqa: E402
import numpy as np  # noqa: E402


def measure(
    model_name: str, image_size: int, batch_size: int, dtype: str, steps: int, repeats: int
) -> dict:
    from cervix_jax import data, models
    from cervix_jax.train import mesh as mesh_lib
    from cervix_jax.train.optim import make_optimizer
    from cervix_jax.train.state import create_state
    from cervix_jax.train.step import make_train_step
    from configs import default

    config = default.get_config()
    mesh = mesh_lib.make_mesh()
    model = models.create_model(model_name, 5, dtype=dtype)
    tx = make_optimizer(config.optim, steps_per_epoch=100, num_epochs=1)
    variables = models.init_variables(model, jax.random.PRNGKey(0), image_size)
    state = jax.device_put(
        create_state(variables, tx, jax.random.PRNGKey(1)), mesh_lib.replicated(mesh)
    )
    step = make_train_step(
        model,
        tx,
        mesh,
        augment_fn=lambda k, x: data.augment(k, x, config.data.augment),
        normalize_fn=data.normalize,
    )
    rng = np.random.default_rng(0)
    batch = mesh_lib.global_batch(
        {
            "image": rng.integers(0, 256, (batch_size, image_size, image_size, 3), np.uint8),
            "label": rng.integers(0, 5, (batch_size,), np.int32),
        },
        mesh,
    )
    t0 = time.perf_counter()
    state, m = step(state, batch)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            state, m = step(state, batch)
        jax.block_until_ready((state, m))
        rates.append(steps * batch_size / (time.perf_counter() - t0))
    return {
        "model": model_name,
        "image_size": image_size,
        "batch_size": batch_size,
        "dtype": dtype,
        "devices": jax.device_count(),
        "platform": jax.devices()[0].platform,
        "compile_s": round(compile_s, 2),
        "images_per_s": round(statistics.median(rates), 2),
        "images_per_s_min": round(min(rates), 2),
        "images_per_s_max": round(max(rates), 2),
        "steps_per_repeat": steps,
        "repeats": repeats,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default="resnet50",
        help="comma-separated model names (cervix_jax.models.MODEL_NAMES)",
    )
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=5, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.model.split(",") if n.strip()]
    if len(names) > 1:
        # One process per model: peak RSS and compile caches are then the model's own.
        rest = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("--model")]
        for name in names:
            subprocess.run([sys.executable, __file__, f"--model={name}", *rest], check=True)
        return
    result = measure(
        names[0], args.image_size, args.batch_size, args.dtype, args.steps, args.repeats
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
