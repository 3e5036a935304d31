"""The evaluations of ``Settings.evaluate``, computed in the jitted step beside the maps.

Each evaluation calls the mathematics of issue 14 (docs/design.md) on the batch, with the
step's own `methods.AttributionMethod` and the maps it already computed (the reference of the
randomization, random-logit and sensitivity tests is not computed again):

- ``randomization``: Adebayo et al.'s model randomization (``randomization.py``), cascading
  from the head or one layer at a time, ``Settings.randomization_stages`` stages; per image
  the similarity of each stage's maps to the trained ones for every measure of
  ``similarity.SIMILARITY_MEASURES`` (``randomization_curves`` [B, stages + 1, measures]) and,
  as the metric ``randomization_<measure>``, its mean over the re-initialised stages (the
  area under the similarity-vs-depth curve, normalised: 1 = the maps never change).
- ``random_logit``: SSIM of the map to the map of a uniformly drawn other class.
- ``faithfulness``: deletion/insertion AUCs of the target probability with removed pixels
  filled by ``Settings.fill`` (ROAD's noisy linear imputation by default), and their curves.
- ``infidelity``: captum's infidelity of the attributed score with Gaussian perturbations,
  ``normalize=True`` (the attributions rescaled by their best least-squares factor first, so
  that maps in other units, Grad-CAM and attention, are comparable); path methods divide the
  perturbation by ``image - start`` (captum's ``multiply_by_inputs``: their maps are global).
  Grad-CAM and attention maps [S, S] are repeated over the colour channels.
- ``max_sensitivity``: captum's max-sensitivity of the method (L-infinity ball of radius
  ``Settings.sensitivity_radius``), each perturbed image explained with the same baselines.
- ``complexity``: sparseness (Gini), effective complexity and entropy of the pixel map
  ``sum_c |map|`` (one value per pixel for every method, so the numbers compare).

Perturbation-type evaluations whose maps loop over gradient passes take one perturbed copy
at a time (``methods.copies_together``). The copies, and the randomization stages
(``RANDOMIZATION_STAGE_LOOP``), run one after another in line on CPU, where backward passes
inside an XLA loop take a slow path (6x for ResNet-50 IG maps; the price is compile time,
one copy of the method per stage or copy), and in a ``scan`` elsewhere (one copy compiled).
``Settings.randomization_stages`` bounds the stages of a deep network.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cervix_jax.explain import complexity, randomization, similarity
from cervix_jax.explain import targets as targets_lib
from cervix_jax.explain.faithfulness import deletion_insertion_imputed, infidelity
from cervix_jax.explain.methods import (
    AttributionMethod,
    MethodOutput,
    copies_together,
    image_keys,
    pixel_logits_fn,
)
from cervix_jax.explain.robustness import batched_max_sensitivity
from cervix_jax.explain.settings import Settings

RANDOMIZATION_MEASURES = similarity.SIMILARITY_MEASURES
# In line on CPU (backward passes in an XLA loop take its slow path: 41 s per ResNet-50 stage
# in a scan against 7 s in line, docs/performance.md), a scan elsewhere (one copy compiled).
RANDOMIZATION_STAGE_LOOP = "auto"
# Streams of the evaluations' randomness, folded into the step's key (the maps use the key).
_STREAMS = {"random_logit": 11, "faithfulness": 12, "infidelity": 13, "max_sensitivity": 14}


def make_randomization(
    model, variables, settings: Settings, image_size: int, key: jax.Array
) -> randomization.Randomization:
    """The stages of ``settings.randomization`` for ``model``: fresh weights from
    ``model.init`` with ``key``, ``settings.randomization_stages`` stages over depth."""
    sample = jnp.zeros((1, int(image_size), int(image_size), 3), jnp.float32)
    return randomization.model_randomization(
        model,
        variables,
        key,
        sample,
        kind=settings.randomization,
        stages=settings.randomization_stages,
        apply_kwargs={"train": False},
    )


def evaluation_scores(
    method: AttributionMethod,
    variables,
    stages: randomization.Randomization | None,
    images: jax.Array,
    target_classes: jax.Array,
    result: MethodOutput,
    num_classes: int,
    key: jax.Array,
) -> dict[str, jax.Array]:
    """Every evaluation of ``method.settings.evaluate`` of one batch: ``{key: [B, ...]}``.

    Args:
      method: the step's method; variables: the trained variables.
      stages: from `make_randomization` (needed for ``randomization``).
      images: [B, S, S, 3] pixel space; target_classes: [B] the explained classes.
      result: the method's output for these images, variables and ``key``.
      num_classes: the model's classes (random-logit draws among them).
      key: the step's PRNG key (``result`` used ``methods.image_keys(key, B)``).
    """
    out: dict[str, jax.Array] = {}
    for name in method.settings.evaluate:
        args = (method, variables, images, target_classes, result, key)
        if name == "randomization":
            if stages is None:
                raise ValueError("evaluate 'randomization' needs the randomization stages.")
            out.update(_randomization(stages, *args))
        elif name == "random_logit":
            out.update(_random_logit(num_classes, *args))
        else:
            out.update(_EVALUATIONS[name](*args))
    return out


def _stream(key: jax.Array, name: str) -> jax.Array:
    return jax.random.fold_in(key, _STREAMS[name])


def _randomization(stages, method, variables, images, target_classes, result, key):
    curves = randomization.randomization_curve(
        method,
        variables,
        stages,
        images,
        target_classes,
        measures=RANDOMIZATION_MEASURES,
        stage_loop=RANDOMIZATION_STAGE_LOOP,
        args=(image_keys(key, images.shape[0]),),
        reference_maps=result.maps,
    )
    stacked = jnp.stack([curves[m] for m in RANDOMIZATION_MEASURES], axis=-1)  # [S+1, B, M]
    out = {"randomization_curves": jnp.transpose(stacked, (1, 0, 2))}  # batch first
    for m in RANDOMIZATION_MEASURES:
        out[f"randomization_{m}"] = jnp.nanmean(curves[m][1:], axis=0)
    return out


def _random_logit(num_classes, method, variables, images, target_classes, result, key):
    scores = randomization.random_logit(
        method,
        images,
        target_classes,
        _stream(key, "random_logit"),
        num_classes,
        measures=("ssim",),
        args=(variables, image_keys(key, images.shape[0])),
        maps=result.maps,
    )
    return {"random_logit_ssim": scores["ssim"], "random_logit_class": scores["other_class"]}


def _faithfulness(method, variables, images, target_classes, result, key):
    logits_fn = pixel_logits_fn(method.model, method.normalize)
    curves = deletion_insertion_imputed(
        targets_lib.class_score_fn(logits_fn, "probability"),
        images,
        result.maps,
        target_classes,
        fill=method.settings.fill_spec,
        steps=method.settings.deletion_steps,
        key=_stream(key, "faithfulness"),
        f_args=(variables,),
    )
    return {f"imputed_{name}": value for name, value in curves.items()}


def _infidelity(method, variables, images, target_classes, result, key):
    s = method.settings
    maps = result.maps
    if maps.ndim == images.ndim - 1:  # [B, S, S] maps: the same value on every channel
        maps = jnp.broadcast_to(maps[..., None], images.shape)
    value = infidelity(
        method.score_fn,
        images,
        maps,
        _stream(key, "infidelity"),
        target_classes,
        num_samples=s.perturbation_samples,
        noise_std=s.infidelity_noise,
        multiply_by_inputs=result.start is not None,
        baselines=0.0 if result.start is None else result.start,
        normalize=True,
        f_args=(variables,),
    )
    return {"infidelity": value}


def _max_sensitivity(method, variables, images, target_classes, result, key):
    s = method.settings
    value = batched_max_sensitivity(
        method,
        images,
        jax.random.split(_stream(key, "max_sensitivity"), images.shape[0]),
        target_classes,
        radius=s.sensitivity_radius,
        num_samples=s.perturbation_samples,
        together=copies_together(s.perturbation_samples, s),
        args=(variables,),
        row_args=(image_keys(key, images.shape[0]),),
        reference=result.maps,
    )
    return {"max_sensitivity": value}


def _complexity(method, variables, images, target_classes, result, key):
    del method, variables, images, target_classes, key  # a property of the maps alone
    maps = jnp.abs(result.maps)
    pixels = maps.sum(axis=-1) if maps.ndim == 4 else maps
    return {
        "sparseness": complexity.sparseness(pixels),
        "effective_complexity": complexity.effective_complexity(pixels).astype(jnp.float32),
        "entropy_complexity": complexity.entropy_complexity(pixels),
    }


_EVALUATIONS = {
    "faithfulness": _faithfulness,
    "infidelity": _infidelity,
    "max_sensitivity": _max_sensitivity,
    "complexity": _complexity,
}
