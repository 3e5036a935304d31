"""``study.html``: a study's results table, paired comparisons, per-class bars and its runs.

Made from the ``study.json`` content (``cervix_jax.study.collect``) and nothing else; each run
is linked to its own ``report.html`` by a relative path.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import numpy as np

from cervix_jax import files
from cervix_jax.reports import figures
from cervix_jax.reports.labels import METRIC_INFO, metric_info, ordered_metrics
from cervix_jax.reports.page import data_uri, esc, fmt, page, section, table

STUDY_HTML = "study.html"
CLASSIFICATION = ("accuracy", "balanced_accuracy", "macro_f1")


def _metric_keys(study: dict) -> list[str]:
    keys = {k for g in study["groups"] for k in g["attribution"]}
    return list(CLASSIFICATION) + ordered_metrics(keys)


def _stats(group: dict, key: str) -> dict | None:
    if group["summary"] is None:
        return None
    return group["summary"].get(key) if key in CLASSIFICATION else group["attribution"].get(key)


def _tabs(prefix: str, keys: list[str], panels: dict[str, str]) -> str:
    active = ' class="active"'
    buttons = "".join(
        f'<button type="button" data-tab="{prefix}-{k}"{active if i == 0 else ""}>'
        f"{esc(metric_info(k).label)}</button>"
        for i, k in enumerate(keys)
    )
    bodies = "".join(
        f'<div class="tab-panel" id="{prefix}-{k}"{" hidden" if i else ""}>{panels[k]}</div>'
        for i, k in enumerate(keys)
    )
    return f'<div class="tabs">{buttons}</div>{bodies}'


def _result_cell(group: dict, key: str, best: bool) -> str:
    stats = _stats(group, key)
    if not stats or stats.get("mean") is None:
        return '<span class="status-missing">missing</span>'
    value = f"{stats['mean']:.3f} ± {stats['std']:.3f}"
    value = f"<b>{value}</b>" if best else value
    ci = (
        f"95% CI [{stats['ci_low']:.3f}, {stats['ci_high']:.3f}]"
        if stats.get("ci_low") is not None
        else "no CI (one fold)"
    )
    folds = stats["n"]
    images = f" · {group['num_test_images']:,} images" if key in CLASSIFICATION else ""
    html = f'{value}<span class="sub">{ci} · {folds} folds{images}</span>'
    ref = group.get("paper")
    if key == "accuracy" and ref:
        n = ref["num_test_images"]
        html += (
            f'<span class="ref" title="{esc(ref["citation"])}">paper: '
            f"{100 * ref['accuracy']:.2f}% · 1 split · "
            f"{f'{n} test images' if n else 'test size not stated'}</span>"
        )
    return html


def results_panel(study: dict, key: str) -> str:
    """The models x variants table of one metric (the best mean of each variant in bold)."""
    spec = study["spec"]
    by = {(g["model"], g["variant"]): g for g in study["groups"]}
    higher = metric_info(key).higher_is_better
    best = {}
    for v in spec["variants"]:
        means = {m: (_stats(by[(m, v)], key) or {}).get("mean") for m in spec["models"]}
        means = {m: x for m, x in means.items() if x is not None}
        if means and higher is not None and len(means) > 1:
            best[v] = (max if higher else min)(means, key=means.get)
    rows = [
        [f"<b>{esc(m)}</b>"]
        + [_result_cell(by[(m, v)], key, best.get(v) == m) for v in spec["variants"]]
        for m in spec["models"]
    ]
    note = esc(metric_info(key).description)
    direction = {True: " Higher is better.", False: " Lower is better.", None: ""}[higher]
    head = ["Model"] + [esc(v) for v in spec["variants"]]
    return f'<p class="note">{note}{direction}</p>' + table(head, rows)


def _interval(d: dict | None, low: str = "ci_low", high: str = "ci_high") -> str:
    if not d or d.get(low) is None:
        return "—"
    return f"[{d[low]:+.3f}, {d[high]:+.3f}]"


def comparisons_panel(study: dict, key: str) -> str:
    """Paired comparisons of one metric: the table and a forest plot."""
    rows_of = [c for c in study["comparisons"] if c["metric"] == key]
    if not rows_of:
        return '<p class="note">No pair of models has finished runs on common folds.</p>'
    rows, labels, means, cis, boots = [], [], [], [], []
    for c in rows_of:
        t, boot = c["paired_t"], c["bootstrap"]
        cls = "yes" if c["supported"] else "no"
        rows.append(
            [
                esc(c["variant"]),
                f"{esc(c['b'])} − {esc(c['a'])}",
                str(len(c["folds"])),
                fmt(t["mean"], 3) if t["mean"] is None else f"{t['mean']:+.3f}",
                _interval(t),
                _interval(t, "corrected_ci_low", "corrected_ci_high"),
                _interval(boot),
                f'<span class="verdict {cls}">{esc(c["verdict"])}</span>',
            ]
        )
        labels.append(f"{c['variant']}: {c['b']} − {c['a']}")
        means.append(t["mean"])
        corrected = t.get("corrected_ci_low")
        cis.append(None if corrected is None else (corrected, t["corrected_ci_high"]))
        boots.append(None if boot is None else (boot["ci_low"], boot["ci_high"]))
    head = [
        "Variant",
        "b − a",
        "Folds",
        "Mean diff",
        "Paired t 95% CI",
        "Corrected t 95% CI",
        "Bootstrap 95% CI",
        "Verdict",
    ]
    png = figures.forest(labels, means, cis, boots)
    numeric = [False, False, True, True, True, True, True, False]
    return table(head, rows, numeric=numeric) + (
        f'<img class="plot" src="{data_uri(png)}" alt="forest plot">'
    )


def per_class_figures(study: dict) -> str:
    """Per variant, per-class F1 bars of every model (mean ± sd over folds)."""
    spec, names = study["spec"], study["class_names"]
    by = {(g["model"], g["variant"]): g for g in study["groups"]}
    out = []
    for v in spec["variants"]:
        means = np.full((len(spec["models"]), len(names)), np.nan)
        stds = np.full_like(means, np.nan)
        for i, m in enumerate(spec["models"]):
            summary = by[(m, v)]["summary"]
            for j, name in enumerate(names):
                if summary is not None:
                    means[i, j] = summary["per_class_f1"][name]["mean"]
                    stds[i, j] = summary["per_class_f1"][name]["std"]
        png = figures.per_class_bars(names, spec["models"], means, stds, f"Variant: {v}")
        out.append(
            f'<figure><img class="plot" src="{data_uri(png)}" alt="per-class F1 {v}"></figure>'
        )
    return f'<div class="figs">{"".join(out)}</div>'


def runs_table(study: dict, workdir: Path) -> str:
    """Every cell with its status, test accuracy and a link to its page."""
    spec = study["spec"]
    rows = []
    for m in spec["models"]:
        for v in spec["variants"]:
            cells = []
            for k in spec["folds"]:
                run = study["runs"][f"{m}/{v}/{k}"]
                status = run["status"]
                page_path = Path(run["dir"]) / "report.html"
                if (workdir / page_path).is_file():
                    link = quote(page_path.as_posix())
                    acc = fmt(run["accuracy"], 3)
                    text = f'<a href="{link}">{acc}</a>'
                else:
                    text = "—"
                css = "status-done" if status == "done" else "status-missing"
                if status in ("not explained", "interrupted"):
                    css = "status-partial"
                cells.append(f'{text}<span class="sub {css}">{esc(status)}</span>')
            rows.append([esc(m), esc(v), *cells])
    head = ["Model", "Variant", *[f"Fold {k}" for k in spec["folds"]]]
    return table(head, rows, numeric=[False, False] + [True] * len(spec["folds"]))


def _banner(study: dict) -> str:
    notes = []
    if study.get("synthetic"):
        notes.append(
            (
                "",
                "Trained and tested on the <b>synthetic SIPaKMeD</b>: these numbers show that "
                "the machinery works; they say nothing about cytology.",
            )
        )
    missing = study["missing"]
    if missing:
        shown = ", ".join(missing[:6]) + (
            f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        )
        notes.append(
            (
                "",
                f"<b>{len(missing)} of {len(study['runs'])} cells unfinished</b> "
                f"({esc(shown)}); the statistics use the folds that are there. Re-run the same "
                "command to finish them.",
            )
        )
    weights = sorted({(g["model"], g["init_from"]) for g in study["groups"] if g["init_from"]})
    if weights:
        text = "; ".join(f"{m} from {esc(w)}" for m, w in weights)
        notes.append((" info", f"Fine-tuned from ImageNet weights: {text}."))
    scratch = sorted({g["model"] for g in study["groups"] if not g["init_from"]})
    if scratch:
        notes.append(
            (
                " info",
                "Trained from scratch (no ImageNet weights): " + esc(", ".join(scratch)) + ".",
            )
        )
    return "".join(f'<div class="banner{cls}">{text}</div>' for cls, text in notes)


def _methods(study: dict) -> str:
    spec, explain = study["spec"], study["spec"]["explain"]
    protocol = (
        f"Integrated gradients of the predicted class's probability, {explain['steps']} "
        f"left-Riemann steps, {explain['num_baselines']} uniform random baselines"
        + (
            " (the paper's protocol)."
            if (explain["steps"], explain["num_baselines"]) == (50, 10)
            else " (fewer than the paper's 50 x 10)."
        )
    )
    items = [
        f"<li><b>Folds.</b> Grouped, stratified {spec['num_folds']}-fold split; run k tests on "
        "fold k and validates on fold k+1; a full image and its crops share a fold.</li>",
        f"<li><b>Explanations.</b> {esc(protocol)}</li>",
        f"<li><b>Statistics.</b> {esc(study.get('methods', ''))}</li>",
        f"<li><b>Bootstrap.</b> {spec['bootstrap_samples']} replicates, seed {spec['seed']}.</li>",
    ]
    metrics = "".join(
        f"<li><b>{esc(i.label)}</b>: {esc(i.description)}</li>" for i in METRIC_INFO.values()
    )
    return (
        f"<ul>{''.join(items)}</ul><details><summary>Metrics</summary><ul>{metrics}</ul></details>"
    )


def study_report_html(study: dict, workdir: str | os.PathLike) -> str:
    """The page (see the module docstring); ``workdir`` resolves the runs' pages."""
    workdir = Path(workdir)
    spec, keys = study["spec"], _metric_keys(study)
    results = _tabs("res", keys, {k: results_panel(study, k) for k in keys})
    compared = [k for k in keys if any(c["metric"] == k for c in study["comparisons"])]
    paired = _tabs("cmp", compared, {k: comparisons_panel(study, k) for k in compared})
    body = [
        _banner(study),
        section(
            "Results",
            results,
            anchor="results",
            note="Mean ± sd over folds; 95% CI: "
            "Student-t over folds. The paper's single-split accuracy is shown for reference.",
        ),
        section(
            "Paired comparisons",
            paired or "<p>None yet.</p>",
            anchor="paired",
            note="Difference b − a on the same folds and test images; a difference is shown "
            "when the corrected t interval and the bootstrap interval both exclude 0.",
        ),
        section(
            "Per class", per_class_figures(study) if study["class_names"] else "", anchor="classes"
        ),
        section(
            "Runs",
            runs_table(study, workdir),
            anchor="runs",
            note="Test accuracy of each run; click for its report and explanations.",
        ),
        section("Methods", _methods(study), anchor="methods"),
    ]
    nav = [
        ("results", "Results"),
        ("paired", "Paired comparisons"),
        ("classes", "Per class"),
        ("runs", "Runs"),
        ("methods", "Methods"),
    ]
    chips = [
        f"<b>{len(spec['models'])}</b> models × <b>{len(spec['variants'])}</b> variants × "
        f"<b>{len(spec['folds'])}</b> of {spec['num_folds']} folds",
        f"<b>{len(study['runs']) - len(study['missing'])}</b>/{len(study['runs'])} runs done",
    ]
    if study.get("synthetic"):
        chips.append('<span class="warn">synthetic data</span>')
    return page(f"Study: {workdir.absolute().name}", chips, nav, "".join(body))


def write_study_report(workdir: str | os.PathLike, study: dict) -> Path:
    """Writes ``WORKDIR/study.html`` (atomically) and returns its path."""
    path = Path(workdir) / STUDY_HTML
    files.atomic_write_text(path, study_report_html(study, workdir))
    return path
