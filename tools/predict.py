"""Classifies image files with a trained model.

    python tools/predict.py --workdir=workdirs/rca --images='slides/*.png' --out=predictions.csv

``--images`` is a folder (searched recursively), a glob pattern (quote it) or one file: PNG,
JPEG, TIFF or BMP; RGB, RGBA, grayscale or 16-bit; any size (``cervix_jax.data.model_input``
makes each what the model was trained on). ``--out`` gets one row per image: ``path``,
``image_id`` (the file stem, made unique), ``predicted`` (class name), ``probability`` (of the
predicted class) and ``p(<class>)`` for every class; ``--out=*.json`` writes the same rows as
JSON, with the workdir, checkpoint and class names. A progress line goes to stderr, the count
per predicted class to stdout. Every flag and every file is checked before the model is
loaded: a bad one stops the tool with one line, and nothing is written.
"""

from __future__ import annotations

import csv
import io
import sys

try:  # a Python without the project's packages says what to do instead of a traceback
    from absl import app, flags

    from cervix_jax import runtime
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (config.json + checkpoints/).")
_IMAGES = flags.DEFINE_string("images", None, "Image folder, glob pattern (quoted) or file.")
_OUT = flags.DEFINE_string("out", None, "Output file: .csv or .json.")
_WHICH = flags.DEFINE_string("which", "best", "Checkpoint: best | latest | a step.")
_BATCH = flags.DEFINE_integer(
    "batch_size", 0, "Images per batch over all devices (0 = the run's eval_batch_size)."
)
_FORCE = flags.DEFINE_bool("force", False, "Replace --out if it exists.")
flags.mark_flags_as_required(["workdir", "images", "out"])


def check_flags() -> list[str]:
    """The image files to classify; raises a one-line error for a bad flag or file."""
    from cervix_jax import analysis, data, files, train

    train.require_training_workdir(_WORKDIR.value)
    files.check_new_file(_OUT.value, suffixes=(".csv", ".json"), force=_FORCE.value)
    analysis.parse_which(_WHICH.value, _WORKDIR.value, name="--which")
    if _BATCH.value < 0:
        raise ValueError(f"--batch_size={_BATCH.value}: expected 0 (automatic) or more.")
    paths = data.find_images(_IMAGES.value)
    for path in paths:
        data.check_image_file(path)
    return paths


def table(paths: list[str], predictions) -> list[dict]:
    """One row per image: path, image_id, predicted, probability, p(<class>) ..."""
    from cervix_jax import data

    names = predictions.class_names
    return [
        {
            "path": path,
            "image_id": image_id,
            "predicted": names[int(k)],
            "probability": float(p[int(k)]),
            **{f"p({name})": float(q) for name, q in zip(names, p, strict=True)},
        }
        for path, image_id, k, p in zip(
            paths,
            data.image_ids(paths),
            predictions.classes,
            predictions.probabilities,
            strict=True,
        )
    ]


def write(out: str, rows: list[dict], meta: dict) -> None:
    """``out`` (.csv or .json), atomically."""
    from cervix_jax import files

    if out.lower().endswith(".json"):
        files.atomic_write_json(out, {**meta, "images": rows})
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()})
    files.atomic_write_text(out, buffer.getvalue())


def classify(paths: list[str]):
    """``(model, Predictions)`` of ``paths``, batch by batch with a progress line."""
    import numpy as np

    from cervix_jax import analysis, train

    model = analysis.load(_WORKDIR.value, analysis.parse_which(_WHICH.value))
    batch = model.batch_size(_BATCH.value or None)
    meter = train.ProgressLine("predict", len(paths))
    logits = []
    for start in range(0, len(paths), batch):
        logits.append(model.predict(paths[start : start + batch], batch_size=batch).logits)
        meter.add(len(logits[-1]))
    meter.close()
    return model, analysis.predictions_from_logits(np.concatenate(logits), model.class_names)


def fail(error: Exception) -> None:
    print(f"error: {error}", file=sys.stderr, flush=True)
    sys.exit(1)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    runtime.setup()  # before anything starts a JAX backend
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # Orbax narrates every restore at INFO
    import numpy as np

    from cervix_jax.train import user_errors

    try:
        paths = check_flags()
    except (*user_errors(), ValueError) as e:  # ValueError: the checks' own messages
        fail(e)
    try:
        model, predictions = classify(paths)
    except user_errors() as e:
        fail(e)
    meta = {"workdir": _WORKDIR.value, "which": _WHICH.value, "class_names": model.class_names}
    write(_OUT.value, table(paths, predictions), meta)
    counts = np.bincount(predictions.classes, minlength=len(model.class_names))
    print(f"{len(paths)} images -> {_OUT.value}")
    for name, count in zip(model.class_names, counts, strict=True):
        print(f"  {name:<26} {int(count):6d}  ({100 * count / len(paths):.1f}%)")


if __name__ == "__main__":
    app.run(main)
