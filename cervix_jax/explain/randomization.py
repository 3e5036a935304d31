"""Randomization tests: does the map depend on what the model learned, and on the class?

Model parameter randomization (Adebayo et al. 2018, "Sanity checks for saliency maps";
Quantus ``MPRT``). The layers of the network are re-initialised from the head down, one
more at each stage (*cascading*), or one at a time with the others left trained
(*independent*), and the maps recomputed at each stage are compared with the trained model's
maps (``similarity.py``). A map that keeps its similarity while the weights are destroyed
is a property of the image (an edge detector), not an explanation of the model.

Layers are the top-level submodules of the Flax model, in the order the model calls them
(``layer_order``), not the order of the keys in ``params``: parameter dicts come back sorted
by name from ``jax.tree`` operations and checkpoints (``Dense_0`` before ``_Head_0``), so the
key order says nothing about depth. Re-initialised weights are the model's own initialisers
(``model.init`` with a fresh key); a re-initialised layer takes all its collections
(``params`` and ``batch_stats``), as Quantus' ``reset_parameters`` also resets running stats.

The stages are not materialised: ``Randomization`` holds the trained tree, one fresh tree and
a [stages, layers] boolean schedule, and each stage's variables are selected inside the
compiled program (``stage_variables``), so memory is two models, not one per stage.

Random-logit test (Sixt et al. 2020, "When explanations lie"; Quantus ``RandomLogit``): the
similarity of the map for the target class to the map for a uniformly drawn other class.
Class-sensitive methods score low.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from cervix_jax.explain import loops, similarity

RANDOMIZATION_KINDS: tuple[str, ...] = ("cascading", "independent")

# explain_fn(images [B, H, W, C], targets [B], *args) -> maps [B, ...]
ExplainFn = Callable[..., jax.Array]


def layer_order(
    model: nn.Module,
    variables: Mapping[str, Any],
    sample_input: jax.Array,
    apply_kwargs: Mapping[str, Any] | None = None,
) -> tuple[str, ...]:
    """Top-level submodules that own variables, input to head, in the order they are called.

    Found by tracing ``model.apply(variables, sample_input, **apply_kwargs)`` (shapes only)
    with a method interceptor that records the first call of each top-level submodule.
    """
    seen: list[str] = []

    def record(next_fun, args, kwargs, context):
        path = context.module.scope.path if context.module.scope is not None else ()
        if path and path[0] not in seen:
            seen.append(path[0])
        return next_fun(*args, **kwargs)

    kwargs = dict(apply_kwargs or {})
    with nn.intercept_methods(record):
        jax.eval_shape(lambda v, x: model.apply(v, x, **kwargs), variables, sample_input)
    owners = {name for tree in variables.values() if isinstance(tree, Mapping) for name in tree}
    return tuple(name for name in seen if name in owners)


@flax.struct.dataclass
class Randomization:
    """Re-initialisation stages of a model (a pytree: pass it through ``jax.jit``).

    Attributes:
      layers: top-level layer names, input to head (``layer_order``).
      fresh: variables from ``model.init`` with a fresh key (same structure as the trained).
      schedule: [stages, layers] bool; stage ``s`` re-initialises ``layers[i]`` where
        ``schedule[s, i]``. Stage 0 is the trained model.
      kind: ``cascading`` or ``independent``.
    """

    layers: tuple[str, ...] = flax.struct.field(pytree_node=False)
    fresh: Any
    schedule: jax.Array
    kind: str = flax.struct.field(pytree_node=False, default="cascading")

    @property
    def stage_names(self) -> tuple[str, ...]:
        """Per stage ``'original'`` or the deepest layer it re-initialises (cascading: the
        layer reached last; independent: the only one). Read on the host, not under jit."""
        schedule = np.asarray(self.schedule)
        return tuple(
            self.layers[int(np.argmax(row))] if row.any() else "original" for row in schedule
        )


def randomization_schedule(
    num_layers: int, kind: str = "cascading", stages: int | None = None
) -> np.ndarray:
    """[stages + 1, num_layers] bool: which layers are re-initialised at each stage.

    Layers are indexed input to head. Cascading stage ``s`` re-initialises the top ``s``
    layers; independent stage ``s`` only layer ``num_layers - s``. Stage 0 changes nothing.
    ``stages`` (None = ``num_layers``, one per layer) keeps that many of these stages, evenly
    spread over depth and always the last (cascading: the whole network re-initialised), so
    that a deep network (DenseNet-121: 64 layers) costs ``stages`` maps, not one per layer.
    """
    if kind not in RANDOMIZATION_KINDS:
        raise ValueError(f"Unknown randomization {kind!r}; expected one of {RANDOMIZATION_KINDS}.")
    if stages is not None and stages < 1:
        raise ValueError(f"stages={stages}: expected at least 1 (or None: one per layer).")
    stage = np.arange(num_layers + 1)[:, None]
    layer = np.arange(num_layers)[None, :]
    full = layer >= num_layers - stage if kind == "cascading" else layer == num_layers - stage
    if stages is None or stages >= num_layers:
        return full
    rows = np.unique(np.round(np.linspace(0, num_layers, stages + 1)).astype(int))
    return full[rows]


def model_randomization(
    model: nn.Module,
    variables: Mapping[str, Any],
    key: jax.Array,
    sample_input: jax.Array,
    *,
    kind: str = "cascading",
    layers: Sequence[str] | None = None,
    stages: int | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
) -> Randomization:
    """The re-initialisation stages of ``model`` with trained ``variables``.

    Args:
      model: the Flax Linen module.
      variables: trained variables (``{'params', 'batch_stats'}``, ...).
      key: PRNG key of the fresh initialisation.
      sample_input: an input batch (e.g. ``[1, H, W, 3]``) to trace and initialise with.
      kind: ``cascading`` (head down, cumulative) or ``independent`` (one layer at a time).
      layers: layer names input to head; None = ``layer_order(model, ...)``.
      stages: how many re-initialised stages (``randomization_schedule``); None = one per
        layer.
      apply_kwargs: keyword arguments of ``model.init``/``model.apply`` (e.g. ``{'train':
        False}`` for the models of ``cervix_jax.models``).
    """
    kwargs = dict(apply_kwargs or {})
    if layers is None:
        layers = layer_order(model, variables, sample_input, kwargs)
    layers = tuple(layers)
    if not layers:
        raise ValueError("the model has no top-level layers with variables to randomize.")
    fresh = jax.jit(lambda k, x: model.init(k, x, **kwargs))(key, sample_input)
    fresh = {c: fresh[c] for c in variables if c in fresh}
    schedule = jnp.asarray(randomization_schedule(len(layers), kind, stages))
    return Randomization(layers=layers, fresh=fresh, schedule=schedule, kind=kind)


def stage_variables(
    variables: Mapping[str, Any], randomization: Randomization, stage: int | jax.Array
) -> dict[str, Any]:
    """The variables of one stage: each scheduled layer taken from ``randomization.fresh``.

    ``stage`` may be traced (selection by ``jnp.where``, inside a compiled loop).
    """
    out: dict[str, Any] = {}
    for collection, tree in variables.items():
        fresh = randomization.fresh.get(collection, {})
        tree = dict(tree)
        for i, name in enumerate(randomization.layers):
            if name in tree and name in fresh:
                pick = randomization.schedule[stage, i]
                tree[name] = jax.tree.map(
                    lambda t, r, pick=pick: jnp.where(pick, r, t), tree[name], fresh[name]
                )
        out[collection] = tree
    return out


@functools.partial(jax.jit, static_argnames=("explain_fn", "measures", "stage_loop"))
def _curve(
    explain_fn, variables, randomization, images, targets, args, reference, *, measures, stage_loop
):
    if reference is None:
        reference = explain_fn(images, targets, variables, *args)

    def at_stage(stage):
        stage_vars = stage_variables(variables, randomization, stage)
        maps = explain_fn(images, targets, stage_vars, *args)
        sims = similarity.map_similarities(reference, maps, measures)
        return jnp.stack([sims[m] for m in measures])

    stages = randomization.schedule.shape[0]
    if loops.unroll_chunks(stage_loop, "stage_loop"):
        rows = [at_stage(s) for s in range(1, stages)]
        later = jnp.stack(rows) if rows else jnp.zeros((0, len(measures), images.shape[0]))
    else:
        later = jax.lax.map(at_stage, jnp.arange(1, stages))
    sims = similarity.map_similarities(reference, reference, measures)
    first = jnp.stack([sims[m] for m in measures])[None]
    curves = jnp.concatenate([first, later], axis=0)  # [stages, measures, B]
    return {m: curves[:, i] for i, m in enumerate(measures)}


def randomization_curve(
    explain_fn: ExplainFn,
    variables: Mapping[str, Any],
    randomization: Randomization,
    images: jax.Array,
    targets: jax.Array,
    *,
    measures: Sequence[str] = similarity.SIMILARITY_MEASURES,
    stage_loop: str = "auto",
    args: Sequence[Any] = (),
    reference_maps: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Similarity of each stage's maps to the trained model's maps (Adebayo et al. 2018).

    Args:
      explain_fn: ``explain_fn(images [B, H, W, C], targets [B], variables, *args) -> maps
        [B, ...]``, pure and jittable; a static argument (create it once).
      variables: trained variables; randomization: from ``model_randomization``.
      images: [B, H, W, C]; targets: [B] int, kept fixed over the stages (Quantus' ``y``).
      measures: names from ``similarity.SIMILARITY_MEASURES``.
      stage_loop: ``'unrolled'`` (stages one after another in one program), ``'scan'``
        (``lax.map`` over stages) or ``'auto'``: unrolled on CPU, where backward passes inside
        XLA loops take a slow path (docs/design.md), scan elsewhere.
      args: further arguments of ``explain_fn`` (e.g. the PRNG key of its baselines, the
        same at every stage).
      reference_maps: the trained model's maps when the caller has them already (saves one
        ``explain_fn`` call); None = computed here.

    Returns:
      ``{measure: [stages, B]}``; row 0 compares the trained maps with themselves (1 unless a
      map is constant), row ``s`` the maps of stage ``s`` (``randomization.stage_names``).
    """
    loops.unroll_chunks(stage_loop, "stage_loop")  # validates the name before tracing
    for m in measures:
        if m not in similarity.SIMILARITY_MEASURES:
            raise ValueError(
                f"Unknown similarity {m!r}; expected one of {similarity.SIMILARITY_MEASURES}."
            )
    return _curve(
        explain_fn,
        variables,
        randomization,
        jnp.asarray(images, jnp.float32),
        jnp.asarray(targets, jnp.int32),
        tuple(args),
        reference_maps,
        measures=tuple(measures),
        stage_loop=stage_loop,
    )


def random_other_class(key: jax.Array, targets: jax.Array, num_classes: int) -> jax.Array:
    """[B] classes drawn uniformly from the ``num_classes - 1`` classes other than ``targets``."""
    if num_classes < 2:
        raise ValueError(f"the random-logit test needs num_classes >= 2, got {num_classes}.")
    targets = jnp.asarray(targets, jnp.int32)
    shift = jax.random.randint(key, targets.shape, 1, num_classes, jnp.int32)
    return (targets + shift) % num_classes


@functools.partial(jax.jit, static_argnames=("explain_fn", "num_classes", "measures"))
def _random_logit(explain_fn, images, targets, key, args, maps, *, num_classes, measures):
    others = random_other_class(key, targets, num_classes)
    if maps is None:
        maps = explain_fn(images, targets, *args)
    other_maps = explain_fn(images, others, *args)
    return {**similarity.map_similarities(maps, other_maps, measures), "other_class": others}


def random_logit(
    explain_fn: ExplainFn,
    images: jax.Array,
    targets: jax.Array,
    key: jax.Array,
    num_classes: int,
    *,
    measures: Sequence[str] = ("ssim",),
    args: Sequence[Any] = (),
    maps: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Random-logit test (Sixt et al. 2020; Quantus ``RandomLogit``, default SSIM).

    Args:
      explain_fn: ``explain_fn(images, targets, *args) -> maps [B, ...]`` (static).
      images: [B, H, W, C]; targets: [B] int (e.g. the predicted classes).
      key: PRNG key of the other classes; num_classes: number of classes.
      measures: names from ``similarity.SIMILARITY_MEASURES``.
      maps: the maps of ``targets`` when the caller has them already; None = computed here.

    Returns:
      ``{measure: [B]}`` and ``other_class`` [B], the class each map was compared with.
    """
    for m in measures:
        if m not in similarity.SIMILARITY_MEASURES:
            raise ValueError(
                f"Unknown similarity {m!r}; expected one of {similarity.SIMILARITY_MEASURES}."
            )
    return _random_logit(
        explain_fn,
        jnp.asarray(images, jnp.float32),
        jnp.asarray(targets, jnp.int32),
        key,
        tuple(args),
        maps,
        num_classes=int(num_classes),
        measures=tuple(measures),
    )
