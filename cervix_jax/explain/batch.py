"""Attribution over a split of a training workdir, or image files: maps, panels, metrics.

The glue between checkpoints and the mathematics (docs/design.md): it restores the best
checkpoint (``cervix_jax.train.restore_inference_variables``), builds the pixel-space score
``f(image, target, variables)`` from the model and ``cervix_jax.data.normalize``, reads the
split with its cell/nucleus masks (``cervix_jax.data.eval_iterator(with_masks=True)``) and runs
one jitted step per batch on the training wing's 1-D ``('data',)`` mesh
(``cervix_jax.train.mesh``): images sharded over all devices, variables replicated, so any
number of devices (or CPU) works.

Outputs (``OUT``): per image ``<image_id>.png`` (panel: image | input-gradient overlay |
method overlay, signed maps on a diverging scale by default, cell and nucleus outlines, the
deciding cell marked, true and predicted class in the heading; ``cervix_jax.explain.render``)
and ``<image_id>.npy`` (raw attributions, [S, S, 3], or [S, S] for Grad-CAM and attention);
``attribution_metrics.json`` and ``.md`` with, for each metric, the mean over the split and the
per-image values; ``curves.npz`` (every image's deletion and insertion curve) with
``curves.png`` (their mean and spread), and ``cell_scores.png`` (cell-level scores per class).
``completeness_error`` is relative (``|sum(attr) - (f(x) - f(b))| / |f(x) - f(b)|``) and
defined for IG only (null otherwise).

``attribution_metrics.json`` (contract shared with the report gallery): the settings; one
entry ``{"mean", "per_image": {image_id: value | null}}`` per metric (``METRIC_KEYS``, then the
cell-level ``cells.CELL_METRIC_KEYS``); ``images``: per image ``label``, ``label_name``
(null when unknown), ``predicted``, ``predicted_name``, ``probability`` (of the predicted
class), ``target``, ``panel`` and ``map`` (paths relative to OUT; null when not written),
``source`` (the image file, null for a split) and ``cells`` (``num_cells``, ``deciding_cell``
and ``pointing_cell`` (0 = background; null without cells), and lists indexed by label k,
index 0 the background: ``present``, ``positive_mass``, ``signed_mass``, ``occlusion_drop``);
``aggregates``: the mean of every metric ``by_true_class``, ``by_predicted_class`` and
``by_correctness`` (``correct`` / ``wrong``), each group with its ``num_images``; ``figures``:
the run's files (``curves``, ``curves_data``, ``cell_scores``).

Cell-level scores need outlines: the split's label maps (``cervix_jax.data``: ``cell_labels``,
``nucleus_labels``, at the input resolution). ``explain_step`` takes them (with the union masks)
as an optional ``outlines`` dict; without it (images from files) every score that needs
outlines is NaN (null in the JSON). Images may have at most ``Settings.max_cells`` cells
(static shapes); a split with more is refused before any work, naming the image.

Image files go the same way (`attribute_files`): ``cervix_jax.data.ImageFileSource`` serves them
to the same iterator, with unknown labels and no cell outlines (localization metrics null).
Every batch, of a split, of files or of ``cervix_jax.load(...).explain``, runs through one
`Explainer` (`make_explainer`, `Explainer.explain_batch`).

Baselines. The default is the paper's: uniform random images in [0, 255], averaged over
``num_baselines`` draws. A black baseline is 10x cheaper but a poor fit for cytology: the
slide background is bright, ``x - 0`` is largest there, and IG spreads over it (measured on the
``make demo`` model in docs/performance.md, "Attribution tool"). Blurred baselines differ
from the image mostly around the cells, which inflates localization even for random weights
(tests/explain/test_batch.py).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cervix_jax import data as data_lib
from cervix_jax import files, models, train
from cervix_jax.explain import baselines as baselines_lib
from cervix_jax.explain import cells, figures, render, saliency, scores, targets
from cervix_jax.explain.attention import attention_kind, attention_maps
from cervix_jax.explain.errors import ExplainError
from cervix_jax.explain.gradcam import gradcam
from cervix_jax.explain.integrated_gradients import integrated_gradients_batch
from cervix_jax.train import mesh as mesh_lib

ATTRIBUTION_METHODS: tuple[str, ...] = ("ig", "gradient", "gradcam", "smoothgrad", "attention")
# Gradient passes evaluated together per device when the chunk size is automatic (memory per
# pass: docs/performance.md, "Attribution tool").
PASSES_PER_DEVICE = 32
METRIC_KEYS: tuple[str, ...] = (
    "completeness_error",
    "localization_cells",
    "localization_nuclei",
    "pointing_game",
    "deletion_auc",
    "insertion_auc",
)
CELL_METRIC_KEYS = cells.CELL_METRIC_KEYS
# What explain_step's ``outlines`` hold: union masks and per-cell label maps, [B, S, S].
OUTLINE_KEYS: tuple[str, ...] = ("cell_mask", "nucleus_mask", "cell_labels", "nucleus_labels")
# The entries of a data batch the step needs on device (``image_id`` stays on the host).
_DEVICE_KEYS = ("image", "label", "index", "mask", "num_cells", *OUTLINE_KEYS)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How to attribute (hashable: a static argument of the jitted step).

    Attributes:
      method: ``ig`` | ``gradient`` | ``gradcam`` | ``smoothgrad`` (over the input gradient) |
        ``attention`` (the network's own attention maps, ``explain.attention``, from each
        image's minimum).
      steps: IG quadrature points.
      ig_method: quadrature rule (``quadrature.QUADRATURE_RULES``).
      chunk_size: IG points per vmapped chunk; None = automatic (``resolve_chunk_size``).
      baseline: ``black`` | ``uniform`` (``num_baselines`` draws, averaged) | ``blurred``.
      num_baselines: K for uniform baselines (the paper: 10).
      target: ``predicted`` | ``label`` | a class index.
      score: ``probability`` (the paper's) | ``logit`` | ``log_probability``.
      smoothgrad_samples, smoothgrad_noise: SmoothGrad copies and noise (fraction of 255).
      deletion_steps: points of the deletion/insertion curves.
      sanity_check: also compute maps with re-initialised weights and their Spearman
        correlation with the trained model's (Adebayo et al. 2018).
      seed: PRNG seed (random baselines, SmoothGrad noise, re-initialisation).
      max_cells: the most cells an image may have (static shape of the per-cell arrays).
      occlusion_chunk: cells per image removed together in one forward pass of the cell
        occlusion; None = automatic (``resolve_chunk_size``).
    """

    method: str = "ig"
    steps: int = 50
    ig_method: str = "gausslegendre"
    chunk_size: int | None = None
    baseline: str = "uniform"
    num_baselines: int = 10
    target: str = "predicted"
    score: str = "probability"
    smoothgrad_samples: int = 16
    smoothgrad_noise: float = 0.15
    deletion_steps: int = 16
    sanity_check: bool = False
    seed: int = 0
    max_cells: int = 64
    occlusion_chunk: int | None = None

    def __post_init__(self):
        if self.method not in ATTRIBUTION_METHODS:
            raise ValueError(
                f"Unknown method {self.method!r}; expected one of {ATTRIBUTION_METHODS}."
            )
        if self.baseline not in baselines_lib.BASELINE_KINDS:
            raise ValueError(
                f"Unknown baseline {self.baseline!r}; expected one of "
                f"{baselines_lib.BASELINE_KINDS}."
            )
        if self.score not in targets.SCORE_KINDS:
            raise ValueError(f"Unknown score {self.score!r}; expected {targets.SCORE_KINDS}.")
        if self.target not in ("predicted", "label") and not str(self.target).isdigit():
            raise ValueError(
                f"target={self.target!r}: expected 'predicted', 'label' or a class index."
            )
        if int(self.max_cells) < 1:
            raise ValueError(f"max_cells={self.max_cells}: expected at least 1.")


def resolve_chunk_size(settings: Settings, per_device_batch: int) -> Settings:
    """``settings`` with automatic chunk sizes made explicit.

    About ``PASSES_PER_DEVICE`` gradient passes at once per device: the images of a device and
    their uniform baselines are vmapped too, so the IG chunk is ``PASSES_PER_DEVICE // (images
    per device x baselines)`` points, at least 1 and at most ``steps``. The cell occlusion
    (forward passes only) removes ``PASSES_PER_DEVICE // images per device`` cells of every
    image at once, at least 1 and at most ``max_cells``. Sizes already given stay.
    """
    updates = {}
    if settings.occlusion_chunk is None:
        chunk = PASSES_PER_DEVICE // max(1, per_device_batch)
        updates["occlusion_chunk"] = max(1, min(settings.max_cells, chunk))
    if settings.method == "ig" and settings.chunk_size is None:
        num_baselines = settings.num_baselines if settings.baseline == "uniform" else 1
        passes_per_point = per_device_batch * num_baselines
        updates["chunk_size"] = max(1, min(settings.steps, PASSES_PER_DEVICE // passes_per_point))
    return dataclasses.replace(settings, **updates) if updates else settings


@functools.cache
def pixel_logits_fn(model, normalize: Callable[[jax.Array], jax.Array] | None = None):
    """``logits_fn(image [H, W, 3] pixel space, variables) -> [num_classes]`` (cached).

    ``normalize`` defaults to ``cervix_jax.data.normalize`` (ImageNet mean/std), the one the
    training wing uses, so the model sees what it was trained on while the attributions and
    baselines stay in pixel space.
    """
    if normalize is None:
        normalize = data_lib.normalize

    def logits_fn(image, variables):
        return model.apply(variables, normalize(image)[None], train=False)[0]

    return logits_fn


def _method_maps(model, normalize, settings: Settings, variables, images, target_classes, key):
    """(attributions, completeness relative error [B]) of ``settings.method``."""
    f = targets.class_score_fn(pixel_logits_fn(model, normalize), settings.score)
    no_error = jnp.full(images.shape[0], jnp.nan, jnp.float32)
    if settings.method == "ig":
        bases = baselines_lib.make_baselines(
            settings.baseline, images, key, num=settings.num_baselines
        )
        result = integrated_gradients_batch(
            f,
            images,
            bases,
            target_classes,
            steps=settings.steps,
            method=settings.ig_method,
            chunk_size=settings.chunk_size,
            f_args=(variables,),
        )
        relative = scores.completeness_relative_error(
            result.completeness_error, result.score_difference
        )
        return result.attributions, relative
    if settings.method == "gradient":
        return saliency.input_gradients(f, images, target_classes, (variables,)), no_error
    if settings.method == "smoothgrad":
        noise_keys = jax.random.split(key, images.shape[0])

        def one(image, target, noise_key):
            method = lambda z: jax.grad(lambda y: f(y, target, variables))(z)
            return saliency.smoothgrad(
                method,
                image,
                noise_key,
                num_samples=settings.smoothgrad_samples,
                noise_level=settings.smoothgrad_noise,
                batch_size=min(settings.smoothgrad_samples, PASSES_PER_DEVICE),
            )

        return jax.vmap(one)(images, target_classes, noise_keys), no_error
    if settings.method == "attention":
        # A soft mask never reaches 0 (a sigmoid; 0.5 gates nothing), so its level is no
        # evidence: each image's map is scored and shown from its own minimum.
        maps = attention_maps(model, variables, images, preprocess=normalize)
        return maps - maps.min(axis=(1, 2), keepdims=True), no_error
    cams = gradcam(model, variables, images, target_classes, preprocess=normalize)
    return cams, no_error


def _target_classes(settings: Settings, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """[B] int32: the class each image's map explains."""
    if settings.target == "predicted":
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    if settings.target == "label":
        return jnp.asarray(labels, jnp.int32)
    return jnp.full(logits.shape[0], int(settings.target), jnp.int32)


def _no_outlines(images: jax.Array) -> dict[str, jax.Array]:
    """Outlines of images without cells: every score that needs outlines becomes NaN."""
    zeros = jnp.zeros(images.shape[:3], jnp.int32)
    return {key: zeros for key in OUTLINE_KEYS}


def _outline_scores(
    settings: Settings, probability, variables, images, attributions, target, outlines
) -> dict[str, jax.Array]:
    """Localisation against the union masks, and the cell-level scores with cell occlusion."""
    heatmaps = jax.vmap(scores.to_heatmap)(attributions)
    labels = outlines["cell_labels"]
    occlusion = cells.cell_occlusion(
        probability,
        images,
        labels,
        target,
        max_cells=settings.max_cells,
        chunk=settings.occlusion_chunk or 1,
        f_args=(variables,),
    )
    per_cell = cells.cell_metrics(
        attributions,
        labels,
        outlines["nucleus_labels"],
        occlusion["drop"],
        max_cells=settings.max_cells,
    )
    localization = scores.localization_metrics(
        heatmaps, outlines["cell_mask"], outlines["nucleus_mask"]
    )
    # An image without cells has nothing to point at (the energy share would read 0).
    has_cells = jnp.asarray(outlines["cell_mask"]).any(axis=(1, 2))
    localization["pointing_game"] = jnp.where(has_cells, localization["pointing_game"], jnp.nan)
    return {**localization, **per_cell, "occlusion_drop": occlusion["drop"]}


@functools.partial(jax.jit, static_argnames=("model", "normalize", "settings"))
def explain_step(
    model,
    normalize,
    settings: Settings,
    variables,
    random_variables,
    images_uint8,
    labels,
    outlines,
    key,
) -> dict[str, jax.Array]:
    """Everything about one batch, on device.

    Args:
      model, normalize, settings: static (``normalize`` None = ``cervix_jax.data.normalize``).
      variables: trained ``{'params', 'batch_stats'}`` (replicated).
      random_variables: re-initialised variables for the sanity check, or None.
      images_uint8: [B, S, S, 3]; labels: [B].
      outlines: ``{cell_mask, nucleus_mask}`` ([B, S, S] {0, 1}) and ``{cell_labels,
        nucleus_labels}`` ([B, S, S] int in [0, max_cells]) (``OUTLINE_KEYS``), or None for
        images without outlines (their localisation and cell scores are NaN).
      key: PRNG key.

    Returns:
      dict of [B, ...] arrays: ``logits``, ``target``, ``attributions``, ``gradient``,
      ``deletion_curve`` and ``insertion_curve`` [B, deletion_steps + 1], the per-image
      metrics (``METRIC_KEYS``, ``CELL_METRIC_KEYS``, plus ``sanity_spearman`` when asked),
      and the per-cell arrays of ``cells.cell_metrics`` ([B, max_cells + 1]: ``positive_mass``,
      ``signed_mass``, ``present``, ...; ``deciding_cell``, ``pointing_cell`` [B]) with
      ``occlusion_drop`` [B, max_cells + 1].
    """
    normalize = data_lib.normalize if normalize is None else normalize
    images = jnp.asarray(images_uint8, jnp.float32)
    logits_fn = pixel_logits_fn(model, normalize)
    logits = jax.vmap(lambda im: logits_fn(im, variables))(images)
    target = _target_classes(settings, logits, labels)
    maps = functools.partial(_method_maps, model, normalize, settings)
    attributions, relative = maps(variables, images, target, key)
    f = targets.class_score_fn(logits_fn, settings.score)
    gradient = saliency.input_gradients(f, images, target, (variables,))
    probability = targets.class_score_fn(logits_fn, "probability")
    curves = scores.deletion_insertion(
        probability,
        images,
        attributions,
        target,
        steps=settings.deletion_steps,
        f_args=(variables,),
    )
    outlines = _no_outlines(images) if outlines is None else outlines
    out = {
        "logits": logits,
        "target": target,
        "attributions": attributions,
        "gradient": gradient,
        "completeness_error": relative,
        **curves,
        **_outline_scores(settings, probability, variables, images, attributions, target, outlines),
    }
    if random_variables is not None:
        heatmaps = jax.vmap(scores.to_heatmap)(attributions)
        random_maps, _ = maps(random_variables, images, target, key)
        random_heat = jax.vmap(scores.to_heatmap)(random_maps)
        out["sanity_spearman"] = scores.sanity_check(heatmaps, random_heat, absolute=True)
    return out


@dataclasses.dataclass(frozen=True)
class Explainer:
    """A trained model ready to explain global batches on the mesh.

    `attribute_split`, `attribute_files` and ``cervix_jax.load(...).explain`` all run
    `explain_batch` over one made by `make_explainer`, so the same images, settings and batch
    layout give the same maps (the PRNG key of batch ``step`` is ``fold_in(key(seed), step +
    2)``).
    """

    model: Any
    variables: Any
    random_variables: Any
    mesh: jax.sharding.Mesh
    per_device_batch: int
    settings: Settings
    key: jax.Array

    @property
    def global_batch_size(self) -> int:
        return self.per_device_batch * int(self.mesh.devices.size)

    @property
    def metric_keys(self) -> tuple[str, ...]:
        sanity = ("sanity_spearman",) if self.settings.sanity_check else ()
        return METRIC_KEYS + sanity + CELL_METRIC_KEYS

    def explain_batch(self, batch: dict, step: int) -> dict[str, np.ndarray]:
        """Global batch ``step`` through `explain_step`: its outputs, and its ``image``,
        ``label``, ``index``, ``mask``, ``num_cells`` and label maps, as numpy on every process.

        ``batch``: this process's rows, ``image`` [B, S, S, 3] uint8, ``label``, ``index``,
        ``mask`` [B] (False on padding) and, where the images have outlines, ``cell_mask``,
        ``nucleus_mask``, ``cell_labels``, ``nucleus_labels`` [B, S, S] and ``num_cells`` [B]
        (missing ones are zeros: no outlines).
        """
        batch = {**_empty_outlines(np.asarray(batch["image"])), **batch}
        device = mesh_lib.global_batch(batch, self.mesh, keys=_DEVICE_KEYS)
        result = explain_step(
            self.model,
            None,
            self.settings,
            self.variables,
            self.random_variables,
            device["image"],
            device["label"],
            {name: device[name] for name in OUTLINE_KEYS},
            jax.random.fold_in(self.key, step + 2),
        )
        passed = ("index", "mask", "image", "label", "num_cells", "cell_labels", "nucleus_labels")
        passed = {name: device[name] for name in passed}
        return mesh_lib.to_host({**result, **passed})


def _empty_outlines(images: np.ndarray) -> dict[str, np.ndarray]:
    """Host-side outlines of images without cells (zeros), [B, S, S] and ``num_cells`` [B]."""
    zeros = np.zeros(images.shape[:3], np.int32)
    return {**{key: zeros for key in OUTLINE_KEYS}, "num_cells": np.zeros(len(images), np.int32)}


def make_explainer(
    model,
    variables,
    settings: Settings,
    *,
    image_size: int,
    per_device_batch: int = 1,
    mesh: jax.sharding.Mesh | None = None,
) -> Explainer:
    """`Explainer` of ``model`` with ``variables`` replicated over ``mesh`` (default: every
    device), the automatic chunk sizes resolved and, for the sanity check, re-initialised
    variables (``init_variables`` from ``fold_in(key(seed), 1)``).

    Raises:
      ExplainError: ``method='attention'`` for a model without attention maps.
    """
    if settings.method == "attention":  # refuses, before any work, a model without attention
        attention_kind(model, variables, (int(image_size), int(image_size), 3))
    mesh = mesh_lib.make_mesh() if mesh is None else mesh
    replicated = mesh_lib.replicated(mesh)
    key = jax.random.key(settings.seed)
    random_variables = None
    if settings.sanity_check:
        reinit = models.init_variables(model, jax.random.fold_in(key, 1), int(image_size))
        random_variables = jax.device_put(reinit, replicated)
    return Explainer(
        model=model,
        variables=jax.device_put(variables, replicated),
        random_variables=random_variables,
        mesh=mesh,
        per_device_batch=int(per_device_batch),
        settings=resolve_chunk_size(settings, per_device_batch),
        key=key,
    )


@dataclasses.dataclass(frozen=True)
class _Job:
    """What an attribution run sets up once: the explainer and the images (records of
    ``source`` at ``indices``; ``split`` None and ``paths`` per record for image files)."""

    config: Any
    explainer: Explainer
    source: Any
    indices: np.ndarray
    image_ids: np.ndarray
    class_names: tuple[str, ...]
    split: str | None = None
    paths: tuple[str, ...] | None = None

    @property
    def image_size(self) -> int:
        return int(self.config.data.image_size)

    @property
    def settings(self) -> Settings:
        return self.explainer.settings

    def batches(self) -> Iterator[dict]:
        """This process's rows of each global batch (the last one padded, ``mask`` False)."""
        return data_lib.eval_iterator(
            self.source,
            self.indices,
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


def _restore(workdir, settings: Settings, per_device_batch: int, which) -> tuple[Any, Explainer]:
    """The workdir's config and an `Explainer` of its checkpoint ``which``."""
    config, model, variables = train.restore_inference_variables(workdir, which=which)
    explainer = make_explainer(
        model,
        variables,
        settings,
        image_size=int(config.data.image_size),
        per_device_batch=per_device_batch,
    )
    return config, explainer


def _set_up(workdir, settings: Settings, *, split, num_images, per_device_batch, which) -> _Job:
    """Restores the checkpoint, opens the split and puts the variables on the mesh; refuses
    a method the model cannot serve and images with too many cells before any work."""
    config, explainer = _restore(workdir, settings, per_device_batch, which)
    module = data_lib.build_data_module(config, workdir)
    indices = _split_indices(module, split, num_images, workdir)
    image_ids = np.asarray(module.metadata.image_ids)
    _check_cell_counts(module.source, indices, image_ids, settings.max_cells)
    return _Job(
        config=config,
        explainer=explainer,
        source=module.source,
        indices=indices,
        image_ids=image_ids,
        class_names=tuple(module.metadata.class_names),
        split=split,
    )


def _set_up_files(workdir, paths, settings: Settings, *, per_device_batch, which) -> _Job:
    """Restores the checkpoint and reads ``paths`` as a source (``data.ImageFileSource``)."""
    if settings.target == "label":
        raise ValueError(
            "target='label' explains the true class, which image files do not have; use "
            "target='predicted' or a class index."
        )
    if not paths:
        raise ValueError("no image files to attribute.")
    config, explainer = _restore(workdir, settings, per_device_batch, which)
    source = data_lib.ImageFileSource(paths, int(config.data.image_size))
    return _Job(
        config=config,
        explainer=explainer,
        source=source,
        indices=np.arange(len(source)),
        image_ids=np.asarray(source.ids),
        class_names=tuple(data_lib.CLASS_NAMES),
        paths=tuple(source.paths),
    )


def _image_rows(host: dict[str, np.ndarray], image_ids: np.ndarray) -> list[tuple[str, int]]:
    """``(image_id, row)`` of the real images of a batch (padding rows left out)."""
    rows = np.flatnonzero(host["mask"])
    return [(str(image_ids[int(host["index"][row])]), int(row)) for row in rows]


def _safe_relative_path(image_id: str) -> str:
    """``image_id`` as a relative path inside OUT (ids look like 'Dyskeratotic/008')."""
    parts = [p for p in str(image_id).replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if not parts:
        raise ValueError(f"image id {image_id!r} gives no usable file name.")
    return os.path.join(*parts)


def _class_name(class_names: tuple[str, ...], index: int) -> str | None:
    return class_names[index] if 0 <= index < len(class_names) else None


def _heading(info: dict, method: str, class_names: tuple[str, ...]) -> str:
    """The panel's heading: true class, prediction and its probability, deciding cell."""
    parts = [
        f"true: {info['label_name'] or 'unknown'}",
        f"predicted: {info['predicted_name']} (p = {info['probability']:.2f})",
    ]
    if info["target"] != info["predicted"]:
        parts.append(f"explained: {_class_name(class_names, info['target'])}")
    if info["cells"]["num_cells"]:
        parts.append(f"deciding cell ({method}): {info['cells']['deciding_cell'] or 'none'}")
    return "  |  ".join(parts)


def _write_image_outputs(out, image_id: str, host, row: int, info: dict, job, style) -> None:
    """``OUT/<image_id>.npy`` (raw attributions) and ``.png`` (the panel) of one image."""
    method = job.settings.method
    base = os.path.join(os.fspath(out), _safe_relative_path(image_id))
    attributions = host["attributions"][row]
    files.atomic_save_npy(base + ".npy", np.asarray(attributions, np.float32))
    render.save_panel(
        base + ".png",
        host["image"][row],
        host["gradient"][row],
        attributions,
        titles=("image and cells", "input gradient", method),
        heading=_heading(info, method, job.class_names),
        style=style,
        cell_labels=host["cell_labels"][row],
        nucleus_labels=host["nucleus_labels"][row],
        deciding_cell=int(info["cells"]["deciding_cell"] or 0),
    )


def _cells_entry(host: dict[str, np.ndarray], row: int) -> dict:
    """The ``cells`` of an image's ``images`` entry: lists indexed by label (0 = background)."""
    count = int(host["num_cells"][row])
    present = host["present"][row][: count + 1]
    valid = bool(present.any())
    listed = lambda key: [_finite_or_none(v) for v in host[key][row][: count + 1]]
    drops = listed("occlusion_drop")
    return {
        "num_cells": count,
        "deciding_cell": int(host["deciding_cell"][row]) if valid else None,
        "pointing_cell": int(host["pointing_cell"][row]) if valid else None,
        "present": [bool(p) for p in present],
        "positive_mass": listed("positive_mass"),
        "signed_mass": listed("signed_mass"),
        "occlusion_drop": [None] + drops[1:] if drops else [],
    }


def _image_entry(job: _Job, host: dict[str, np.ndarray], row: int, written: str | None) -> dict:
    """The ``images`` entry of one image in ``attribution_metrics.json`` (``written``: its
    panel and map path relative to OUT without suffix, None when not written)."""
    label, logits = int(host["label"][row]), np.asarray(host["logits"][row], np.float64)
    probabilities = np.exp(logits - logits.max())
    predicted = int(np.argmax(logits))
    known = label >= 0
    return {
        "label": label if known else None,
        "label_name": _class_name(job.class_names, label),
        "predicted": predicted,
        "predicted_name": _class_name(job.class_names, predicted),
        "probability": float(probabilities[predicted] / probabilities.sum()),
        "target": int(host["target"][row]),
        "panel": None if written is None else f"{written}.png",
        "map": None if written is None else f"{written}.npy",
        "source": None if job.paths is None else job.paths[int(host["index"][row])],
        "cells": _cells_entry(host, row),
    }


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def summarize(per_image: dict[str, dict[str, float]], settings: Settings, extra: dict) -> dict:
    """The ``attribution_metrics.json`` content from ``{metric: {image_id: value}}``."""
    out: dict[str, Any] = {
        "method": settings.method,
        "steps": settings.steps if settings.method == "ig" else None,
        "num_images": len(next(iter(per_image.values()), {})),
        **extra,
    }
    for key, values in per_image.items():
        finite = [v for v in values.values() if v is not None and math.isfinite(v)]
        out[key] = {
            "mean": float(np.mean(finite)) if finite else None,
            "per_image": {k: _finite_or_none(v) for k, v in values.items()},
        }
    return out


def _metric_names(metrics: dict) -> list[str]:
    """The per-image metrics of ``attribution_metrics.json``, in their order."""
    return [k for k, v in metrics.items() if isinstance(v, dict) and "per_image" in v]


def aggregates(metrics: dict, class_names: tuple[str, ...]) -> dict:
    """Means of every per-image metric by true class, predicted class and correctness.

    Args:
      metrics: ``attribution_metrics.json`` content with its ``images`` block.
      class_names: the label order (groups follow it; empty groups are left out).

    Returns:
      ``{'by_true_class' | 'by_predicted_class': {class name: group}, 'by_correctness':
      {'correct' | 'wrong': group}}``, a group being ``{'num_images': n, 'metrics': {key:
      mean of the finite values | None}}``. Images without a known label are counted only by
      predicted class.
    """
    members: dict[str, dict[str, list[str]]] = {
        "by_true_class": {c: [] for c in class_names},
        "by_predicted_class": {c: [] for c in class_names},
        "by_correctness": {"correct": [], "wrong": []},
    }
    for image_id, info in metrics["images"].items():
        members["by_predicted_class"].setdefault(info["predicted_name"], []).append(image_id)
        if info["label_name"] is not None:
            members["by_true_class"].setdefault(info["label_name"], []).append(image_id)
            right = "correct" if info["label"] == info["predicted"] else "wrong"
            members["by_correctness"][right].append(image_id)

    def group(ids: list[str]) -> dict:
        means = {}
        for key in _metric_names(metrics):
            values = [metrics[key]["per_image"].get(i) for i in ids]
            finite = [v for v in values if v is not None]
            means[key] = float(np.mean(finite)) if finite else None
        return {"num_images": len(ids), "metrics": means}

    return {
        grouping: {name: group(ids) for name, ids in groups.items() if ids}
        for grouping, groups in members.items()
    }


def _run_description(job: _Job, workdir) -> dict:
    """The settings, split and model that ``attribution_metrics.json`` records (``split``
    None for image files)."""
    settings = job.settings
    is_ig = settings.method == "ig"
    return {
        "split": job.split,
        "target": settings.target,
        "score": settings.score,
        "baseline": settings.baseline if is_ig else None,
        "ig_method": settings.ig_method if is_ig else None,
        "num_baselines": (
            settings.num_baselines if is_ig and settings.baseline == "uniform" else None
        ),
        "chunk_size": settings.chunk_size if is_ig else None,
        "deletion_steps": settings.deletion_steps,
        "max_cells": settings.max_cells,
        "workdir": os.fspath(workdir),
        "model": job.config.model.name,
        "image_size": job.image_size,
    }


def _aggregate_markdown(metrics: dict, show) -> list[str]:
    """One table per grouping of ``aggregates``: a row per metric, a column per group."""
    lines = []
    titles = {
        "by_true_class": "By true class",
        "by_predicted_class": "By predicted class",
        "by_correctness": "Correct vs wrong predictions",
    }
    for grouping, groups in metrics.get("aggregates", {}).items():
        if not groups:
            continue
        names = list(groups)
        lines += [
            "",
            f"## {titles.get(grouping, grouping)}",
            "",
            "| metric | " + " | ".join(f"{g} (n={groups[g]['num_images']})" for g in names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for key in _metric_names(metrics):
            row = [show(groups[g]["metrics"].get(key)) for g in names]
            lines.append(f"| {key} | " + " | ".join(row) + " |")
    return lines


def _image_markdown(metrics: dict, names: list[str], show) -> list[str]:
    """The per-image table: classes, deciding cell and every metric."""
    images = metrics.get("images", {})
    lines = [
        "",
        "## Per image",
        "",
        "| image | true | predicted (p) | deciding cell | " + " | ".join(names) + " |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    for image_id in list(metrics[names[0]]["per_image"]) if names else []:
        info = images.get(image_id, {})
        predicted = f"{info.get('predicted_name', '?')} ({show(info.get('probability'))})"
        deciding = (info.get("cells") or {}).get("deciding_cell")
        row = [str(info.get("label_name")), predicted, str(deciding or "-")]
        row += [show(metrics[k]["per_image"].get(image_id)) for k in names]
        lines.append(f"| {image_id} | " + " | ".join(row) + " |")
    return lines


def metrics_markdown(metrics: dict) -> str:
    """A short Markdown report of ``attribution_metrics.json``."""
    names = _metric_names(metrics)
    show = lambda v: "n/a" if v is None else f"{v:.4g}"
    lines = [
        f"# Attribution metrics: {metrics['method']}",
        "",
        f"{metrics['num_images']} images of "
        + (f"split `{metrics.get('split', '?')}`" if metrics.get("split") else "image files")
        + f", target `{metrics.get('target', '?')}`, score `{metrics.get('score', '?')}`"
        + (
            f", {metrics['steps']} steps ({metrics.get('ig_method')}), baseline "
            f"`{metrics.get('baseline')}`"
            if metrics["method"] == "ig"
            else ""
        )
        + ".",
        "",
        "Localisation ratios: share of positive attribution in the region / its area share "
        "(1.0 = uniform). Pointing game: energy share inside the cells. Completeness: "
        "relative error. Deletion (low is good) and insertion (high is good) AUCs of the "
        "target probability. Cell level (per cell outline): shares of the positive mass in "
        "nuclei, cytoplasm rings and background; top_cell_share, the largest cell's share "
        "of the positive mass on cells, and cell_gini (1 = all on one cell); the deciding "
        "cell has the largest signed mass; cell_pointing_game, the map's maximum on a "
        "cell; occlusion_spearman, rank agreement of the cells' signed "
        "masses with the drop in target probability when each cell is replaced by the "
        "background (0 = chance); occlusion_top_agreement, the deciding cell is the one "
        "whose removal costs most.",
        "",
        "| metric | mean |",
        "|---|---|",
        *[f"| {k} | {show(metrics[k]['mean'])} |" for k in names],
        *_aggregate_markdown(metrics, show),
        *_image_markdown(metrics, names, show),
    ]
    return "\n".join(lines) + "\n"


def _write_metrics(out, metrics: dict) -> None:
    """``OUT/attribution_metrics.json`` and ``OUT/attribution_metrics.md``."""
    files.atomic_write_json(os.path.join(out, "attribution_metrics.json"), metrics)
    files.atomic_write_text(os.path.join(out, "attribution_metrics.md"), metrics_markdown(metrics))


FIGURES = {"curves": "curves.png", "curves_data": "curves.npz", "cell_scores": "cell_scores.png"}


def _write_run_figures(out, metrics: dict, curves: dict[str, list], image_size: int) -> None:
    """``curves.npz`` (per-image deletion/insertion curves), ``curves.png``, and
    ``cell_scores.png`` (cell-level scores per true class)."""
    steps = len(curves["deletion_curve"][0]) - 1
    pixels = image_size * image_size
    fraction = np.round(np.linspace(0, pixels, steps + 1)) / pixels
    arrays = {
        "image_id": np.asarray(curves["image_id"], dtype=str),
        "fraction": fraction.astype(np.float32),
        "deletion_curve": np.asarray(curves["deletion_curve"], np.float32),
        "insertion_curve": np.asarray(curves["insertion_curve"], np.float32),
    }
    with files.atomic_path(os.path.join(out, FIGURES["curves_data"])) as tmp:
        np.savez(tmp, **arrays)
    figures.plot_curves(
        os.path.join(out, FIGURES["curves"]),
        arrays["fraction"],
        arrays["deletion_curve"],
        arrays["insertion_curve"],
        title=f"{metrics['method']} maps of {metrics['model']}",
    )
    figures.plot_cell_scores(os.path.join(out, FIGURES["cell_scores"]), metrics)


class _Collected:
    """What the batches leave on the host: per-image metrics, ``images`` entries, curves."""

    def __init__(self, metric_keys: tuple[str, ...]):
        self.per_image: dict[str, dict[str, float]] = {key: {} for key in metric_keys}
        self.images: dict[str, dict] = {}
        self.curves: dict[str, list] = {"image_id": [], "deletion_curve": [], "insertion_curve": []}

    def add(self, image_id: str, host, row: int, info: dict) -> None:
        for key, values in self.per_image.items():
            values[image_id] = float(host[key][row])
        self.images[image_id] = info
        self.curves["image_id"].append(image_id)
        for key in ("deletion_curve", "insertion_curve"):
            self.curves[key].append(np.asarray(host[key][row], np.float32))


def _attribute(job: _Job, out, workdir, *, write_images: bool, progress: bool, style: str) -> dict:
    """The loop of `attribute_split` and `attribute_files`: every batch of ``job`` through its
    explainer, per-image files and values, then the metrics, aggregates and figures."""
    if style not in render.PANEL_STYLES:
        raise ValueError(f"panel_style={style!r}: expected one of {render.PANEL_STYLES}.")
    out = os.fspath(out)
    writer = jax.process_index() == 0
    collected = _Collected(job.explainer.metric_keys)
    meter = train.ProgressLine(
        f"attribute {job.split or 'files'}", len(job.indices), enabled=progress and writer
    )
    for step, batch in enumerate(job.batches()):
        host = job.explainer.explain_batch(batch, step)
        rows = _image_rows(host, job.image_ids)
        for image_id, row in rows:
            written = _safe_relative_path(image_id).replace(os.sep, "/") if write_images else None
            info = _image_entry(job, host, row, written)
            collected.add(image_id, host, row, info)
            if writer and write_images:
                _write_image_outputs(out, image_id, host, row, info, job, style)
        meter.add(len(rows))
    meter.close()
    metrics = summarize(collected.per_image, job.settings, _run_description(job, workdir))
    metrics["images"] = collected.images
    metrics["aggregates"] = aggregates(metrics, job.class_names)
    metrics["figures"] = dict(FIGURES)
    if writer:
        _write_run_figures(out, metrics, collected.curves, job.image_size)
        _write_metrics(out, metrics)
    return metrics


def attribute_split(
    workdir: str | os.PathLike,
    out: str | os.PathLike,
    settings: Settings = Settings(),
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
      settings: method and its options.
      split: ``train`` | ``val`` | ``test``.
      num_images: first N images of the split (None = all).
      per_device_batch: images per device per step (global batch = this x devices).
      which: checkpoint (``best``, ``latest`` or a step).
      write_images: write the per-image PNG panels and ``.npy`` files.
      progress: a one-line progress report on stderr.
      panel_style: ``signed`` (diverging, positive and negative evidence) or ``positive``
        (the paper's green), see ``render.PANEL_STYLES``.

    Returns:
      The content written to ``attribution_metrics.json`` (module docstring).
    """
    job = _set_up(
        workdir,
        settings,
        split=split,
        num_images=num_images,
        per_device_batch=per_device_batch,
        which=which,
    )
    return _attribute(
        job, out, workdir, write_images=write_images, progress=progress, style=panel_style
    )


def attribute_files(
    workdir: str | os.PathLike,
    out: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    settings: Settings = Settings(),
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
    job = _set_up_files(
        workdir, list(paths), settings, per_device_batch=per_device_batch, which=which
    )
    return _attribute(
        job, out, workdir, write_images=write_images, progress=progress, style=panel_style
    )
