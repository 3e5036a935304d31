"""Attribution over a whole split of a training workdir: maps, panels and metrics.

The glue between checkpoints and the mathematics (docs/design.md): it restores the best
checkpoint (``cervix_jax.train.restore_inference_variables``), builds the pixel-space score
``f(image, target, variables)`` from the model and ``cervix_jax.data.normalize``, reads the
split with its cell/nucleus masks (``cervix_jax.data.eval_iterator(with_masks=True)``) and runs
one jitted step per batch: images are sharded over a 1-D ``('data',)`` mesh of all devices
(``NamedSharding``), variables replicated, so any number of devices (or CPU) works.

Outputs (``OUT``): per image ``<image_id>.png`` (the paper's panel: image | input-gradient
overlay | method overlay) and ``<image_id>.npy`` (raw attributions, [S, S, 3] or [S, S] for
Grad-CAM); ``attribution_metrics.json`` and ``.md`` with, for each metric, the mean over the
split and the per-image values. ``completeness_error`` is relative (``|sum(attr) - (f(x) -
f(b))| / |f(x) - f(b)|``) and defined for IG only (null otherwise).

Baselines. The default is the paper's: uniform random images in [0, 255], averaged over
``num_baselines`` draws. A black baseline is 10x cheaper but a poor fit for cytology: the
slide background is bright, ``x - 0`` is largest there, and IG spreads over it. Measured on the
``make demo`` model (densenet121_rca, 64 px, 4 test images, 50 steps): cell / nucleus
localisation 1.04 / 0.71 with black, 2.47 / 3.45 with 10 uniform baselines (the input gradient
alone already points at the cells). Blurred baselines differ from the image mostly around the
cells, which inflates localisation even for random weights (tests/explain/test_batch.py).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from cervix_jax.explain import baselines as baselines_lib
from cervix_jax.explain import render, saliency, scores, targets
from cervix_jax.explain.gradcam import gradcam, inference_variables
from cervix_jax.explain.integrated_gradients import integrated_gradients_batch

METHODS: tuple[str, ...] = ("ig", "gradient", "gradcam", "smoothgrad")
# Gradient passes evaluated together per device when the chunk size is automatic: ResNet-50 at
# 224 px needs ~90 MB per pass (bench/attribution.py), so ~3 GB.
PASSES_PER_DEVICE = 32
METRIC_KEYS: tuple[str, ...] = (
    "completeness_error",
    "localisation_cells",
    "localisation_nuclei",
    "pointing_game",
    "deletion_auc",
    "insertion_auc",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How to attribute (hashable: a static argument of the jitted step).

    Attributes:
      method: ``ig`` | ``gradient`` | ``gradcam`` | ``smoothgrad`` (over the input gradient).
      steps: IG quadrature points.
      ig_method: quadrature rule (``quadrature.METHODS``).
      chunk_size: IG points per vmapped chunk; None = automatic, about
        ``PASSES_PER_DEVICE`` gradient passes at once per device (``attribute_split`` divides
        it by the images per device and the number of baselines, which are vmapped too).
      baseline: ``black`` | ``uniform`` (``num_baselines`` draws, averaged) | ``blurred``.
      num_baselines: K for uniform baselines (the paper: 10).
      target: ``predicted`` | ``label`` | a class index.
      score: ``probability`` (the paper's) | ``logit`` | ``log_probability``.
      smoothgrad_samples, smoothgrad_noise: SmoothGrad copies and noise (fraction of 255).
      deletion_steps: points of the deletion/insertion curves.
      sanity_check: also compute maps with re-initialised weights and their Spearman
        correlation with the trained model's (Adebayo et al. 2018).
      seed: PRNG seed (random baselines, SmoothGrad noise, re-initialisation).
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

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}; expected one of {METHODS}.")
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


@functools.cache
def pixel_logits_fn(model, normalize: Callable[[jax.Array], jax.Array] | None = None):
    """``logits_fn(image [H, W, 3] pixel space, variables) -> [num_classes]`` (cached).

    ``normalize`` defaults to ``cervix_jax.data.normalize`` (ImageNet mean/std), the one the
    training wing uses, so the model sees what it was trained on while the attributions and
    baselines stay in pixel space.
    """
    if normalize is None:
        from cervix_jax.data import normalize

    def logits_fn(image, variables):
        return model.apply(variables, normalize(image)[None], train=False)[0]

    return logits_fn


def _maps(model, normalize, settings: Settings, variables, images, targets_, key):
    """(attributions, completeness relative error [B]) of one method."""
    logits_fn = pixel_logits_fn(model, normalize)
    f = targets.class_score_fn(logits_fn, settings.score)
    nan = jnp.full(images.shape[0], jnp.nan, jnp.float32)
    if settings.method == "ig":
        bases = baselines_lib.make_baselines(
            settings.baseline, images, key, num=settings.num_baselines
        )
        result = integrated_gradients_batch(
            f,
            images,
            bases,
            targets_,
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
        return saliency.input_gradients(f, images, targets_, (variables,)), nan
    if settings.method == "smoothgrad":
        keys = jax.random.split(key, images.shape[0])

        def one(image, target, k):
            method = lambda z: jax.grad(lambda y: f(y, target, variables))(z)
            return saliency.smoothgrad(
                method,
                image,
                k,
                num_samples=settings.smoothgrad_samples,
                noise_level=settings.smoothgrad_noise,
                batch_size=min(settings.smoothgrad_samples, PASSES_PER_DEVICE),
            )

        return jax.vmap(one)(images, targets_, keys), nan
    preprocess = normalize if normalize is not None else _data_normalize()
    return gradcam(model, variables, images, targets_, preprocess=preprocess), nan


def _data_normalize():
    from cervix_jax.data import normalize

    return normalize


@functools.partial(jax.jit, static_argnames=("model", "normalize", "settings"))
def explain_step(
    model,
    normalize,
    settings: Settings,
    variables,
    random_variables,
    images_uint8,
    labels,
    cell_mask,
    nucleus_mask,
    key,
) -> dict[str, jax.Array]:
    """Everything about one batch, on device.

    Args:
      model, normalize, settings: static.
      variables: trained ``{'params', 'batch_stats'}`` (replicated).
      random_variables: re-initialised variables for the sanity check, or None.
      images_uint8: [B, S, S, 3]; labels: [B]; cell_mask, nucleus_mask: [B, S, S] {0, 1}.
      key: PRNG key.

    Returns:
      dict of [B, ...] arrays: ``logits``, ``target``, ``attributions``, ``gradient`` and the
      per-image metrics (``METRIC_KEYS``, plus ``sanity_spearman`` when asked).
    """
    images = jnp.asarray(images_uint8, jnp.float32)
    logits_fn = pixel_logits_fn(model, normalize)
    logits = jax.vmap(lambda im: logits_fn(im, variables))(images)
    if settings.target == "predicted":
        target = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    elif settings.target == "label":
        target = jnp.asarray(labels, jnp.int32)
    else:
        target = jnp.full(images.shape[0], int(settings.target), jnp.int32)
    attributions, relative = _maps(model, normalize, settings, variables, images, target, key)
    f = targets.class_score_fn(logits_fn, settings.score)
    gradient = saliency.input_gradients(f, images, target, (variables,))
    probability = targets.class_score_fn(logits_fn, "probability")
    heatmaps = jax.vmap(scores.to_heatmap)(attributions)
    curves = scores.deletion_insertion(
        probability,
        images,
        attributions,
        target,
        steps=settings.deletion_steps,
        f_args=(variables,),
    )
    out = {
        "logits": logits,
        "target": target,
        "attributions": attributions,
        "gradient": gradient,
        "completeness_error": relative,
        "deletion_auc": curves["deletion_auc"],
        "insertion_auc": curves["insertion_auc"],
        **scores.localisation_metrics(heatmaps, cell_mask, nucleus_mask),
    }
    if random_variables is not None:
        random_maps, _ = _maps(model, normalize, settings, random_variables, images, target, key)
        random_heat = jax.vmap(scores.to_heatmap)(random_maps)
        out["sanity_spearman"] = scores.sanity_check(heatmaps, random_heat, absolute=True)
    return out


def _data_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), ("data",), axis_types=(AxisType.Auto,))


def _safe_relative_path(image_id: str) -> str:
    """``image_id`` as a relative path inside OUT (ids look like 'Dyskeratotic/008')."""
    parts = [p for p in str(image_id).replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if not parts:
        raise ValueError(f"image id {image_id!r} gives no usable file name.")
    return os.path.join(*parts)


def _save_npy(array: np.ndarray, path: str) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=".npy")
    with os.fdopen(fd, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


def _write_text(text: str, path: str) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def summarise(per_image: dict[str, dict[str, float]], settings: Settings, extra: dict) -> dict:
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


def metrics_markdown(metrics: dict) -> str:
    """A short Markdown report of ``attribution_metrics.json``."""
    keys = [k for k in metrics if isinstance(metrics[k], dict) and "per_image" in metrics[k]]
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"
    lines = [
        f"# Attribution metrics: {metrics['method']}",
        "",
        f"{metrics['num_images']} images of split `{metrics.get('split', '?')}`, "
        f"target `{metrics.get('target', '?')}`, score `{metrics.get('score', '?')}`"
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
        "target probability.",
        "",
        "| metric | mean |",
        "|---|---|",
        *[f"| {k} | {fmt(metrics[k]['mean'])} |" for k in keys],
        "",
        "| image | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    ids = list(metrics[keys[0]]["per_image"]) if keys else []
    for image_id in ids:
        row = [fmt(metrics[k]["per_image"].get(image_id)) for k in keys]
        lines.append(f"| {image_id} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


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
) -> dict:
    """Attributes ``split`` of a training workdir; writes panels, ``.npy`` and metrics.

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

    Returns:
      The content written to ``attribution_metrics.json``.
    """
    from cervix_jax import data as data_lib
    from cervix_jax import models
    from cervix_jax import train as train_lib

    out = os.fspath(out)
    config, model, variables = train_lib.restore_inference_variables(workdir, which=which)
    variables = inference_variables(variables)
    module = data_lib.build_data_module(config, workdir)
    if split not in module.splits:
        raise ValueError(f"split={split!r}: expected one of {sorted(module.splits)}.")
    indices = np.asarray(module.splits[split])
    if num_images is not None:
        indices = indices[: int(num_images)]
    if len(indices) == 0:
        raise ValueError(f"split {split!r} of {workdir} has no images to attribute.")
    image_size = int(config.data.image_size)
    mesh = _data_mesh()
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
    replicated = NamedSharding(mesh, PartitionSpec())
    global_batch = per_device_batch * mesh.devices.size
    if global_batch % jax.process_count():
        raise ValueError(
            f"global batch {global_batch} does not split over {jax.process_count()} processes."
        )
    if settings.method == "ig" and settings.chunk_size is None:
        k = settings.num_baselines if settings.baseline == "uniform" else 1
        chunk = max(1, min(settings.steps, PASSES_PER_DEVICE // (per_device_batch * k)))
        settings = dataclasses.replace(settings, chunk_size=chunk)
    variables = jax.device_put(variables, replicated)
    key = jax.random.key(settings.seed)
    random_variables = None
    if settings.sanity_check:
        reinit_key = jax.random.fold_in(key, 1)
        random_variables = jax.device_put(
            models.init_variables(model, reinit_key, image_size), replicated
        )
    batches = data_lib.eval_iterator(
        module.source,
        indices,
        image_size=image_size,
        global_batch_size=global_batch,
        with_masks=True,
        num_workers=int(config.data.get("num_workers", 0) or 0),
    )
    per_image: dict[str, dict[str, float]] = {k: {} for k in METRIC_KEYS}
    if settings.sanity_check:
        per_image["sanity_spearman"] = {}
    image_ids = np.asarray(module.metadata.image_ids)
    done, start = 0, time.perf_counter()
    writer = jax.process_index() == 0
    for step, batch in enumerate(batches):
        device = {}
        for name in ("image", "label", "cell_mask", "nucleus_mask", "index", "mask"):
            local = np.asarray(batch[name])
            shape = (local.shape[0] * jax.process_count(), *local.shape[1:])
            device[name] = jax.make_array_from_process_local_data(batch_sharding, local, shape)
        result = explain_step(
            model,
            None,
            settings,
            variables,
            random_variables,
            device["image"],
            device["label"],
            device["cell_mask"],
            device["nucleus_mask"],
            jax.random.fold_in(key, step + 2),
        )
        host = _to_host(
            {**result, "index": device["index"], "mask": device["mask"], "image": device["image"]}
        )
        for row in np.flatnonzero(host["mask"]):
            image_id = str(image_ids[int(host["index"][row])])
            for k in per_image:
                per_image[k][image_id] = float(host[k][row])
            if writer and write_images:
                base = os.path.join(out, _safe_relative_path(image_id))
                _save_npy(np.asarray(host["attributions"][row], np.float32), base + ".npy")
                render.save_panel(
                    base + ".png",
                    host["image"][row],
                    host["gradient"][row],
                    host["attributions"][row],
                    titles=("image", "gradient", settings.method),
                )
            done += 1
        if progress and writer:
            rate = done / max(time.perf_counter() - start, 1e-9)
            sys.stderr.write(f"\rattribute {split}: {done}/{len(indices)} images, {rate:.2f}/s ")
            sys.stderr.flush()
    if progress and writer:
        sys.stderr.write("\n")
    extra = {
        "split": split,
        "target": settings.target,
        "score": settings.score,
        "baseline": settings.baseline if settings.method == "ig" else None,
        "ig_method": settings.ig_method if settings.method == "ig" else None,
        "num_baselines": (
            settings.num_baselines
            if settings.method == "ig" and settings.baseline == "uniform"
            else None
        ),
        "chunk_size": settings.chunk_size if settings.method == "ig" else None,
        "deletion_steps": settings.deletion_steps,
        "workdir": os.fspath(workdir),
        "model": config.model.name,
        "image_size": image_size,
    }
    metrics = summarise(per_image, settings, extra)
    if writer:
        _write_text(
            json.dumps(metrics, indent=2, allow_nan=False) + "\n",
            os.path.join(out, "attribution_metrics.json"),
        )
        _write_text(metrics_markdown(metrics), os.path.join(out, "attribution_metrics.md"))
    return metrics


def _to_host(tree):
    """Global (possibly multi-process) arrays as numpy on every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.tree.map(np.asarray, jax.device_get(tree))
