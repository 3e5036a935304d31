"""Attribution over a split of a training workdir, or image files: the public entry point.

The glue between checkpoints and the mathematics (docs/design.md) lives in modules named for
what they do; this module gathers the names callers use (tools/attribute.py,
``cervix_jax.load(...).explain``, the bench scripts, the tests):

- ``settings``: `Settings` (what to attribute and evaluate; hashable, checks itself),
  ``ATTRIBUTION_METHODS``, ``EVALUATIONS``, the metric keys, `resolve_chunk_size`.
- ``methods``: `AttributionMethod`, the one pure function ``maps = method(images, targets,
  variables, key)`` behind ``Settings.method``, with the noise tunnel around any method.
- ``step``: `explain_step`, everything about one batch in one jitted program (maps, input
  gradient, deletion/insertion, localisation, cell-level scores, sanity check, evaluations).
- ``evaluation``: the evaluations of ``Settings.evaluate`` (issue 14) inside the step.
- ``explainer``: `Explainer` / `make_explainer`, a trained model on the ``('data',)`` mesh.
- ``runs``: `attribute_split`, `attribute_files` and `compare_methods` (checkpoint, images,
  batches, files).
- ``summary``, ``markdown``, ``outputs``: the content of ``attribution_metrics.json`` and
  ``methods_table.json``, their Markdown, and the files in OUT (``FIGURES``).

Baselines. The default is the paper's: uniform random images in [0, 255], averaged over
``num_baselines`` draws. A black baseline is 10x cheaper but a poor fit for cytology: the
slide background is bright, ``x - 0`` is largest there, and IG spreads over it (measured on the
``make demo`` model in docs/performance.md, "Attribution tool"). Blurred baselines differ
from the image mostly around the cells, which inflates localization even for random weights
(tests/explain/test_batch.py).
"""

from __future__ import annotations

from cervix_jax.explain.evaluation import RANDOMIZATION_MEASURES
from cervix_jax.explain.explainer import Explainer, make_explainer
from cervix_jax.explain.markdown import methods_table_markdown, metrics_markdown
from cervix_jax.explain.methods import AttributionMethod, pixel_logits_fn
from cervix_jax.explain.outputs import EVALUATION_FIGURES, FIGURES
from cervix_jax.explain.runs import attribute_files, attribute_split, compare_methods, run_folder
from cervix_jax.explain.settings import (
    ATTRIBUTION_METHODS,
    CELL_METRIC_KEYS,
    EVALUATION_METRIC_KEYS,
    EVALUATIONS,
    METRIC_KEYS,
    NOISE_TUNNELS,
    PASSES_PER_DEVICE,
    PATH_METHODS,
    Settings,
    metric_keys,
    parse_evaluations,
    resolve_chunk_size,
)
from cervix_jax.explain.step import OUTLINE_KEYS, explain_step
from cervix_jax.explain.summary import (
    aggregates,
    method_label,
    methods_table,
    metric_names,
    summarize,
)

__all__ = [
    "ATTRIBUTION_METHODS",
    "CELL_METRIC_KEYS",
    "EVALUATIONS",
    "EVALUATION_FIGURES",
    "EVALUATION_METRIC_KEYS",
    "FIGURES",
    "METRIC_KEYS",
    "NOISE_TUNNELS",
    "OUTLINE_KEYS",
    "PASSES_PER_DEVICE",
    "PATH_METHODS",
    "RANDOMIZATION_MEASURES",
    "AttributionMethod",
    "Explainer",
    "Settings",
    "aggregates",
    "attribute_files",
    "attribute_split",
    "compare_methods",
    "explain_step",
    "make_explainer",
    "method_label",
    "methods_table",
    "methods_table_markdown",
    "metric_keys",
    "metric_names",
    "metrics_markdown",
    "parse_evaluations",
    "pixel_logits_fn",
    "resolve_chunk_size",
    "run_folder",
    "summarize",
]
