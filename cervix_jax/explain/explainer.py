"""`Explainer`: a trained model on the mesh, ready to explain global batches.

Every batch, of a split, of image files (`runs.attribute_split`, `runs.attribute_files`) or of
``cervix_jax.load(...).explain``, goes through one `Explainer` made by `make_explainer`, so the
same images, settings and batch layout give the same maps (the PRNG key of batch ``step`` is
``fold_in(key(seed), step + 2)``; the re-initialised weights of the sanity check and of the
randomization come from ``fold_in(key(seed), 1)``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from cervix_jax import models
from cervix_jax.explain import randomization as randomization_lib
from cervix_jax.explain.attention import attention_kind
from cervix_jax.explain.evaluation import make_randomization
from cervix_jax.explain.settings import Settings, metric_keys, resolve_chunk_size
from cervix_jax.explain.step import OUTLINE_KEYS, explain_step
from cervix_jax.train import mesh as mesh_lib

# The entries of a data batch the step needs on device (``image_id`` stays on the host).
_DEVICE_KEYS = ("image", "label", "index", "mask", "num_cells", *OUTLINE_KEYS)
# Entries of the batch handed back with the step's outputs.
_PASSED_BACK = ("index", "mask", "image", "label", "num_cells", "cell_labels", "nucleus_labels")


@dataclasses.dataclass(frozen=True)
class Explainer:
    """A trained model ready to explain global batches on the mesh (module docstring).

    Attributes:
      model, variables: the network and its trained variables (replicated over ``mesh``).
      random_variables: re-initialised variables of the sanity check, or None.
      randomization: the stages of the randomization evaluation, or None;
        randomization_stages: their names (``'original'``, then the deepest layer
        re-initialised), () without.
      mesh, per_device_batch: the ``('data',)`` mesh and images per device per batch.
      settings: with the automatic chunk sizes resolved.
      key: ``key(seed)``.
    """

    model: Any
    variables: Any
    random_variables: Any
    randomization: randomization_lib.Randomization | None
    mesh: jax.sharding.Mesh
    per_device_batch: int
    settings: Settings
    key: jax.Array
    randomization_stages: tuple[str, ...] = ()

    @property
    def global_batch_size(self) -> int:
        return self.per_device_batch * int(self.mesh.devices.size)

    @property
    def metric_keys(self) -> tuple[str, ...]:
        """The per-image metrics of every batch (``explain.settings.metric_keys``)."""
        return metric_keys(self.settings)

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
            self.randomization,
        )
        passed = {name: device[name] for name in _PASSED_BACK}
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
    device), the automatic chunk sizes resolved and, for the sanity check and the
    randomization evaluation, re-initialised variables from ``fold_in(key(seed), 1)``.

    Raises:
      ExplainError: ``method='attention'`` for a model without attention maps.
    """
    if settings.method == "attention":  # refuses, before any work, a model without attention
        attention_kind(model, variables, (int(image_size), int(image_size), 3))
    mesh = mesh_lib.make_mesh() if mesh is None else mesh
    replicated = mesh_lib.replicated(mesh)
    key = jax.random.key(settings.seed)
    fresh_key = jax.random.fold_in(key, 1)
    random_variables = stages = None
    if settings.sanity_check:
        reinit = models.init_variables(model, fresh_key, int(image_size))
        random_variables = jax.device_put(reinit, replicated)
    if "randomization" in settings.evaluate:
        stages = make_randomization(model, variables, settings, image_size, fresh_key)
    names = () if stages is None else stages.stage_names  # read before it is replicated
    return Explainer(
        model=model,
        variables=jax.device_put(variables, replicated),
        random_variables=random_variables,
        randomization=None if stages is None else jax.device_put(stages, replicated),
        mesh=mesh,
        per_device_batch=int(per_device_batch),
        settings=resolve_chunk_size(settings, per_device_batch),
        key=key,
        randomization_stages=names,
    )
