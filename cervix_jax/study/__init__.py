"""The paper's study as one command: a grid of cross-validated runs, explained and compared.

``tools/study.py`` (and ``tools/cross_validate.py`` for one config) are the faces; this package
is the logic (docs/design.md, "cervix_jax.study"):

- ``crossval``: one config over K grouped folds (``cross_validate``, ``run_fold``: train,
  resume, or skip a finished run; ``summarize_folds``, ``cv_markdown``).
- ``grid``: ``StudySpec`` (models x variants x folds, ImageNet weights, ``ExplainSpec``),
  ``make_spec`` (every flag checked), ``Cell`` and ``cell_config``, ``parse_only``.
- ``runner``: ``run_grid`` (``check_plan`` first, then each cell trained, explained with the
  paper's IG protocol and given its ``report.html``).
- ``collect``: ``collect`` (``study.json`` content from whatever has finished) and
  ``write_study`` (``study.json``, ``study.md``, ``study.html``).
- ``statistics``: ``describe`` (mean, sd, t interval over folds), ``paired_t`` (with the
  Nadeau-Bengio correction), ``paired_bootstrap`` (folds and images).
- ``paper``: the paper's single-split numbers, printed beside ours (``paper_reference``).

The train wing does not import this package (it is downstream of ``train`` and ``explain``).
"""

from cervix_jax.study.collect import collect, verdict, write_study
from cervix_jax.study.crossval import (
    SUMMARY_KEYS,
    cross_validate,
    cv_markdown,
    fold_config,
    format_interval,
    run_fold,
    summarize_folds,
)
from cervix_jax.study.errors import StudyError
from cervix_jax.study.grid import (
    PAPER_MODELS,
    PAPER_PRETRAINED,
    VARIANTS,
    Cell,
    ExplainSpec,
    StudySpec,
    cell_config,
    load_spec,
    make_spec,
    parse_only,
)
from cervix_jax.study.paper import PAPER_ACCURACY, paper_reference
from cervix_jax.study.runner import check_plan, run_grid
from cervix_jax.study.statistics import (
    classification_statistic,
    describe,
    mean_statistic,
    paired_bootstrap,
    paired_t,
    t_quantile,
)

__all__ = [
    "PAPER_ACCURACY",
    "PAPER_MODELS",
    "PAPER_PRETRAINED",
    "SUMMARY_KEYS",
    "VARIANTS",
    "Cell",
    "ExplainSpec",
    "StudyError",
    "StudySpec",
    "cell_config",
    "check_plan",
    "classification_statistic",
    "collect",
    "cross_validate",
    "cv_markdown",
    "describe",
    "fold_config",
    "format_interval",
    "load_spec",
    "make_spec",
    "mean_statistic",
    "paired_bootstrap",
    "paired_t",
    "paper_reference",
    "parse_only",
    "run_fold",
    "run_grid",
    "summarize_folds",
    "t_quantile",
    "verdict",
    "write_study",
]
