"""Self-contained HTML pages of runs and studies: plain HTML, CSS and a little JavaScript.

Pages are pure functions of files on disk (a training workdir, a study's ``study.json``): no
JAX, no model, nothing recomputed. They open from disk in any browser with no network (the
stylesheet, script and plots are inlined; attribution panels are linked by relative paths).

- ``write_run_report(workdir) -> Path``: ``WORKDIR/report.html`` (configuration, training
  curves, confusion matrix, per-class table, and a gallery per attributions folder:
  thumbnails sortable and filterable by class, correctness and any metric, a detail view per
  image). ``run_report_html(workdir) -> str`` is the page itself.
- ``write_study_report(workdir, study) -> Path``: ``WORKDIR/study.html`` from the
  ``study.json`` content of ``cervix_jax.study``; ``study_report_html(study, workdir)``.
- ``METRIC_INFO`` / ``metric_info(key)``: display name, better direction and meaning of each
  metric key; ``ordered_metrics``, ``per_image_keys`` (the per-image metrics of an
  ``attribution_metrics.json``).

Nothing in ``train`` or ``explain`` imports this package: entry points (main.py, tools/) and
``cervix_jax.study`` call it after writing the files it reads.
"""

from cervix_jax.reports.labels import (
    METRIC_INFO,
    MetricInfo,
    metric_info,
    ordered_metrics,
    per_image_keys,
)
from cervix_jax.reports.run_page import REPORT_HTML, run_report_html, write_run_report
from cervix_jax.reports.study_page import STUDY_HTML, study_report_html, write_study_report

__all__ = [
    "METRIC_INFO",
    "REPORT_HTML",
    "STUDY_HTML",
    "MetricInfo",
    "metric_info",
    "ordered_metrics",
    "per_image_keys",
    "run_report_html",
    "study_report_html",
    "write_run_report",
    "write_study_report",
]
