"""Attribution over a whole split of a training workdir: maps, panels and metrics.

The glue between checkpoints and the mathematics (docs/design.md): it restores the best
checkpoint (``cervix_jax.train.restore_inference_variables``), builds the pixel-space score
``f(image, target, variables)`` from the model and ``cervix_jax.data.normalize``, reads the
split with its cell/nucleus masks (``cervix_jax.data.eval_iterator(with_masks=True)``) and runs
one jitted step per batch on the training wing's 1-D ``('data',)`` mesh
(``cervix_jax.train.mesh``): images sharded over all devices, variables replicated, so any
number of devices (or CPU) works.

Image files go the same way (`attribute_files`): ``cervix_jax.data.ImageFileSource`` serves them
to the same iterator, with unknown labels and no cell outlines (localization metrics null).
Every batch, of a split, of files or of ``cervix_jax.load(...).explain``, runs through one
`Explainer` (`make_explainer`, `Explainer.explain_batch`).

Outputs (``OUT``): per image ``<image_id>.png`` (the paper's panel: image | input-gradient
overlay | method overlay) and ``<image_id>.npy`` (raw attributions, [S, S, 3] or [S, S] for
Grad-CAM); ``attribution_metrics.json`` and ``.md`` with, for each metric, the mean over the
split and the per-image values, and ``images`` (per image: label, prediction and its
probability, target class, panel and map files, source file). ``completeness_error`` is
relative (``|sum(attr) - (f(x) - f(b))| / |f(x) - f(b)|``) and defined for IG only (null
otherwise).

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
from cervix_jax.explain import render, saliency, scores, targets
from cervix_jax.explain.gradcam import gradcam
from cervix_jax.explain.integrated_gradients import integrated_gradients_batch
from cervix_jax.train import mesh as mesh_lib

ATTRIBUTION_METHODS: tuple[str, ...] = ("ig", "gradient", "gradcam", "smoothgrad")
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
# The entries of a data batch the step needs on device (``image_id`` stays on the host).
_DEVICE_KEYS = ("image", "label", "cell_mask", "nucleus_mask", "index", "mask")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How to attribute (hashable: a static argument of the jitted step).

    Attributes:
      method: ``ig`` | ``gradient`` | ``gradcam`` | ``smoothgrad`` (over the input gradient).
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


def resolve_chunk_size(settings: Settings, per_device_batch: int) -> Settings:
    """``settings`` with an automatic IG chunk size made explicit.

    About ``PASSES_PER_DEVICE`` gradient passes at once per device: the images of a device and
    their uniform baselines are vmapped too, so the chunk is ``PASSES_PER_DEVICE // (images
    per device x baselines)`` points, at least 1 and at most ``steps``. Other settings (another
    method, a chunk size already given) come back unchanged.
    """
    if settings.method != "ig" or settings.chunk_size is not None:
        return settings
    num_baselines = settings.num_baselines if settings.baseline == "uniform" else 1
    passes_per_point = per_device_batch * num_baselines
    chunk = max(1, min(settings.steps, PASSES_PER_DEVICE // passes_per_point))
    return dataclasses.replace(settings, chunk_size=chunk)


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
    cams = gradcam(model, variables, images, target_classes, preprocess=normalize)
    return cams, no_error


def _target_classes(settings: Settings, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """[B] int32: the class each image's map explains."""
    if settings.target == "predicted":
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    if settings.target == "label":
        return jnp.asarray(labels, jnp.int32)
    return jnp.full(logits.shape[0], int(settings.target), jnp.int32)


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
      model, normalize, settings: static (``normalize`` None = ``cervix_jax.data.normalize``).
      variables: trained ``{'params', 'batch_stats'}`` (replicated).
      random_variables: re-initialised variables for the sanity check, or None.
      images_uint8: [B, S, S, 3]; labels: [B]; cell_mask, nucleus_mask: [B, S, S] {0, 1}
        (all 0 for an image without outlines: its localization metrics are NaN).
      key: PRNG key.

    Returns:
      dict of [B, ...] arrays: ``logits``, ``target``, ``attributions``, ``gradient`` and the
      per-image metrics (``METRIC_KEYS``, plus ``sanity_spearman`` when asked).
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
    heatmaps = jax.vmap(scores.to_heatmap)(attributions)
    curves = scores.deletion_insertion(
        probability,
        images,
        attributions,
        target,
        steps=settings.deletion_steps,
        f_args=(variables,),
    )
    localization = scores.localization_metrics(heatmaps, cell_mask, nucleus_mask)
    # An image without outlines (a file) has no localization: the ratios are NaN already.
    outlined = jnp.any(cell_mask.reshape(cell_mask.shape[0], -1) > 0, axis=1)
    localization["pointing_game"] = jnp.where(outlined, localization["pointing_game"], jnp.nan)
    out = {
        "logits": logits,
        "target": target,
        "attributions": attributions,
        "gradient": gradient,
        "completeness_error": relative,
        "deletion_auc": curves["deletion_auc"],
        "insertion_auc": curves["insertion_auc"],
        **localization,
    }
    if random_variables is not None:
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
        return METRIC_KEYS + (("sanity_spearman",) if self.settings.sanity_check else ())

    def explain_batch(self, batch: dict, step: int) -> dict[str, np.ndarray]:
        """Global batch ``step`` through `explain_step`: its outputs, and its ``image``,
        ``label``, ``index`` and ``mask``, as numpy on every process.

        ``batch``: this process's rows, ``image`` [B, S, S, 3] uint8, ``label``, ``index``,
        ``mask`` [B] (False on padding) and ``cell_mask``, ``nucleus_mask`` [B, S, S].
        """
        device = mesh_lib.global_batch(batch, self.mesh, keys=_DEVICE_KEYS)
        result = explain_step(
            self.model,
            None,
            self.settings,
            self.variables,
            self.random_variables,
            device["image"],
            device["label"],
            device["cell_mask"],
            device["nucleus_mask"],
            jax.random.fold_in(self.key, step + 2),
        )
        passed = {name: device[name] for name in ("index", "mask", "image", "label")}
        return mesh_lib.to_host({**result, **passed})


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
    device), the automatic chunk size resolved and, for the sanity check, re-initialised
    variables (``init_variables`` from ``fold_in(key(seed), 1)``)."""
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
    """Restores the checkpoint, opens the split and puts the variables on the mesh."""
    config, explainer = _restore(workdir, settings, per_device_batch, which)
    module = data_lib.build_data_module(config, workdir)
    return _Job(
        config=config,
        explainer=explainer,
        source=module.source,
        indices=_split_indices(module, split, num_images, workdir),
        image_ids=np.asarray(module.metadata.image_ids),
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


def _write_image_outputs(out, image_id: str, host: dict[str, np.ndarray], row: int, method: str):
    """``OUT/<image_id>.npy`` (raw attributions) and ``.png`` (the panel) of one image."""
    base = os.path.join(os.fspath(out), _safe_relative_path(image_id))
    attributions = host["attributions"][row]
    files.atomic_save_npy(base + ".npy", np.asarray(attributions, np.float32))
    render.save_panel(
        base + ".png",
        host["image"][row],
        host["gradient"][row],
        attributions,
        titles=("image", "gradient", method),
    )


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


def _image_entry(job: _Job, host: dict[str, np.ndarray], row: int, written: str | None) -> dict:
    """The ``images`` entry of one image in ``attribution_metrics.json`` (``written``: its
    panel and map path relative to OUT without suffix, None when not written)."""
    label, logits = int(host["label"][row]), np.asarray(host["logits"][row], np.float64)
    probabilities = np.exp(logits - logits.max())
    predicted = int(np.argmax(logits))
    known = label >= 0
    return {
        "label": label if known else None,
        "label_name": job.class_names[label] if known else None,
        "predicted": predicted,
        "predicted_name": job.class_names[predicted],
        "probability": float(probabilities[predicted] / probabilities.sum()),
        "target": int(host["target"][row]),
        "panel": None if written is None else f"{written}.png",
        "map": None if written is None else f"{written}.npy",
        "source": None if job.paths is None else job.paths[int(host["index"][row])],
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
        "workdir": os.fspath(workdir),
        "model": job.config.model.name,
        "image_size": job.image_size,
    }


def metrics_markdown(metrics: dict) -> str:
    """A short Markdown report of ``attribution_metrics.json``."""
    names = [k for k in metrics if isinstance(metrics[k], dict) and "per_image" in metrics[k]]
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
        "target probability.",
        "",
        "| metric | mean |",
        "|---|---|",
        *[f"| {k} | {show(metrics[k]['mean'])} |" for k in names],
        "",
        "| image | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    ids = list(metrics[names[0]]["per_image"]) if names else []
    for image_id in ids:
        row = [show(metrics[k]["per_image"].get(image_id)) for k in names]
        lines.append(f"| {image_id} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _write_metrics(out, metrics: dict) -> None:
    """``OUT/attribution_metrics.json`` and ``OUT/attribution_metrics.md``."""
    files.atomic_write_json(os.path.join(out, "attribution_metrics.json"), metrics)
    files.atomic_write_text(os.path.join(out, "attribution_metrics.md"), metrics_markdown(metrics))


def _attribute(job: _Job, out, workdir, *, write_images: bool, progress: bool) -> dict:
    """The loop of `attribute_split` and `attribute_files`: every batch of ``job`` through its
    explainer, per-image files and values, then ``attribution_metrics.json``/``.md``."""
    out = os.fspath(out)
    writer = jax.process_index() == 0
    per_image: dict[str, dict[str, float]] = {key: {} for key in job.explainer.metric_keys}
    entries: dict[str, dict] = {}
    meter = train.ProgressLine(
        f"attribute {job.split or 'files'}", len(job.indices), enabled=progress and writer
    )
    for step, batch in enumerate(job.batches()):
        host = job.explainer.explain_batch(batch, step)
        rows = _image_rows(host, job.image_ids)
        for image_id, row in rows:
            for key, values in per_image.items():
                values[image_id] = float(host[key][row])
            if writer and write_images:
                _write_image_outputs(out, image_id, host, row, job.settings.method)
            written = _safe_relative_path(image_id).replace(os.sep, "/") if write_images else None
            entries[image_id] = _image_entry(job, host, row, written)
        meter.add(len(rows))
    meter.close()
    metrics = summarize(per_image, job.settings, _run_description(job, workdir))
    metrics["images"] = entries
    if writer:
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
      The content written to ``attribution_metrics.json``: per metric the mean and the
      per-image values, and ``images``: per image its label, prediction, probability, target
      and files (docs/design.md).
    """
    job = _set_up(
        workdir,
        settings,
        split=split,
        num_images=num_images,
        per_device_batch=per_device_batch,
        which=which,
    )
    return _attribute(job, out, workdir, write_images=write_images, progress=progress)


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
) -> dict:
    """`attribute_split` for image files (``cervix_jax.data.find_images``): same batches,
    maps and outputs; ids are the file stems made unique (``data.image_ids``), ``label`` is
    null and the localization metrics are null (no cell outlines).

    Raises:
      ValueError: ``settings.target == 'label'`` (files have no true class), no paths.
      cervix_jax.data.ImageError: a file that cannot be read (named).
    """
    job = _set_up_files(
        workdir, list(paths), settings, per_device_batch=per_device_batch, which=which
    )
    return _attribute(job, out, workdir, write_images=write_images, progress=progress)
