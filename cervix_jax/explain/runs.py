"""Attribution runs over a split of a training workdir or image files, and method comparisons.

The glue between checkpoints and the mathematics (docs/design.md): a run restores a
checkpoint (``cervix_jax.train.restore_inference_variables``), reads the split with its
cell/nucleus masks (``cervix_jax.data.eval_iterator(with_masks=True)``) or the image files
(``cervix_jax.data.ImageFileSource``: unknown labels, no outlines), runs every global batch
through one `explainer.Explainer` on the training wing's ``('data',)`` mesh, and writes what
`outputs` lists. `compare_methods` runs several methods over the same images, each into a
sub-folder, and writes the methods table (``summary.methods_table``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from cervix_jax import data as data_lib
from cervix_jax import train
from cervix_jax.explain import outputs, render, summary
from cervix_jax.explain.errors import ExplainError
from cervix_jax.explain.explainer import Explainer, make_explainer
from cervix_jax.explain.settings import Settings

_DEFAULT_SETTINGS = Settings()


@dataclasses.dataclass(frozen=True)
class _Images:
    """The images of a run: records of ``source`` at ``indices`` (``split`` None and ``paths``
    per record for image files)."""

    source: Any
    indices: np.ndarray
    image_ids: np.ndarray
    class_names: tuple[str, ...]
    split: str | None = None
    paths: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class _Job:
    """One method over the images: the explainer, the images, and the workdir's config."""

    config: Any
    explainer: Explainer
    images: _Images

    @property
    def image_size(self) -> int:
        return int(self.config.data.image_size)

    @property
    def settings(self) -> Settings:
        return self.explainer.settings

    def batches(self) -> Iterator[dict]:
        """This process's rows of each global batch (the last one padded, ``mask`` False)."""
        return data_lib.eval_iterator(
            self.images.source,
            self.images.indices,
            image_size=self.image_size,
            global_batch_size=self.explainer.global_batch_size,
            with_masks=True,
            num_workers=int(self.config.data.get("num_workers", 0) or 0),
        )


def _split_indices(module, split: str, num_images: int | None, workdir) -> np.ndarray:
    """Record indices of the first ``num_images`` images of ``split`` (all when None)."""
    if split not in module.splits:
        raise ValueError(f"split={split!r}: expected one of {sorted(module.splits)}.")
    indices = np.asarray(module.splits[split])
    if num_images is not None:
        indices = indices[: int(num_images)]
    if len(indices) == 0:
        raise ValueError(f"split {split!r} of {workdir} has no images to attribute.")
    return indices


def _check_cell_counts(source, indices: np.ndarray, image_ids, max_cells: int) -> None:
    """Refuses, before any work, a split with an image of more than ``max_cells`` cells."""
    records = (
        source.__getitems__([int(i) for i in indices])
        if hasattr(source, "__getitems__")
        else [source[int(i)] for i in indices]
    )
    counts = np.asarray([data_lib.count_cells(r) for r in records], np.int64)
    if len(counts) and counts.max() > max_cells:
        worst = int(np.argmax(counts))
        raise ExplainError(
            f"image {image_ids[int(indices[worst])]} has {counts[worst]} cells, more than "
            f"max_cells={max_cells} (the static size of the per-cell scores); pass "
            f"--max_cells={counts.max()} or more."
        )


def _split_images(config, workdir, split: str, num_images, max_cells: int) -> _Images:
    """The first ``num_images`` of ``split`` of the workdir's data module; refuses images with
    more than ``max_cells`` cells before any work."""
    module = data_lib.build_data_module(config, workdir)
    indices = _split_indices(module, split, num_images, workdir)
    image_ids = np.asarray(module.metadata.image_ids)
    _check_cell_counts(module.source, indices, image_ids, max_cells)
    return _Images(
        source=module.source,
        indices=indices,
        image_ids=image_ids,
        class_names=tuple(module.metadata.class_names),
        split=split,
    )


def _check_files(paths: Sequence, settings: Sequence[Settings]) -> None:
    """Refuses, before the checkpoint is read, ``target='label'`` and an empty list."""
    if any(s.target == "label" for s in settings):
        raise ValueError(
            "target='label' explains the true class, which image files do not have; use "
            "target='predicted' or a class index."
        )
    if not paths:
        raise ValueError("no image files to attribute.")


def _file_images(config, paths: Sequence[str | os.PathLike]) -> _Images:
    """Image files as a source (``data.ImageFileSource``): unknown labels, no outlines."""
    source = data_lib.ImageFileSource(list(paths), int(config.data.image_size))
    return _Images(
        source=source,
        indices=np.arange(len(source)),
        image_ids=np.asarray(source.ids),
        class_names=tuple(data_lib.CLASS_NAMES),
        paths=tuple(source.paths),
    )


def _jobs(workdir, settings: Sequence[Settings], which, per_device_batch, images_of) -> list:
    """Restores the checkpoint once and makes one `_Job` per settings over the images that
    ``images_of(config)`` opens; every refusal (a method the model cannot serve, images that
    do not fit) comes here, before any work."""
    config, model, variables = train.restore_inference_variables(workdir, which=which)
    explainers = [
        make_explainer(
            model,
            variables,
            s,
            image_size=int(config.data.image_size),
            per_device_batch=per_device_batch,
        )
        for s in settings
    ]
    images = images_of(config)
    return [_Job(config=config, explainer=e, images=images) for e in explainers]


class _Collected:
    """What the batches leave on the host: per-image metrics, ``images`` entries, curves."""

    def __init__(self, metric_keys: tuple[str, ...]):
        self.per_image: dict[str, dict[str, float]] = {key: {} for key in metric_keys}
        self.images: dict[str, dict] = {}
        self.curves: dict[str, list] = {"image_id": []}

    def add(self, image_id: str, host, row: int, info: dict) -> None:
        for key, values in self.per_image.items():
            values[image_id] = float(host[key][row])
        self.images[image_id] = info
        self.curves["image_id"].append(image_id)
        for key in (*outputs.CURVE_KEYS, "randomization_curves"):
            if key in host:
                self.curves.setdefault(key, []).append(np.asarray(host[key][row], np.float32))


def _metrics(job: _Job, collected: _Collected, workdir) -> dict:
    """``attribution_metrics.json`` of a finished run."""
    settings, images = job.settings, job.images
    description = summary.run_description(
        settings,
        split=images.split,
        workdir=workdir,
        model=job.config.model.name,
        image_size=job.image_size,
    )
    metrics = summary.summarize(collected.per_image, settings, description)
    if settings.evaluate:
        stages = job.explainer.randomization_stages
        metrics["evaluation"] = summary.evaluation_description(settings, stages)
        if "randomization" in settings.evaluate:
            curves = collected.curves["randomization_curves"]
            metrics["randomization"] = summary.randomization_summary(curves, stages)
    metrics["images"] = collected.images
    metrics["aggregates"] = summary.aggregates(metrics, images.class_names)
    metrics["figures"] = outputs.run_figures(settings)
    return metrics


def _attribute(job: _Job, out, workdir, *, write_images: bool, progress: bool, style: str) -> dict:
    """The loop of a run: every batch of ``job`` through its explainer, per-image files and
    values, then the metrics, aggregates and figures."""
    out = os.fspath(out)
    writer = jax.process_index() == 0
    collected = _Collected(job.explainer.metric_keys)
    images = job.images
    label = f"{summary.method_label(job.settings)} {images.split or 'files'}"
    meter = train.ProgressLine(label, len(images.indices), enabled=progress and writer)
    for step, batch in enumerate(job.batches()):
        host = job.explainer.explain_batch(batch, step)
        rows = np.flatnonzero(host["mask"])  # padding rows left out
        for row in rows:
            record = int(host["index"][row])
            image_id = str(images.image_ids[record])
            written = outputs.safe_relative_path(image_id) if write_images else None
            written = None if written is None else written.replace(os.sep, "/")
            source = None if images.paths is None else images.paths[record]
            info = summary.image_entry(host, row, images.class_names, written, source)
            collected.add(image_id, host, row, info)
            if writer and write_images:
                options = dict(method=job.settings.method, class_names=images.class_names)
                outputs.write_image_outputs(out, image_id, host, row, info, **options, style=style)
        meter.add(len(rows))
    meter.close()
    metrics = _metrics(job, collected, workdir)
    if writer:
        outputs.write_run_figures(out, metrics, collected.curves, job.image_size)
        outputs.write_metrics(out, metrics)
    return metrics


def _check_style(style: str) -> None:
    if style not in render.PANEL_STYLES:
        raise ValueError(f"panel_style={style!r}: expected one of {render.PANEL_STYLES}.")


def attribute_split(
    workdir: str | os.PathLike,
    out: str | os.PathLike,
    settings: Settings = _DEFAULT_SETTINGS,
    *,
    split: str = "test",
    num_images: int | None = None,
    per_device_batch: int = 1,
    which: str | int = "best",
    write_images: bool = True,
    progress: bool = True,
    panel_style: str = "signed",
) -> dict:
    """Attributes ``split`` of a training workdir; writes panels, ``.npy``, metrics, figures.

    Args:
      workdir: training workdir (``config.json`` + Orbax ``checkpoints/``).
      out: output directory.
      settings: method, its options and the evaluations.
      split: ``train`` | ``val`` | ``test``.
      num_images: first N images of the split (None = all).
      per_device_batch: images per device per step (global batch = this x devices).
      which: checkpoint (``best``, ``latest`` or a step).
      write_images: write the per-image PNG panels and ``.npy`` files.
      progress: a one-line progress report on stderr.
      panel_style: ``signed`` (diverging, positive and negative evidence) or ``positive``
        (the paper's green), see ``render.PANEL_STYLES``.

    Returns:
      The content written to ``attribution_metrics.json`` (``explain.summary``).
    """
    _check_style(panel_style)
    open_split = lambda config: _split_images(
        config, workdir, split, num_images, settings.max_cells
    )
    (job,) = _jobs(workdir, [settings], which, per_device_batch, open_split)
    return _attribute(
        job, out, workdir, write_images=write_images, progress=progress, style=panel_style
    )


def attribute_files(
    workdir: str | os.PathLike,
    out: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    settings: Settings = _DEFAULT_SETTINGS,
    *,
    per_device_batch: int = 1,
    which: str | int = "best",
    write_images: bool = True,
    progress: bool = True,
    panel_style: str = "signed",
) -> dict:
    """`attribute_split` for image files (``cervix_jax.data.find_images``): same batches,
    maps and outputs; ids are the file stems made unique (``data.image_ids``), ``label`` is
    null and every score that needs cell outlines is null.

    Raises:
      ValueError: ``settings.target == 'label'`` (files have no true class), no paths.
      cervix_jax.data.ImageError: a file that cannot be read (named).
    """
    _check_style(panel_style)
    paths = list(paths)
    _check_files(paths, [settings])
    open_files = lambda config: _file_images(config, paths)
    (job,) = _jobs(workdir, [settings], which, per_device_batch, open_files)
    return _attribute(
        job, out, workdir, write_images=write_images, progress=progress, style=panel_style
    )


def run_folder(settings: Settings) -> str:
    """The sub-folder of a method in a comparison: ``ig``, or ``ig_vargrad`` in a tunnel."""
    tunnel = settings.noise_tunnel
    return settings.method if tunnel == "none" else f"{settings.method}_{tunnel}"


def compare_methods(
    workdir: str | os.PathLike,
    out: str | os.PathLike,
    settings: Sequence[Settings],
    *,
    split: str = "test",
    num_images: int | None = None,
    paths: Sequence[str | os.PathLike] | None = None,
    per_device_batch: int = 1,
    which: str | int = "best",
    write_images: bool = True,
    progress: bool = True,
    panel_style: str = "signed",
) -> dict:
    """Several methods over the same images: each a full run (`attribute_split`, or
    `attribute_files` with ``paths``) into ``OUT/<run_folder>``, then ``OUT/methods_table.json``
    and ``.md``: methods as rows, metrics as columns, mean and spread over the images.

    The checkpoint is restored once and every method is checked (a method the model cannot
    serve, images that do not fit) before the first one runs.

    Returns:
      The content of ``methods_table.json`` (``summary.methods_table``, with ``folders``:
      method label -> its sub-folder).

    Raises:
      ValueError: no settings, or two settings with the same method and noise tunnel.
    """
    _check_style(panel_style)
    settings = list(settings)
    folders = [run_folder(s) for s in settings]
    if not settings or len(set(folders)) != len(folders):
        raise ValueError(f"methods {folders}: expected at least one, each once.")
    if paths is None:
        max_cells = max(s.max_cells for s in settings)
        images_of = lambda config: _split_images(config, workdir, split, num_images, max_cells)
    else:
        paths = list(paths)
        _check_files(paths, settings)
        images_of = lambda config: _file_images(config, paths)
    jobs = _jobs(workdir, settings, which, per_device_batch, images_of)
    runs = {}
    for job, folder in zip(jobs, folders, strict=True):
        options = dict(write_images=write_images, progress=progress, style=panel_style)
        metrics = _attribute(job, os.path.join(os.fspath(out), folder), workdir, **options)
        runs[summary.method_label(job.settings)] = metrics
    table = summary.methods_table(runs)
    table["folders"] = dict(zip(runs, folders, strict=True))
    if jax.process_index() == 0:
        outputs.write_methods_table(out, table)
    return table
