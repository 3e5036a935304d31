"""Embeddings of a trained model: what its classifier head reads, per image, and a 2-D map.

    python tools/embed.py --workdir=workdirs/rca --split=test --out=workdirs/rca/embeddings.npz
    python tools/embed.py --workdir=workdirs/rca --images='slides/*.png' --out=embeddings.npz

The features are the last conv map average-pooled, before dropout and the dense layer
(``cervix_jax.models.pooled_features``; D = 2048 for ResNet-50, 1024 for DenseNet-121), of the
images of a split of the run's dataset (read by the data pipeline) or of image files (``--images``:
a folder, a quoted glob pattern or a file; any size and layout, ``cervix_jax.data.model_input``).
``--out`` (``.npz``) holds ``features [N, D] float32``, ``image_id [N]``, ``label [N]`` (-1 when
unknown: image files), ``predicted [N]``, ``path [N]`` (empty for a split) and ``class_names``;
beside it, ``<out>.png`` plots the first two principal components (numpy SVD), coloured by true
class (split) or predicted class (files). Flags and files are checked before any work; a bad
one stops the tool with one line, and nothing is written.
"""

from __future__ import annotations

import os
import sys

try:  # a Python without the project's packages says what to do instead of a traceback
    from absl import app, flags

    from cervix_jax import runtime
except ModuleNotFoundError as e:
    sys.exit(f"{e} ({sys.executable}): run `make venv`, then use .venv/bin/python")

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (config.json + checkpoints/).")
_SPLIT = flags.DEFINE_enum("split", None, ["train", "val", "test"], "A split of the run's data.")
_IMAGES = flags.DEFINE_string("images", None, "Or image files: folder, glob pattern or file.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 0, "First N images of the split (0 = all).")
_OUT = flags.DEFINE_string("out", None, "Output .npz (the plot is written beside it, .png).")
_WHICH = flags.DEFINE_string("which", "best", "Checkpoint: best | latest | a step.")
_BATCH = flags.DEFINE_integer(
    "batch_size", 0, "Images per batch over all devices (0 = the run's eval_batch_size)."
)
_FORCE = flags.DEFINE_bool("force", False, "Replace --out and its plot if they exist.")
flags.mark_flags_as_required(["workdir", "out"])


def plot_path(out: str) -> str:
    return os.path.splitext(out)[0] + ".png"


def check_flags() -> list[str] | None:
    """The image files (None for a split); raises a one-line error for a bad flag or file."""
    from cervix_jax import analysis, data, files, train

    if (_SPLIT.value is None) == (_IMAGES.value is None):
        raise ValueError("pass exactly one of --split=train|val|test and --images=...")
    train.require_training_workdir(_WORKDIR.value)
    files.check_new_file(_OUT.value, suffixes=(".npz",), force=_FORCE.value)
    files.check_new_file(plot_path(_OUT.value), force=_FORCE.value, name="the plot")
    analysis.parse_which(_WHICH.value, _WORKDIR.value, name="--which")
    for flag in (_BATCH, _NUM_IMAGES):
        if flag.value < 0:
            raise ValueError(f"--{flag.name}={flag.value}: expected 0 (automatic/all) or more.")
    if _IMAGES.value is None:
        return None
    paths = data.find_images(_IMAGES.value)
    for path in paths:
        data.check_image_file(path)
    return paths


def images_to_embed(model, paths: list[str] | None) -> dict:
    """``images`` (paths or [N, S, S, 3] arrays), ``image_id``, ``label`` and ``path``."""
    import numpy as np

    from cervix_jax import data

    if paths is not None:
        labels = np.full(len(paths), data.UNKNOWN_LABEL, np.int32)
        return dict(images=paths, image_id=data.image_ids(paths), label=labels, path=paths)
    split = model.read_split(_SPLIT.value, num_images=_NUM_IMAGES.value or None)
    count = len(split["label"])
    return dict(
        images=split["image"], image_id=split["image_id"], label=split["label"], path=[""] * count
    )


def embed(paths: list[str] | None) -> tuple[object, dict]:
    """``(model, arrays of the .npz)``, batch by batch with a progress line."""
    import numpy as np

    from cervix_jax import analysis, train

    model = analysis.load(_WORKDIR.value, analysis.parse_which(_WHICH.value))
    inputs = images_to_embed(model, paths)
    images, batch = inputs.pop("images"), model.batch_size(_BATCH.value or None)
    meter = train.ProgressLine("embed", len(images))
    features, predicted = [], []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        features.append(model.embed(chunk, batch_size=batch))
        predicted.append(model.predict(chunk, batch_size=batch).classes)
        meter.add(len(chunk))
    meter.close()
    arrays = {
        "features": np.concatenate(features),
        "predicted": np.concatenate(predicted),
        **{k: np.asarray(v) for k, v in inputs.items()},
        "class_names": np.asarray(model.class_names),
    }
    return model, arrays


def write(model, arrays: dict) -> None:
    """The .npz and the PCA plot beside it, atomically."""
    import numpy as np

    from cervix_jax import analysis, files

    with files.atomic_path(_OUT.value) as tmp:
        np.savez(tmp, **arrays)
    known = arrays["label"] >= 0
    colour = np.where(known, arrays["label"], arrays["predicted"])
    points, explained = analysis.pca(arrays["features"])
    what = f"split {_SPLIT.value}, true class" if _SPLIT.value else "files, predicted class"
    fig = analysis.plot_embedding(
        points,
        colour,
        model.class_names,
        explained=explained,
        title=f"{model.config.model.name}: pooled features ({what})",
    )
    with files.atomic_path(plot_path(_OUT.value)) as tmp:
        fig.savefig(tmp, dpi=120)


def fail(error: Exception) -> None:
    print(f"error: {error}", file=sys.stderr, flush=True)
    sys.exit(1)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    runtime.setup()  # before anything starts a JAX backend
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # Orbax and TFDS narrate every restore at INFO
    from cervix_jax.train import user_errors

    try:
        paths = check_flags()
    except (*user_errors(), ValueError) as e:  # ValueError: the checks' own messages
        fail(e)
    try:
        model, arrays = embed(paths)
    except user_errors() as e:
        fail(e)
    write(model, arrays)
    n, d = arrays["features"].shape
    print(f"{n} images x {d} features -> {_OUT.value}, plot {plot_path(_OUT.value)}")


if __name__ == "__main__":
    app.run(main)
