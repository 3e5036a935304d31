"""Attribution methods and their measurement.

Methods take ``f: image [H, W, C] -> scalar`` (pure, jittable, pixel space: ``f`` normalises
inside, so ``x - baseline`` and gradients share a space); nothing here knows about checkpoints.
Grad-CAM is the exception that needs a Flax model following the ``last_conv`` contract, and so
are the attention networks' own maps (``attention``). ``cells`` scores any map cell by cell
against the polygons' label maps (masses, deciding cell, concentration, cell occlusion).

``cervix_jax.explain.batch`` (``Settings``, ``attribute_split``, ``attribute_files``,
``make_explainer``, ``ATTRIBUTION_METHODS``, ``METRIC_KEYS``) is the glue from a training
workdir to maps and metrics over a split or image files; it is not imported here, so that the
mathematics can be used without the training wing.
"""

from cervix_jax.explain.attention import attention_kind, attention_maps
from cervix_jax.explain.baselines import (
    BASELINE_KINDS,
    black,
    blurred,
    make_baselines,
    to_normalized_space,
    uniform,
)
from cervix_jax.explain.cells import (
    CELL_METRIC_KEYS,
    background_fill,
    cell_masses,
    cell_metrics,
    cell_occlusion,
    cell_scores,
    masked_spearman,
    pixel_maps,
)
from cervix_jax.explain.complexity import effective_complexity, entropy_complexity, sparseness
from cervix_jax.explain.errors import ExplainError
from cervix_jax.explain.faithfulness import (
    FILL_KINDS,
    Fill,
    deletion_insertion_imputed,
    impute,
    infidelity,
)
from cervix_jax.explain.gradcam import gradcam, without_capture_collections
from cervix_jax.explain.integrated_gradients import (
    PAPER_PRESET,
    IGResult,
    integrated_gradients,
    integrated_gradients_adaptive,
    integrated_gradients_batch,
    integrated_gradients_batch_adaptive,
    lower_integrated_gradients,
    paper_integrated_gradients,
)
from cervix_jax.explain.noise_tunnel import (
    NOISE_TUNNEL_KINDS,
    batched_noise_tunnel,
    noise_tunnel,
    noise_tunnel_batch,
    vargrad,
)
from cervix_jax.explain.path_methods import (
    blur_integrated_gradients,
    blur_path_start,
    gaussian_blur,
    guided_integrated_gradients,
)
from cervix_jax.explain.quadrature import QUADRATURE_RULES, points_and_weights
from cervix_jax.explain.randomization import (
    RANDOMIZATION_KINDS,
    Randomization,
    layer_order,
    model_randomization,
    random_logit,
    random_other_class,
    randomization_curve,
    randomization_schedule,
    stage_variables,
)
from cervix_jax.explain.render import (
    PANEL_STYLES,
    overlay,
    panel,
    save_panel,
    signed_overlay,
    write_png,
)
from cervix_jax.explain.robustness import batched_max_sensitivity, max_sensitivity
from cervix_jax.explain.saliency import input_gradient, input_gradients, smoothgrad
from cervix_jax.explain.scores import (
    completeness_relative_error,
    deletion_insertion,
    energy_pointing_game,
    localization_metrics,
    localization_ratio,
    pointing_game,
    sanity_check,
    spearman,
    to_heatmap,
)
from cervix_jax.explain.similarity import (
    SIMILARITY_MEASURES,
    map_similarities,
    map_similarity,
    pearson,
    ssim,
)
from cervix_jax.explain.targets import (
    SCORE_KINDS,
    class_score_fn,
    predict_logits,
    predicted_class,
)

__all__ = [
    "BASELINE_KINDS",
    "CELL_METRIC_KEYS",
    "ExplainError",
    "IGResult",
    "PANEL_STYLES",
    "PAPER_PRESET",
    "QUADRATURE_RULES",
    "SCORE_KINDS",
    "attention_kind",
    "attention_maps",
    "background_fill",
    "black",
    "blurred",
    "cell_masses",
    "cell_metrics",
    "cell_occlusion",
    "cell_scores",
    "class_score_fn",
    "completeness_relative_error",
    "deletion_insertion",
    "energy_pointing_game",
    "gradcam",
    "input_gradient",
    "input_gradients",
    "integrated_gradients",
    "integrated_gradients_adaptive",
    "integrated_gradients_batch",
    "integrated_gradients_batch_adaptive",
    "localization_metrics",
    "localization_ratio",
    "lower_integrated_gradients",
    "make_baselines",
    "masked_spearman",
    "overlay",
    "paper_integrated_gradients",
    "pixel_maps",
    "panel",
    "pointing_game",
    "points_and_weights",
    "predict_logits",
    "predicted_class",
    "sanity_check",
    "save_panel",
    "signed_overlay",
    "smoothgrad",
    "spearman",
    "to_heatmap",
    "to_normalized_space",
    "uniform",
    "without_capture_collections",
    "write_png",
    "FILL_KINDS",
    "Fill",
    "NOISE_TUNNEL_KINDS",
    "RANDOMIZATION_KINDS",
    "Randomization",
    "SIMILARITY_MEASURES",
    "batched_max_sensitivity",
    "batched_noise_tunnel",
    "blur_integrated_gradients",
    "blur_path_start",
    "entropy_complexity",
    "deletion_insertion_imputed",
    "effective_complexity",
    "gaussian_blur",
    "guided_integrated_gradients",
    "impute",
    "infidelity",
    "layer_order",
    "map_similarities",
    "map_similarity",
    "max_sensitivity",
    "model_randomization",
    "noise_tunnel",
    "noise_tunnel_batch",
    "pearson",
    "random_logit",
    "random_other_class",
    "randomization_curve",
    "randomization_schedule",
    "sparseness",
    "ssim",
    "stage_variables",
    "vargrad",
]
