"""Training input-pipeline throughput (host side: read, PNG decode, resize, centre crop, batch).

    python bench/input_pipeline.py --image_size=224 --batch_size=16 --num_workers=2

Standalone: writes a synthetic SIPaKMeD (512x384 full images, like the stored real ones) and
prepares ``sipakmed/<variant>`` in a temporary folder (or uses ``--data_dir`` if it already holds
it), then times the training iterator. Prints one JSON line with the fields of
``bench/_common.py`` (``images_per_s``: median over ``--repeats`` windows of ``--batches``
batches, after one warm-up window that also starts the workers; ``dtype`` uint8, ``model``
null), ``peak_rss_children_mb`` (the largest grain worker) and the setting. Augmentation and
normalisation run on device inside the train step; their cost for one batch (jitted, this
machine's default device) is ``device_augment_ms_per_batch`` and its compilation ``compile_s``.
"""

from __future__ import annotations

import functools
import os
import resource
import statistics
import sys
import tempfile
import time
import warnings

try:  # a Python without the project's packages says what to do instead of a traceback
    from absl import app, flags

    from cervix_jax import runtime
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

import _common  # bench/_common.py (a script's own folder is on sys.path)

_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Output side S.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Global batch size.")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 2, "grain worker processes (0 = inline).")
_VARIANT = flags.DEFINE_enum("variant", "full", ["full", "cropped", "masked"], "Dataset.")
_WITH_MASKS = flags.DEFINE_bool("with_masks", False, "Also decode cell/nucleus masks.")
_IMAGES_PER_CLASS = flags.DEFINE_integer("images_per_class", 20, "Synthetic images per class.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed windows.")
_BATCHES = flags.DEFINE_integer("batches", 10, "Batches per timed window.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Prepared TFDS data dir ('' = temporary).")


_AUGMENT_CONFIG = {"rotation_degrees": 25.0, "horizontal_flip": True, "vertical_flip": True}


def window(iterator) -> None:
    """Reads one window of ``--batches`` batches."""
    for _ in range(_BATCHES.value):
        batch = next(iterator)
        assert batch["image"].shape[1] == _IMAGE_SIZE.value


def _device_augment(images) -> tuple[float, float]:
    """(compile seconds, median ms per batch) of the jitted on-device augment + normalize (for
    comparison: this is the work the design moved from the host into the train step)."""
    import jax

    from cervix_jax import data

    fn = jax.jit(lambda key, x: data.normalize(data.augment(key, x, _AUGMENT_CONFIG)))
    x = jax.device_put(images)
    key = jax.random.key(0)
    start = time.perf_counter()
    fn = fn.lower(key, x).compile()
    compile_s = time.perf_counter() - start
    fn(key, x).block_until_ready()
    times = _common.time_repeats(lambda: fn(key, x).block_until_ready(), _REPEATS.value)
    return compile_s, 1000.0 * statistics.median(times)


def main(argv):
    del argv
    runtime.setup()  # before anything starts a JAX backend
    import numpy as np

    from cervix_jax import data

    with tempfile.TemporaryDirectory() as tmp:
        config = {
            "variant": _VARIANT.value,
            "tfds_data_dir": _DATA_DIR.value or tmp,
            "synthetic": not _DATA_DIR.value,
            "synthetic_images_per_class": _IMAGES_PER_CLASS.value,
            "synthetic_seed": 0,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # synthetic counts != official counts
            source, metadata = data.load_sipakmed(config)
        iterator = data.train_iterator(
            source,
            np.arange(len(metadata)),
            image_size=_IMAGE_SIZE.value,
            global_batch_size=_BATCH_SIZE.value,
            seed=0,
            num_workers=_NUM_WORKERS.value,
            with_masks=_WITH_MASKS.value,
        )

        window(iterator)  # warm-up: worker start, first reads
        times = _common.time_repeats(functools.partial(window, iterator), _REPEATS.value)
        batch = next(iterator)
        del iterator  # stop the workers before the temporary data goes away
        compile_s, augment_ms = _device_augment(batch["image"])
        _common.emit(
            {
                "bench": "input_pipeline",
                "model": None,
                "variant": _VARIANT.value,
                "image_size": _IMAGE_SIZE.value,
                "batch_size": _BATCH_SIZE.value,
                "dtype": "uint8",
                "num_workers": _NUM_WORKERS.value,
                "with_masks": _WITH_MASKS.value,
                **_common.summarize(times, _BATCHES.value * _BATCH_SIZE.value),
                "peak_rss_mb": _common.peak_rss_mb(),
                "peak_rss_children_mb": _common.peak_rss_mb(resource.RUSAGE_CHILDREN),
                "compile_s": round(compile_s, 2),
                "device_augment_ms_per_batch": round(augment_ms, 2),
                "cpu_count": os.cpu_count(),
                **_common.environment(),
            }
        )


if __name__ == "__main__":
    app.run(main)
