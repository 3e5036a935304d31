"""What an attribution run computes: `Settings`, the method and evaluation names, metric keys.

``Settings`` is hashable (a static argument of the jitted step) and checks itself, so a bad
value is refused with one line naming the field before any work. The per-image metrics of a
run are ``metric_keys(settings)``: ``METRIC_KEYS`` (and ``sanity_spearman`` with
``sanity_check``), the cell-level ``CELL_METRIC_KEYS``, then the keys of each evaluation asked
for (``EVALUATION_METRIC_KEYS``, issue 14: docs/design.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from cervix_jax.explain import baselines as baselines_lib
from cervix_jax.explain import cells, faithfulness, loops, randomization, similarity, targets
from cervix_jax.explain.noise_tunnel import NOISE_TUNNEL_KINDS
from cervix_jax.explain.quadrature import QUADRATURE_RULES

ATTRIBUTION_METHODS: tuple[str, ...] = (
    "ig",
    "blur_ig",
    "guided_ig",
    "gradient",
    "smoothgrad",
    "gradcam",
    "attention",
)
# Methods that integrate the gradient along a path: their maps sum to f(x) - f(start).
PATH_METHODS: tuple[str, ...] = ("ig", "blur_ig", "guided_ig")
NOISE_TUNNELS: tuple[str, ...] = ("none", *NOISE_TUNNEL_KINDS)
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
EVALUATION_METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "randomization": tuple(f"randomization_{m}" for m in similarity.SIMILARITY_MEASURES),
    "random_logit": ("random_logit_ssim",),
    "faithfulness": ("imputed_deletion_auc", "imputed_insertion_auc"),
    "infidelity": ("infidelity",),
    "max_sensitivity": ("max_sensitivity",),
    "complexity": ("sparseness", "effective_complexity", "entropy_complexity"),
}
EVALUATIONS: tuple[str, ...] = tuple(EVALUATION_METRIC_KEYS)


def parse_evaluations(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``'all'``, a comma list or a sequence of ``EVALUATIONS`` -> a tuple in their order.

    Raises:
      ValueError: an unknown name (named, with the valid ones).
    """
    if value is None:
        return ()
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip() for n in names if str(n).strip()]
    if names == ["all"]:
        return EVALUATIONS
    unknown = [n for n in names if n not in EVALUATIONS]
    if unknown:
        raise ValueError(
            f"evaluate={','.join(names)!r}: unknown {unknown}; expected 'all' or a comma list "
            f"of {', '.join(EVALUATIONS)}."
        )
    return tuple(n for n in EVALUATIONS if n in names)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How to attribute and what to evaluate (hashable: a static argument of the step).

    Attributes:
      method: one of ``ATTRIBUTION_METHODS``: ``ig``, ``blur_ig`` (Xu et al. 2020), ``guided_ig``
        (Kapishnikov et al. 2021), ``gradient``, ``smoothgrad`` (noise around the gradient),
        ``gradcam``, ``attention`` (the network's own attention maps, from each image's
        minimum).
      steps: quadrature points (``ig``, ``blur_ig``) or path steps (``guided_ig``).
      ig_method: quadrature rule of ``ig`` and ``blur_ig`` (``quadrature.QUADRATURE_RULES``).
      chunk_size: points per vmapped chunk (``ig``, ``blur_ig``); None = automatic.
      baseline: ``black`` | ``uniform`` (``num_baselines`` draws, averaged) | ``blurred``: the
        start of ``ig`` and ``guided_ig``.
      num_baselines: K for uniform baselines (the paper: 10).
      target: ``predicted`` | ``label`` | a class index.
      score: ``probability`` (the paper's) | ``logit`` | ``log_probability``.
      noise_tunnel: ``none`` or one of ``noise_tunnel.NOISE_TUNNEL_KINDS`` (``smoothgrad``,
        ``smoothgrad_sq``, ``vargrad``) around the method (not with ``method='smoothgrad'``,
        which is the gradient in a ``smoothgrad`` tunnel already).
      noise_samples, noise_level: noisy copies and noise std (fraction of 255) of the tunnel
        and of ``method='smoothgrad'``.
      blur_max_sigma: blur (pixels) of the start of Blur IG's path.
      guided_fraction, guided_max_distance: Guided IG's share of features moved per round and
        how far a feature may leave the straight line.
      deletion_steps: points of the deletion/insertion curves.
      sanity_check: also compute maps with re-initialised weights and their Spearman
        correlation with the trained model's (Adebayo et al. 2018).
      evaluate: evaluations (``EVALUATIONS``) computed in the step besides the metrics above.
      fill: what the ``faithfulness`` evaluation puts where pixels are removed
        (``faithfulness.FILL_KINDS``: ROAD's noisy ``linear`` imputation, ``blur``,
        ``constant`` black).
      randomization: ``cascading`` (head down) | ``independent`` (one layer at a time).
      randomization_stages: stages of the randomization, evenly spread over depth; None =
        one per layer.
      perturbation_samples: perturbations per image of ``infidelity`` and ``max_sensitivity``.
      infidelity_noise: std of ``infidelity``'s Gaussian perturbation (pixel units).
      sensitivity_radius: L-infinity radius of ``max_sensitivity`` (pixel units).
      seed: PRNG seed (random baselines, noise, re-initialisation, perturbations).
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
    noise_tunnel: str = "none"
    noise_samples: int = 16
    noise_level: float = 0.15
    blur_max_sigma: float = 50.0
    guided_fraction: float = 0.25
    guided_max_distance: float = 0.02
    deletion_steps: int = 16
    sanity_check: bool = False
    evaluate: tuple[str, ...] = ()
    fill: str = "linear"
    randomization: str = "cascading"
    randomization_stages: int | None = None
    perturbation_samples: int = 10
    infidelity_noise: float = 2.55
    sensitivity_radius: float = 5.1
    seed: int = 0
    max_cells: int = 64
    occlusion_chunk: int | None = None

    def __post_init__(self):
        # A list or 'all' from the Python API or the command line becomes the hashable tuple.
        object.__setattr__(self, "evaluate", parse_evaluations(self.evaluate))
        _check_names(self)
        _check_numbers(self)

    @property
    def is_path_method(self) -> bool:
        """Whether the maps integrate the gradient along a path (completeness defined)."""
        return self.method in PATH_METHODS

    @property
    def fill_spec(self) -> faithfulness.Fill:
        """The ``faithfulness.Fill`` of the ``faithfulness`` evaluation (its defaults)."""
        return faithfulness.Fill(kind=self.fill)


def _choice(name: str, value, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(choices)}.")


def _check_names(s: Settings) -> None:
    """Every named choice of ``s`` is one of its kind."""
    _choice("method", s.method, ATTRIBUTION_METHODS)
    _choice("baseline", s.baseline, baselines_lib.BASELINE_KINDS)
    _choice("score", s.score, targets.SCORE_KINDS)
    _choice("ig_method", s.ig_method, QUADRATURE_RULES)
    _choice("noise_tunnel", s.noise_tunnel, NOISE_TUNNELS)
    _choice("fill", s.fill, faithfulness.FILL_KINDS)
    _choice("randomization", s.randomization, randomization.RANDOMIZATION_KINDS)
    if s.target not in ("predicted", "label") and not str(s.target).isdigit():
        raise ValueError(f"target={s.target!r}: expected 'predicted', 'label' or a class index.")
    if s.method == "smoothgrad" and s.noise_tunnel != "none":
        raise ValueError(
            f"method='smoothgrad' is the gradient in a smoothgrad tunnel already; for "
            f"noise_tunnel={s.noise_tunnel!r} use method='gradient'."
        )


def _check_numbers(s: Settings) -> None:
    """Counts at least 1 and sizes in range, each refusal naming its field."""
    at_least_one = {
        "steps": s.steps,
        "num_baselines": s.num_baselines,
        "noise_samples": s.noise_samples,
        "deletion_steps": s.deletion_steps,
        "perturbation_samples": s.perturbation_samples,
        "max_cells": s.max_cells,
        "randomization_stages": 1 if s.randomization_stages is None else s.randomization_stages,
        "chunk_size": 1 if s.chunk_size is None else s.chunk_size,
        "occlusion_chunk": 1 if s.occlusion_chunk is None else s.occlusion_chunk,
    }
    for name, value in at_least_one.items():
        if int(value) < 1:
            raise ValueError(f"{name}={value}: expected at least 1.")
    positive = {"blur_max_sigma": s.blur_max_sigma, "sensitivity_radius": s.sensitivity_radius}
    positive |= {"infidelity_noise": s.infidelity_noise, "guided_fraction": s.guided_fraction}
    for name, value in positive.items():
        if not float(value) > 0:
            raise ValueError(f"{name}={value}: expected a number above 0.")
    if not s.noise_level >= 0.0:
        raise ValueError(f"noise_level={s.noise_level}: expected 0 or more.")
    if not s.guided_fraction <= 1.0:
        raise ValueError(f"guided_fraction={s.guided_fraction}: expected at most 1.")
    if not 0.0 <= s.guided_max_distance <= 1.0:
        raise ValueError(f"guided_max_distance={s.guided_max_distance}: expected 0 to 1.")


def metric_keys(settings: Settings) -> tuple[str, ...]:
    """The per-image metrics of a run with ``settings``, in the order they are reported."""
    sanity = ("sanity_spearman",) if settings.sanity_check else ()
    evaluated = tuple(k for e in settings.evaluate for k in EVALUATION_METRIC_KEYS[e])
    return METRIC_KEYS + sanity + CELL_METRIC_KEYS + evaluated


def resolve_chunk_size(settings: Settings, per_device_batch: int) -> Settings:
    """``settings`` with automatic chunk sizes made explicit.

    About ``PASSES_PER_DEVICE`` gradient passes at once per device: the images of a device and
    their uniform baselines are vmapped too, so the IG chunk is at most ``PASSES_PER_DEVICE //
    (images per device x baselines)`` points, at least 1 and at most ``steps`` (Blur IG: no
    baselines), split evenly (`loops.even_chunk`: 50 points under a limit of 32 are 2 chunks
    of 25, not 32 + 18 padded to 64 gradient passes). The cell occlusion (forward
    passes only) removes ``PASSES_PER_DEVICE // images per device`` cells of every image at
    once, at least 1 and at most ``max_cells``. Sizes already given stay.
    """
    updates = {}
    if settings.occlusion_chunk is None:
        chunk = PASSES_PER_DEVICE // max(1, per_device_batch)
        updates["occlusion_chunk"] = max(1, min(settings.max_cells, chunk))
    if settings.method in ("ig", "blur_ig") and settings.chunk_size is None:
        uniform = settings.method == "ig" and settings.baseline == "uniform"
        passes_per_point = per_device_batch * (settings.num_baselines if uniform else 1)
        # The chunk that runs (`loops.chunked_schedule` splits evenly), so records say it.
        limit = max(1, PASSES_PER_DEVICE // passes_per_point)
        updates["chunk_size"] = loops.even_chunk(settings.steps, limit)
    return dataclasses.replace(settings, **updates) if updates else settings
