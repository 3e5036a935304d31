"""A trained model from Python: ``cervix_jax.load(workdir)`` -> `TrainedModel`.

    from cervix_jax import runtime
    runtime.setup()                                  # first: XLA flags, before JAX starts
    import cervix_jax

    model = cervix_jax.load("workdirs/rca")          # best checkpoint, on the devices present
    model.predict(["a.png", "b.tif"]).names          # predicted classes
    maps = model.explain(["a.png"], method="ig").maps
    features = model.embed(["a.png", "b.tif"])       # [N, D], what the classifier head reads

Images are file paths, PIL images or ``uint8``/``uint16`` arrays of any size and channel layout
(RGB, RGBA, grayscale): each becomes the model's input with the data wing's own steps
(``cervix_jax.data.model_input``: RGB uint8, the dataset's stored size, shorter side resized to
the model's input size, centre crop). Bad images raise ``cervix_jax.data.ImageError`` naming the
image (its path, or ``images[i]``). A checkpoint written on any number of devices is restored
onto the devices of this process (``train.restore_inference_variables``); batches are sharded
over them (``train.mesh``), the last one padded.

`TrainedModel.explain` runs the attribution tool's own code (``explain.batch.Explainer``), so it
gives the maps of ``tools/attribute.py`` for the same images, options and batch layout.
Everything returned is numpy on the host.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from cervix_jax import data, models, train
from cervix_jax.explain import batch as batch_lib
from cervix_jax.train import mesh as mesh_lib

_SETTING_NAMES = tuple(f.name for f in dataclasses.fields(batch_lib.Settings))


@dataclasses.dataclass(frozen=True)
class Predictions:
    """Class predictions of N images.

    Attributes:
      logits: [N, C] float32.
      probabilities: [N, C] float32, softmax of the logits.
      classes: [N] int32, the predicted class (argmax).
      class_names: C names, in label order.
    """

    logits: np.ndarray
    probabilities: np.ndarray
    classes: np.ndarray
    class_names: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        """The predicted class name of each image."""
        return [self.class_names[int(c)] for c in self.classes]


def predictions_from_logits(logits: np.ndarray, class_names: Sequence[str]) -> Predictions:
    """`Predictions` of ``logits`` [N, C]."""
    logits = np.asarray(logits, np.float32)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return Predictions(
        logits=logits,
        probabilities=(shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32),
        classes=logits.argmax(axis=-1).astype(np.int32),
        class_names=tuple(class_names),
    )


@dataclasses.dataclass(frozen=True)
class Explanations:
    """Attributions of N images (`TrainedModel.explain`).

    Attributes:
      maps: [N, S, S, 3] float32 pixel-space attributions (``ig``, ``gradient``,
        ``smoothgrad``) or [N, S, S] (``gradcam``).
      gradients: [N, S, S, 3] input gradient of the same score (the panels' middle column).
      images: [N, S, S, 3] uint8, what the model saw.
      targets: [N] int32, the class each map explains.
      labels: [N] int32, the true classes given (-1 where unknown).
      predictions: the model's `Predictions` of the images.
      scores: metric -> [N] float32 per image (``explain.batch.METRIC_KEYS``, and
        ``sanity_spearman`` with ``sanity_check=True``); NaN where undefined: the
        localization metrics without cell/nucleus masks, ``completeness_error`` for methods
        other than IG.
      settings: the ``explain.batch.Settings`` used (automatic chunk size resolved).
    """

    maps: np.ndarray
    gradients: np.ndarray
    images: np.ndarray
    targets: np.ndarray
    labels: np.ndarray
    predictions: Predictions
    scores: dict[str, np.ndarray]
    settings: batch_lib.Settings


@functools.partial(jax.jit, static_argnames="model")
def _logits(model: nn.Module, variables: dict, images_uint8: jax.Array) -> jax.Array:
    # The evaluation step's computation (train.step.make_eval_step), so predictions match it.
    return model.apply(variables, data.normalize(images_uint8), train=False).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames="model")
def _features(model: nn.Module, variables: dict, images_uint8: jax.Array) -> jax.Array:
    return models.pooled_features(model, variables, data.normalize(images_uint8))


def _image_list(images: Any) -> list:
    """One image (path or PIL), a sequence of images or an [N, H, W, C] array, as a list."""
    if isinstance(images, str | os.PathLike | Image.Image):
        return [images]
    if isinstance(images, np.ndarray) and images.ndim != 4:
        raise data.ImageError(
            f"images: an array of shape {images.shape}; pass a list of images or one "
            "[N, H, W, C] array (a single [H, W, C] image: [image])."
        )
    items = list(images)
    if not items:
        raise ValueError("images: empty; pass at least one image.")
    return items


def _image_name(image: Any, position: int) -> str:
    return os.fspath(image) if isinstance(image, str | os.PathLike) else f"images[{position}]"


def _padded(rows: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Each ``[n, ...]`` array padded with zero rows to ``size``."""

    def pad(array):
        extra = size - len(array)
        return np.concatenate([array, np.zeros((extra, *array.shape[1:]), array.dtype)])

    return {k: pad(v) for k, v in rows.items()}


def _local_rows(rows: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """This process's rows of a global batch of ``size`` (``train.mesh.global_batch``)."""
    local = size // jax.process_count()
    start = jax.process_index() * local
    return {k: v[start : start + local] for k, v in rows.items()}


def parse_which(
    which: str | int, workdir: str | os.PathLike | None = None, *, name: str = "which"
) -> str | int:
    """A checkpoint choice: ``'best'``, ``'latest'`` or a step number (as text or int); with
    ``workdir``, a step must be one of its finished checkpoints (read from the folder names
    only, so the tools check it before any work). Errors name it ``name=which``."""
    if which in ("best", "latest"):
        return which
    if not str(which).isdigit():
        raise ValueError(f"{name}={which!r}: expected 'best', 'latest' or a step number.")
    steps = None if workdir is None else train.checkpoint_steps(workdir)
    if steps is not None and int(which) not in steps:
        raise ValueError(
            f"{name}={which}: no checkpoint at that step in {os.path.join(workdir, 'checkpoints')}"
            f"; expected 'best', 'latest' or one of the steps {steps}."
        )
    return int(which)


def load(workdir: str | os.PathLike, which: str | int = "best") -> TrainedModel:
    """The trained model of a training workdir, restored onto the devices present.

    Args:
      workdir: a workdir written by ``main.py`` (``config.json`` + ``checkpoints/``).
      which: ``'best'`` (validation accuracy), ``'latest'`` or a step number.

    Raises:
      train.TrainingError: not a training workdir, or no such checkpoint.
      ValueError: ``which`` is none of these.
    """
    which = parse_which(which)
    config, model, variables = train.restore_inference_variables(workdir, which=which)
    mesh = mesh_lib.make_mesh()
    return TrainedModel(
        workdir=os.fspath(workdir),
        which=which,
        config=config,
        model=model,
        variables=jax.device_put(variables, mesh_lib.replicated(mesh)),
        mesh=mesh,
        class_names=tuple(data.CLASS_NAMES),
    )


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A restored checkpoint and what to do with images (`load` makes it).

    Attributes:
      workdir, which: where it comes from.
      config: the run's config (``config.json``).
      model: the Flax module; ``model.apply(variables, data.normalize(x), train=False)``.
      variables: ``{'params', 'batch_stats'}`` replicated over ``mesh``.
      mesh: the ``('data',)`` mesh over this process's devices (``train.mesh``).
      class_names: label order.
    """

    workdir: str
    which: str | int
    config: ml_collections.ConfigDict
    model: nn.Module
    variables: dict
    mesh: jax.sharding.Mesh
    class_names: tuple[str, ...]

    @property
    def image_size(self) -> int:
        """S: the model's input is [S, S, 3]."""
        return int(self.config.data.image_size)

    def inputs(self, images: Any) -> np.ndarray:
        """``[N, S, S, 3] uint8``: the images as the model sees them (``data.model_input``)."""
        return self._inputs(_image_list(images), 0)

    def _inputs(self, items: list, offset: int) -> np.ndarray:
        """`inputs` of ``items``, images ``offset``, ``offset + 1``, ... of the caller's."""
        names = [_image_name(image, offset + i) for i, image in enumerate(items)]
        return np.stack(
            [data.model_input(im, self.image_size, n) for im, n in zip(items, names, strict=True)]
        )

    def batch_size(self, requested: int | None = None) -> int:
        """Images per global batch of `predict` and `embed`: ``requested`` (default the run's
        ``eval_batch_size``) rounded up to a multiple of the number of devices."""
        devices = int(self.mesh.devices.size)
        size = int(self.config.eval_batch_size if requested is None else requested)
        if size < 1:
            raise ValueError(f"batch_size={requested}: expected a positive number of images.")
        return -(-size // devices) * devices

    def _map_batches(self, fn, images: Any, batch_size: int | None) -> np.ndarray:
        """``fn(model, variables, images [B, S, S, 3] uint8)`` over global batches."""
        items, size = _image_list(images), self.batch_size(batch_size)
        outputs = []
        for start in range(0, len(items), size):
            chunk = self._inputs(items[start : start + size], start)
            rows = _local_rows(_padded({"image": chunk}, size), size)
            device = mesh_lib.global_batch(rows, self.mesh)["image"]
            outputs.append(mesh_lib.to_host(fn(self.model, self.variables, device))[: len(chunk)])
        return np.concatenate(outputs)

    def predict(self, images: Any, *, batch_size: int | None = None) -> Predictions:
        """Class probabilities and predicted classes.

        Args:
          images: paths, PIL images or arrays (module docstring).
          batch_size: images per global batch (default ``config.eval_batch_size``), rounded
            up to a multiple of the number of devices.
        """
        logits = self._map_batches(_logits, images, batch_size)
        return predictions_from_logits(logits, self.class_names)

    def embed(self, images: Any, *, batch_size: int | None = None) -> np.ndarray:
        """``[N, D] float32``: what the classifier head reads (``models.pooled_features``: the
        last conv map average-pooled, before dropout and the dense layer)."""
        return self._map_batches(_features, images, batch_size)

    def explain(
        self,
        images: Any,
        method: str = "ig",
        *,
        labels: Sequence[int] | None = None,
        cell_masks: Sequence[Any] | None = None,
        nucleus_masks: Sequence[Any] | None = None,
        per_device_batch: int = 1,
        **options: Any,
    ) -> Explanations:
        """Attribution maps, and their scores, through ``explain.batch`` (tools/attribute.py).

        Args:
          images: paths, PIL images or arrays (module docstring).
          method: one of ``explain.batch.ATTRIBUTION_METHODS`` (``ig``, ``blur_ig``,
            ``guided_ig``, ``gradient``, ``smoothgrad``, ``gradcam``, ``attention``).
          labels: true class per image (needed for ``target='label'``; kept in the result).
          cell_masks, nucleus_masks: per image a mask ``[H, W]`` of the image's own height and
            width (non-zero inside a cell / nucleus), cropped like the image: they give the
            localization metrics (NaN without them).
          per_device_batch: images per device per step, as ``tools/attribute.py
            --per_device_batch`` (with random baselines the maps depend on the batch layout).
          **options: the other fields of ``explain.batch.Settings``, same defaults as
            ``tools/attribute.py``: ``steps=50``, ``ig_method='gausslegendre'``,
            ``chunk_size=None``, ``baseline='uniform'``, ``num_baselines=10``,
            ``target='predicted'`` (or ``'label'`` or a class index), ``score='probability'``,
            ``noise_tunnel='none'``, ``noise_samples=16``, ``noise_level=0.15``,
            ``deletion_steps=16``, ``sanity_check=False``, ``evaluate=()`` (``'all'`` or
            names of ``explain.batch.EVALUATIONS``: their scores join ``scores``),
            ``seed=0``.
        """
        settings = self._settings(method, options)
        items = _image_list(images)
        labels = self._labels(labels, len(items), settings)
        explainer = batch_lib.make_explainer(
            self.model,
            self.variables,
            settings,
            image_size=self.image_size,
            per_device_batch=per_device_batch,
            mesh=self.mesh,
        )
        size, outputs = explainer.global_batch_size, []
        for step, start in enumerate(range(0, len(items), size)):
            stop = min(start + size, len(items))
            rows = self._explain_rows(items, start, stop, labels, cell_masks, nucleus_masks)
            host = explainer.explain_batch(_local_rows(_padded(rows, size), size), step)
            outputs.append({k: v[: stop - start] for k, v in host.items()})
        host = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
        return Explanations(
            maps=host["attributions"].astype(np.float32),
            gradients=host["gradient"].astype(np.float32),
            images=host["image"].astype(np.uint8),
            targets=host["target"].astype(np.int32),
            labels=labels,
            predictions=predictions_from_logits(host["logits"], self.class_names),
            scores={k: host[k].astype(np.float32) for k in explainer.metric_keys},
            settings=explainer.settings,
        )

    def _settings(self, method: str, options: dict) -> batch_lib.Settings:
        unknown = sorted(set(options) - set(_SETTING_NAMES))
        if unknown:
            raise ValueError(
                f"explain: unknown option(s) {unknown}; the options are "
                f"{[n for n in _SETTING_NAMES if n != 'method']}."
            )
        settings = batch_lib.Settings(method=method, **options)
        target = str(settings.target)
        if target.isdigit() and int(target) >= len(self.class_names):
            raise ValueError(
                f"explain: target={settings.target!r}; expected a class index below "
                f"{len(self.class_names)} ({', '.join(self.class_names)}), 'predicted' or "
                "'label'."
            )
        return settings

    def _labels(self, labels, count: int, settings: batch_lib.Settings) -> np.ndarray:
        """[N] int32 true classes (-1 unknown), checked."""
        if labels is None:
            if settings.target == "label":
                raise ValueError("explain: target='label' needs labels=[class of each image].")
            return np.full(count, data.UNKNOWN_LABEL, np.int32)
        array = np.asarray(labels)
        num_classes = len(self.class_names)
        if array.shape != (count,) or array.dtype.kind not in "iu":
            raise ValueError(f"explain: labels of shape {array.shape}; expected {count} ints.")
        if np.any((array < 0) | (array >= num_classes)):
            raise ValueError(f"explain: labels {array.tolist()}; expected 0..{num_classes - 1}.")
        return array.astype(np.int32)

    def _explain_rows(self, items, start, stop, labels, cell_masks, nucleus_masks) -> dict:
        """Images ``start:stop`` as a batch of the pipeline's form (masks cropped like them)."""
        size, rows = self.image_size, {"image": [], "cell_mask": [], "nucleus_mask": []}
        empty = np.zeros((size, size), np.uint8)
        for i in range(start, stop):
            name = _image_name(items[i], i)
            rgb = data.to_rgb_uint8(items[i], name)
            rows["image"].append(data.model_input(rgb, size, name))
            for key, masks in (("cell_mask", cell_masks), ("nucleus_mask", nucleus_masks)):
                given = None if masks is None else masks[i]
                rows[key].append(
                    empty
                    if given is None
                    else data.mask_input(given, rgb.shape, size, f"{key}s[{i}]")
                )
        count = stop - start
        return {
            **{k: np.stack(v) for k, v in rows.items()},
            # Unknown labels enter the step as 0: only target='label' reads them (refused).
            "label": np.maximum(labels[start:stop], 0),
            "index": np.arange(start, stop, dtype=np.int32),
            "mask": np.ones(count, bool),
        }

    def read_split(self, split: str = "test", *, num_images: int | None = None) -> dict:
        """The images of a split of the run's dataset, through the data pipeline.

        Returns ``{'image' [N, S, S, 3] uint8, 'label' [N], 'index' [N] (record index),
        'image_id' [N] str, 'cell_mask', 'nucleus_mask' [N, S, S] uint8}`` for the first
        ``num_images`` images of ``split`` (all when None), in record order.
        """
        module = data.build_data_module(self.config, self.workdir)
        if split not in module.splits:
            raise ValueError(f"split={split!r}: expected one of {sorted(module.splits)}.")
        indices = np.asarray(module.splits[split])[:num_images]
        batches = data.eval_iterator(
            module.source,
            indices,
            image_size=self.image_size,
            global_batch_size=max(1, min(len(indices), 64)),
            with_masks=True,
            process_index=0,
            process_count=1,
        )
        rows = list(batches)
        keep = np.concatenate([b["mask"] for b in rows])
        keys = ("image", "label", "index", "image_id", "cell_mask", "nucleus_mask")
        return {k: np.concatenate([b[k] for b in rows])[keep] for k in keys}


def pca(features: np.ndarray, dims: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Projection of ``features`` [N, D] on their first ``dims`` principal axes.

    Numpy SVD of the centred features. Returns ``(points [N, dims], explained [dims])``, the
    share of the variance along each axis. Each axis is oriented so that its largest loading
    is positive (SVD signs are arbitrary); axes beyond the rank are zero.
    """
    x = np.asarray(features, np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    _, singular, axes = np.linalg.svd(x, full_matrices=False)
    axes = axes[:dims]
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    points = np.zeros((len(x), dims))
    points[:, : len(axes)] = x @ (axes * signs[:, None]).T
    variance = singular**2
    explained = np.zeros(dims)
    if variance.sum() > 0:
        explained[: len(axes)] = variance[: len(axes)] / variance.sum()
    return points, explained


def plot_embedding(
    points: np.ndarray,
    classes: np.ndarray,
    class_names: Sequence[str],
    *,
    explained: np.ndarray | None = None,
    title: str = "",
):
    """A ``matplotlib.figure.Figure``: ``points`` [N, 2] coloured by ``classes`` [N] (indices
    into ``class_names``), one legend entry per class present. Made without pyplot, so it
    neither needs nor changes a backend (``fig.savefig(path)``; a notebook displays it)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 5))
    ax = fig.subplots()
    classes = np.asarray(classes)
    for k, name in enumerate(class_names):
        chosen = classes == k
        if chosen.any():
            ax.scatter(*points[chosen, :2].T, s=18, label=f"{name} ({int(chosen.sum())})")
    shares = ["", ""] if explained is None else [f" ({100 * e:.0f}%)" for e in explained[:2]]
    ax.set(xlabel=f"PC 1{shares[0]}", ylabel=f"PC 2{shares[1]}", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
