"""Writes a synthetic SIPaKMeD (same on-disk format as the real archives).

    python tools/make_synthetic_sipakmed.py --out=/tmp/sipakmed_raw --images_per_class=40 --seed=0

The output folder can be given to the TFDS builder as its manual directory
(``--config.data.manual_dir=/tmp/sipakmed_raw``).
"""

from __future__ import annotations

import json
import os
import sys

try:  # a Python without the project's packages says what to do instead of a traceback
    from absl import app, flags

    from cervix_jax import runtime
    from cervix_jax.data import DataError, write_synthetic_sipakmed
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

_OUT = flags.DEFINE_string("out", None, "Output folder (the builder's manual_dir).", required=True)
_IMAGES_PER_CLASS = flags.DEFINE_integer("images_per_class", 40, "Full images per class.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed; same seed, same bytes.")
_WIDTH = flags.DEFINE_integer("width", 512, "Full image width in pixels.")
_HEIGHT = flags.DEFINE_integer("height", 384, "Full image height in pixels.")
_LAYOUT = flags.DEFINE_enum("layout", "nested", ["nested", "flat"], "im_X/im_X/ or im_X/.")
_ARCHIVE = flags.DEFINE_enum(
    "archive", None, ["7z", "zip"], "Write im_X.7z (as on the SIPaKMeD page) or im_X.zip files."
)


MIN_SIDE = 16  # pixels: the smallest full image the generator is tested with


def _check_flags() -> None:
    """Refuses sizes that would write no images or images too small to hold a cell."""
    if _IMAGES_PER_CLASS.value < 1:
        raise DataError(f"--images_per_class={_IMAGES_PER_CLASS.value}: expected >= 1.")
    for flag in (_WIDTH, _HEIGHT):
        if flag.value < MIN_SIDE:
            raise DataError(f"--{flag.name}={flag.value}: expected >= {MIN_SIDE} pixels.")


def main(argv):
    del argv
    runtime.setup()  # first, as every entry point (this one never starts a JAX backend)
    try:
        _check_flags()
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        counts = write_synthetic_sipakmed(
            _OUT.value,
            _IMAGES_PER_CLASS.value,
            _SEED.value,
            image_size=(_WIDTH.value, _HEIGHT.value),
            layout=_LAYOUT.value,
            archive=_ARCHIVE.value,
        )
    except DataError as e:
        print(f"error: --out: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"out": os.path.abspath(_OUT.value), "counts": counts}))


if __name__ == "__main__":
    app.run(main)
