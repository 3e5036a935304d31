"""``report.html`` of a training workdir, made from its files only.

Reads ``report.json`` (test metrics, confusion matrix), ``config.json``, ``plots/`` (training
curves, made by the train wing), ``predictions_test.npz`` and every attributions folder directly
under the workdir (``gallery.py``). Nothing is computed again but the layout; a missing file
leaves its section out (a run still training has no report yet).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cervix_jax import files
from cervix_jax.reports.gallery import find_attribution_dirs, gallery_html
from cervix_jax.reports.page import data_uri, esc, fmt, page, section, table, tiles

REPORT_HTML = "report.html"


def _flatten(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _summary(report: dict) -> str:
    n = report["num_examples"]
    correct = round(report["accuracy"] * n)
    return tiles(
        [
            ("Accuracy", fmt(report["accuracy"], 4, percent=True), f"{correct} of {n} correct"),
            ("Balanced accuracy", fmt(report["balanced_accuracy"], 4, percent=True), "mean recall"),
            ("Macro F1", fmt(report["macro_f1"], 3), "mean F1 over classes"),
            (
                "Test loss",
                fmt(report.get("loss"), 3),
                f"checkpoint step {report['checkpoint_step']}",
            ),
        ]
    )


def _per_class(report: dict) -> str:
    rows = []
    for name in report["class_names"]:
        pc = report["per_class"][name]
        bar = f'<span class="bar" style="width:{100 * pc["f1"]:.1f}%"></span>'
        rows.append(
            [
                esc(name),
                fmt(pc["precision"]),
                fmt(pc["recall"]),
                fmt(pc["f1"]),
                f'<div class="barcell">{bar}</div>',
                fmt(pc["support"]),
            ]
        )
    headers = ["Class", "Precision", "Recall", "F1", "", "Support"]
    return table(headers, rows, numeric=[False, True, True, True, False, True])


def confusion_table(cm: list[list[int]], class_names) -> str:
    """Counts with the row share as cell shade (rows = truth, columns = prediction)."""
    head = "".join(f'<th class="num" title="{esc(c)}">{esc(c[:5])}</th>' for c in class_names)
    body = ""
    for name, row in zip(class_names, cm, strict=True):
        total = max(sum(row), 1)
        cells = ""
        for j, count in enumerate(row):
            share = count / total
            shade = (" diag" if class_names[j] == name else "") + (" dark" if share > 0.55 else "")
            cells += (
                f'<td class="num cm{shade}" style="--s:{share:.3f}" '
                f'title="{esc(name)} → {esc(class_names[j])}: {count} ({share:.0%})">{count}</td>'
            )
        body += f"<tr><th>{esc(name)}</th>{cells}</tr>"
    return (
        '<table class="confusion"><thead><tr><th>truth \\ predicted</th>'
        f"{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _config(config: dict) -> str:
    rows = [
        [f"<code>{esc(k)}</code>", f"<code>{esc(json.dumps(v))}</code>"]
        for k, v in _flatten(config)
    ]
    settings = table(["Key", "Value"], rows)
    return f"<details><summary>All {len(rows)} settings</summary>{settings}</details>"


def _title_and_chips(workdir: Path, report: dict | None, config: dict | None):
    """``model · variant · fold k`` and the chips under it (workdir, split scheme, data)."""
    source, config = report or {}, config or {}
    model = source.get("model") or config.get("model", {}).get("name", "?")
    variant = source.get("variant") or config.get("data", {}).get("variant", "?")
    title = f"Run: {model} · {variant}"
    scheme = config.get("data", {}).get("split_scheme")
    if scheme == "kfold" and source.get("fold") is not None:
        title += f" · fold {source['fold']}"
    chips = [f"workdir <b>{esc(workdir.absolute().name)}</b>"]
    if scheme == "kfold":
        chips.append(f"<b>{esc(config['data'].get('num_folds'))}</b>-fold split")
    elif scheme:
        chips.append(f"<b>{esc(scheme)}</b> split")
    if source.get("synthetic", config.get("data", {}).get("synthetic")):
        chips.append('<span class="warn">synthetic data</span>')
    return title, chips


def run_report_html(workdir: str | os.PathLike, extra_attributions=()) -> str:
    """The page of the run in ``workdir`` (see the module docstring); ``extra_attributions``:
    attributions folders elsewhere to show too (linked relative to the page)."""
    workdir = Path(workdir)
    report = _read_json(workdir / "report.json")
    config = _read_json(workdir / "config.json")
    body, nav = [], []

    def add(anchor, title, html, note=""):
        body.append(section(title, html, anchor=anchor, note=note))
        nav.append((anchor, title))

    if report is not None:
        add(
            "results",
            "Test results",
            _summary(report),
            note=f"{report['num_examples']} images "
            f"of the {esc(report.get('split', 'test'))} split, best-validation checkpoint.",
        )
    curves = workdir / "plots" / "training_curves.png"
    if curves.is_file():
        add(
            "curves",
            "Training",
            f'<img class="plot narrow" src="{data_uri(curves)}" alt="training curves">',
        )
    if report is not None:
        names = report["class_names"]
        add(
            "confusion",
            "Confusion matrix",
            confusion_table(report["confusion_matrix"], names),
            note="Counts; the shade is the share of the true class's row.",
        )
        add("classes", "Per class", _per_class(report))
    class_names = report["class_names"] if report else []
    folders = find_attribution_dirs(workdir)
    folders += [
        Path(f)
        for f in extra_attributions
        if Path(f).resolve() not in {g.resolve() for g in folders}
        and (Path(f) / "attribution_metrics.json").is_file()
    ]
    for folder in folders:
        add(
            f"gallery-{folder.name}",
            f"Explanations: {folder.name}",
            gallery_html(folder, workdir, class_names),
            note="Click an image for its full panel and numbers.",
        )
    if config is not None:
        add("config", "Configuration", _config(config))
    if not body:
        body.append(
            section("No results yet", "<p>This workdir has no report.json.</p>", anchor="empty")
        )
    title, chips = _title_and_chips(workdir, report, config)
    return page(title, chips, nav, "".join(body) + _detail_dialog())


def _detail_dialog() -> str:
    return (
        '<div id="detail" class="modal" hidden role="dialog" aria-modal="true">'
        '<div class="modal-box"><div class="modal-head"><h3 class="d-title"></h3>'
        '<span class="d-pos"></span><button type="button" class="d-prev">← previous</button>'
        '<button type="button" class="d-next">next →</button>'
        '<button type="button" class="d-close" aria-label="close">✕</button></div>'
        '<div class="modal-body"><img class="d-panel" alt="panel"><div class="d-numbers"></div>'
        "</div></div></div>"
    )


def write_run_report(workdir: str | os.PathLike, extra_attributions=()) -> Path:
    """Writes ``WORKDIR/report.html`` (atomically) and returns its path. The galleries are
    those of the attributions folders directly under ``workdir`` and of
    ``extra_attributions``."""
    path = Path(workdir) / REPORT_HTML
    files.atomic_write_text(path, run_report_html(workdir, extra_attributions))
    return path
