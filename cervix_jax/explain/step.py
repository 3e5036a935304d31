"""`explain_step`: everything about one batch of images, in one jitted program on device.

Logits and the explained classes, the method's maps (`methods.AttributionMethod`), the input
gradient of the panels, deletion/insertion curves, localization against the cell and nucleus
masks, the cell-level scores with cell occlusion, the sanity check, and the evaluations of
``Settings.evaluate`` (`evaluation.evaluation_scores`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from cervix_jax import data as data_lib
from cervix_jax.explain import cells, loops, saliency, scores, targets
from cervix_jax.explain.evaluation import evaluation_scores
from cervix_jax.explain.methods import AttributionMethod, image_keys, pixel_logits_fn
from cervix_jax.explain.settings import Settings

# What explain_step's ``outlines`` hold: union masks and per-cell label maps, [B, S, S].
OUTLINE_KEYS: tuple[str, ...] = ("cell_mask", "nucleus_mask", "cell_labels", "nucleus_labels")


def target_classes(settings: Settings, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """[B] int32: the class each image's map explains."""
    if settings.target == "predicted":
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    if settings.target == "label":
        return jnp.asarray(labels, jnp.int32)
    return jnp.full(logits.shape[0], int(settings.target), jnp.int32)


def no_outlines(images: jax.Array) -> dict[str, jax.Array]:
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


def _sanity_spearman(method, random_variables, images, target, attributions, keys):
    """Adebayo et al.'s whole-model check: rank correlation with re-initialised weights."""
    heatmaps = jax.vmap(scores.to_heatmap)(attributions)
    random_heat = jax.vmap(scores.to_heatmap)(method(images, target, random_variables, keys))
    return scores.sanity_check(heatmaps, random_heat, absolute=True)


# XLA CPU's memory-optimised scheduler (``loops``): the step lays out IG chunks, randomization
# stages and perturbed copies one after another on CPU, and with the default scheduler the
# buffers of all of them stay alive (a 6-stage ResNet-50 cascade at 224 px asked for 35 GB).
@functools.partial(
    jax.jit,
    static_argnames=("model", "normalize", "settings"),
    compiler_options=loops.MEMORY_OPTIMIZED,
)
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
    randomization=None,
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
      randomization: the stages of ``evaluation.make_randomization``, when ``settings.evaluate``
        has ``randomization``.

    Returns:
      dict of [B, ...] arrays: ``logits``, ``target``, ``attributions``, ``gradient``,
      ``deletion_curve`` and ``insertion_curve`` [B, deletion_steps + 1], the per-image
      metrics (``explain.settings.metric_keys``), the per-cell arrays of ``cells.cell_metrics``
      ([B, max_cells + 1]: ``positive_mass``, ``signed_mass``, ``present``, ...;
      ``deciding_cell``, ``pointing_cell`` [B]) with ``occlusion_drop`` [B, max_cells + 1],
      and what the evaluations add (``randomization_curves`` [B, stages + 1, measures],
      ``imputed_deletion_curve``, ``imputed_insertion_curve``, ``random_logit_class``).
    """
    normalize = data_lib.normalize if normalize is None else normalize
    images = jnp.asarray(images_uint8, jnp.float32)
    logits_fn = pixel_logits_fn(model, normalize)
    logits = jax.vmap(lambda im: logits_fn(im, variables))(images)
    target = target_classes(settings, logits, labels)
    method = AttributionMethod(model, normalize, settings)
    keys = image_keys(key, images.shape[0])
    result = method.run(images, target, variables, keys)
    attributions = result.maps
    gradient = saliency.input_gradients(method.score_fn, images, target, (variables,))
    probability = targets.class_score_fn(logits_fn, "probability")
    curves = scores.deletion_insertion(
        probability,
        images,
        attributions,
        target,
        steps=settings.deletion_steps,
        f_args=(variables,),
    )
    outlines = no_outlines(images) if outlines is None else outlines
    out = {
        "logits": logits,
        "target": target,
        "attributions": attributions,
        "gradient": gradient,
        "completeness_error": result.completeness,
        **curves,
        **_outline_scores(settings, probability, variables, images, attributions, target, outlines),
    }
    if random_variables is not None:
        out["sanity_spearman"] = _sanity_spearman(
            method, random_variables, images, target, attributions, keys
        )
    evaluated = evaluation_scores(
        method, variables, randomization, images, target, result, logits.shape[-1], key
    )
    return {**out, **evaluated}
