"""The attribution methods behind ``Settings.method``, with the noise tunnel around any of them.

`AttributionMethod` (a frozen dataclass of the model, its input normalisation and the
settings) is the one pure function ``maps = method(images [B, S, S, 3], targets [B],
variables, keys [B])`` that the step, the sanity check and every evaluation call, so all of
them see the same maps; being hashable, it is a static argument of the evaluation drivers
(``randomization_curve``, ``random_logit``, ``batched_max_sensitivity``).
`AttributionMethod.run` also returns the completeness error of the path methods and where
their path starts (what infidelity divides the perturbation by).

Randomness is per image: row ``i``'s uniform baselines come from ``keys[i]``, so copies of an
image (noisy, perturbed, at another randomization stage) that carry its key keep its
baselines. In a noise tunnel the noise comes from ``keys[i]`` and the method inside it gets
``fold_in(keys[i], 1)``; ``method='smoothgrad'`` (the gradient in a ``smoothgrad`` tunnel)
keeps the noise it had before the tunnel was generalised. The copies of a tunnel go through
the method as rows of its batch (``loops.over_copies``), never under a ``vmap`` of their own.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from cervix_jax import data as data_lib
from cervix_jax.explain import baselines as baselines_lib
from cervix_jax.explain import saliency, scores, targets
from cervix_jax.explain.attention import attention_maps
from cervix_jax.explain.gradcam import gradcam
from cervix_jax.explain.integrated_gradients import IGResult, integrated_gradients_batch
from cervix_jax.explain.noise_tunnel import batched_noise_tunnel
from cervix_jax.explain.path_methods import (
    blur_integrated_gradients,
    blur_path_start,
    guided_integrated_gradients,
)
from cervix_jax.explain.settings import PASSES_PER_DEVICE, Settings


class MethodOutput(NamedTuple):
    """What `AttributionMethod.run` returns for a batch of B images.

    Attributes:
      maps: [B, S, S, 3] (pixel-space attributions) or [B, S, S] (``gradcam``, ``attention``).
      completeness: [B] relative completeness error of a path method without a noise tunnel
        (``scores.completeness_relative_error``); NaN otherwise.
      start: [B, S, S, 3] where a path method's path starts (the mean of its baselines; Blur
        IG's blurred image), None for the other methods.
    """

    maps: jax.Array
    completeness: jax.Array
    start: jax.Array | None


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


def image_keys(key: jax.Array, count: int) -> jax.Array:
    """[count] PRNG keys, one per image of a batch, from the batch's ``key``."""
    return jax.random.split(key, count)


def loops_over_passes(settings: Settings) -> bool:
    """Whether one map of ``settings`` takes many gradient passes (a path or a tunnel)."""
    tunnelled = settings.noise_tunnel != "none" or settings.method == "smoothgrad"
    return settings.is_path_method or tunnelled


def copies_together(num_copies: int, settings: Settings) -> int:
    """Copies of an image (noisy, perturbed) whose maps of ``settings`` are computed at once:
    one when each map loops over gradient passes itself (its chunks already fill
    ``PASSES_PER_DEVICE``), else up to ``PASSES_PER_DEVICE``."""
    return 1 if loops_over_passes(settings) else min(num_copies, PASSES_PER_DEVICE)


@dataclasses.dataclass(frozen=True)
class AttributionMethod:
    """``Settings.method`` (with its noise tunnel) of ``model`` as one pure function.

    ``method(images [B, S, S, 3] pixel space, targets [B], variables, keys [B]) -> maps``.
    ``normalize`` None = ``cervix_jax.data.normalize``.
    """

    model: Any
    normalize: Callable[[jax.Array], jax.Array] | None
    settings: Settings

    @property
    def score_fn(self) -> Callable[..., jax.Array]:
        """``f(image, target, variables)``: the attributed score (``settings.score``)."""
        logits_fn = pixel_logits_fn(self.model, self.normalize)
        return targets.class_score_fn(logits_fn, self.settings.score)

    def __call__(self, images, target_classes, variables, keys) -> jax.Array:
        return self.run(images, target_classes, variables, keys).maps

    def run(self, images, target_classes, variables, keys) -> MethodOutput:
        """Maps, completeness error and path start of a batch (`MethodOutput`); ``keys``
        [B] PRNG keys, one per image."""
        s = self.settings
        kind = "smoothgrad" if s.method == "smoothgrad" else s.noise_tunnel
        if kind == "none":
            return self._untunnelled(images, target_classes, variables, keys)
        inner_method = "gradient" if s.method == "smoothgrad" else s.method
        inner_settings = dataclasses.replace(s, method=inner_method, noise_tunnel="none")
        inner = dataclasses.replace(self, settings=inner_settings)
        inner_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        maps = batched_noise_tunnel(
            inner,
            images,
            keys,
            target_classes,
            kind=kind,
            num_samples=s.noise_samples,
            noise_level=s.noise_level,
            together=copies_together(s.noise_samples, inner_settings),
            args=(variables,),
            row_args=(inner_keys,),
        )
        undefined = jnp.full(images.shape[0], jnp.nan, jnp.float32)
        return MethodOutput(maps, undefined, inner.path_start(images, inner_keys))

    def path_start(self, images, keys) -> jax.Array | None:
        """[B, S, S, 3] where the path of a path method starts; None for the others."""
        s = self.settings
        if s.method == "blur_ig":
            return blur_path_start(images, s.blur_max_sigma)
        if s.method in ("ig", "guided_ig"):
            return self._baselines(images, keys).mean(axis=1)
        return None

    def _baselines(self, images, keys) -> jax.Array:
        """[B, K, S, S, 3]; uniform ones from each image's key (``make_baselines`` draws
        image ``i``'s from ``split(key, B)[i]``: the same numbers for ``keys = split(key,
        B)``)."""
        s = self.settings
        if s.baseline == "uniform":
            draw = lambda k, image: baselines_lib.uniform(k, image, s.num_baselines)
            return jax.vmap(draw)(keys, images)
        return baselines_lib.make_baselines(s.baseline, images, num=s.num_baselines)

    def _untunnelled(self, images, target_classes, variables, keys) -> MethodOutput:
        s = self.settings
        undefined = jnp.full(images.shape[0], jnp.nan, jnp.float32)
        if s.is_path_method:
            result = self._path_integral(images, target_classes, variables, keys)
            relative = scores.completeness_relative_error(
                result.completeness_error, result.score_difference
            )
            return MethodOutput(result.attributions, relative, self.path_start(images, keys))
        if s.method == "gradient":
            maps = saliency.input_gradients(self.score_fn, images, target_classes, (variables,))
        elif s.method == "attention":
            # A soft mask never reaches 0 (a sigmoid; 0.5 gates nothing), so its level is no
            # evidence: each image's map is scored and shown from its own minimum.
            maps = attention_maps(self.model, variables, images, preprocess=self._normalize)
            maps = maps - maps.min(axis=(1, 2), keepdims=True)
        else:
            maps = gradcam(
                self.model, variables, images, target_classes, preprocess=self._normalize
            )
        return MethodOutput(maps, undefined, None)

    @property
    def _normalize(self) -> Callable[[jax.Array], jax.Array]:
        return data_lib.normalize if self.normalize is None else self.normalize

    def _path_integral(self, images, target_classes, variables, keys) -> IGResult:
        s = self.settings
        f, f_args = self.score_fn, (variables,)
        if s.method == "blur_ig":
            return blur_integrated_gradients(
                f,
                images,
                target_classes,
                max_sigma=s.blur_max_sigma,
                steps=s.steps,
                method=s.ig_method,
                chunk_size=s.chunk_size,
                f_args=f_args,
            )
        bases = self._baselines(images, keys)  # [B, K, S, S, 3]
        if s.method == "ig":
            return integrated_gradients_batch(
                f,
                images,
                bases,
                target_classes,
                steps=s.steps,
                method=s.ig_method,
                chunk_size=s.chunk_size,
                f_args=f_args,
            )
        # Guided IG takes one baseline per image: the K baselines become K rows per image,
        # averaged afterwards as integrated_gradients_batch averages them.
        batch, k = bases.shape[:2]
        result = guided_integrated_gradients(
            f,
            jnp.repeat(images, k, axis=0),
            bases.reshape(batch * k, *images.shape[1:]),
            jnp.repeat(target_classes, k, axis=0),
            steps=s.steps,
            fraction=s.guided_fraction,
            max_distance=s.guided_max_distance,
            f_args=f_args,
        )
        return IGResult(*(a.reshape(batch, k, *a.shape[1:]).mean(axis=1) for a in result))
