"""The attribution gallery of a run's page: one thumbnail per explained image.

Reads an attributions folder as ``cervix_jax.explain.batch`` writes it: ``attribution_metrics
.json`` (per-image values of every metric, and the ``images`` block: true class, prediction,
probability, panel and map files of each image) and the panels beside it. Outputs written before
the ``images`` block existed still work: the ids come from the per-image metrics, true and
predicted classes from the run's ``predictions_<split>.npz``, panels from ``<image_id>.png``.

Panels are linked, not inlined (a test fold has hundreds): the page refers to them by paths
relative to itself, so the workdir can be moved or copied as a whole.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from urllib.parse import quote

import numpy as np

from cervix_jax.reports.labels import metric_info, per_image_keys
from cervix_jax.reports.page import esc, fmt, json_script

METRICS_FILE = "attribution_metrics.json"


def find_attribution_dirs(workdir: str | os.PathLike) -> list[Path]:
    """Folders directly under ``workdir`` that hold an ``attribution_metrics.json``, by name."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        return []
    return sorted(p for p in workdir.iterdir() if (p / METRICS_FILE).is_file())


def _predictions(workdir: Path, split: str) -> dict[str, dict]:
    """``image_id -> {label, predicted, probability}`` from ``predictions_<split>.npz``."""
    path = workdir / f"predictions_{split}.npz"
    if not path.exists():
        return {}
    with np.load(path) as npz:
        if "image_id" not in npz:
            return {}
        logits = np.asarray(npz["logits"], np.float64)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return {
            str(i): {"label": int(y), "predicted": int(k), "probability": float(p[r, k])}
            for r, (i, y, k) in enumerate(
                zip(npz["image_id"], npz["label"], npz["pred"], strict=True)
            )
        }


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _class_name(entry: dict, key: str, class_names) -> str | None:
    name = entry.get(f"{key}_name")
    index = entry.get(key)
    if name is None and isinstance(index, int) and 0 <= index < len(class_names):
        name = class_names[index]
    return name


def _link(path: Path, page_dir: Path) -> str:
    return quote(Path(os.path.relpath(path, page_dir)).as_posix())


def gallery_data(out_dir: Path, page_dir: Path, class_names) -> dict:
    """What the gallery shows of ``out_dir``: the run's settings, each metric's mean, and one
    item per image (``id``, ``label``, ``pred``, ``prob``, ``correct``, ``panel``, ``map``,
    ``metrics``); links relative to ``page_dir``."""
    metrics = json.loads((out_dir / METRICS_FILE).read_text())
    keys = per_image_keys(metrics)
    images = metrics.get("images") or {}
    ids = list(images) + [i for k in keys for i in metrics[k]["per_image"] if i not in images]
    fallback = _predictions(page_dir, metrics.get("split", "test"))
    items = []
    for image_id in dict.fromkeys(ids):
        entry = {**fallback.get(image_id, {}), **images.get(image_id, {})}
        label = _class_name(entry, "label", class_names)
        pred = _class_name(entry, "predicted", class_names)
        panel = out_dir / entry.get("panel", f"{image_id}.png")
        npy = out_dir / entry.get("map", f"{image_id}.npy")
        items.append(
            {
                "id": image_id,
                "label": label,
                "pred": pred,
                "prob": _number(entry.get("probability")),
                "correct": None if label is None or pred is None else label == pred,
                "target": _class_name(entry, "target", class_names)
                or {"predicted": pred, "label": label}.get(metrics.get("target")),
                "source": entry.get("source"),
                "panel": _link(panel, page_dir) if panel.exists() else None,
                "map": _link(npy, page_dir) if npy.exists() else None,
                "metrics": {k: _number(metrics[k]["per_image"].get(image_id)) for k in keys},
            }
        )
    return {"settings": _settings(metrics), "metrics": _metric_list(metrics, keys), "items": items}


def _settings(metrics: dict) -> list[tuple[str, str]]:
    names = ("method", "split", "steps", "ig_method", "baseline", "num_baselines", "target")
    return [(k, str(metrics[k])) for k in (*names, "score") if metrics.get(k) is not None]


def _metric_list(metrics: dict, keys: list[str]) -> list[dict]:
    out = []
    for k in keys:
        info = metric_info(k)
        out.append(
            {
                "key": k,
                "label": info.label,
                "higher": info.higher_is_better,
                "description": info.description,
                "mean": _number(metrics[k].get("mean")),
            }
        )
    return out


def _card(index: int, item: dict, metric_keys: list[str]) -> str:
    state = {True: "ok", False: "bad", None: "unknown"}[item["correct"]]
    data = {
        "index": index,
        "id": item["id"],
        "label": item["label"] or "",
        "pred": item["pred"] or "",
        "correct": state,
    }
    attrs = " ".join(f'data-{k}="{esc(v)}"' for k, v in data.items())
    img = (
        f'<img loading="lazy" src="{esc(item["panel"])}" alt="panel of {esc(item["id"])}">'
        if item["panel"]
        else '<div class="no-panel">no panel</div>'
    )
    prob = f'<span class="prob">p={fmt(item["prob"], 2)}</span>' if item["prob"] is not None else ""
    first = metric_keys[0] if metric_keys else None
    metric = (
        f'<span class="metric-chip">{esc(metric_info(first).label)} '
        f"{fmt(item['metrics'].get(first), 2)}</span>"
        if first
        else ""
    )
    return (
        f'<figure class="thumb {state}" tabindex="0" {attrs}>{img}<figcaption>'
        f'<div class="thumb-id">{esc(item["id"])}</div>'
        f'<div class="thumb-cls"><span class="truth">{esc(item["label"] or "unlabelled")}</span>'
        f' <span class="arrow">→</span> <span class="pred">{esc(item["pred"] or "?")}</span>'
        f'{prob}</div><div class="thumb-metric">{metric}</div></figcaption></figure>'
    )


def _controls(data: dict, class_names) -> str:
    metric_options = "".join(
        f'<option value="m:{esc(m["key"])}">{esc(m["label"])}</option>' for m in data["metrics"]
    )
    classes = "".join(f'<option value="{esc(c)}">{esc(c)}</option>' for c in class_names)
    return (
        '<div class="controls">'
        '<label>Sort <select class="g-sort"><option value="index">test order</option>'
        '<option value="id">image id</option><option value="label">true class</option>'
        '<option value="pred">predicted class</option><option value="prob">probability</option>'
        f"{metric_options}</select></label>"
        '<button type="button" class="g-order" data-order="asc" title="Reverse the order">'
        "▲ ascending</button>"
        f'<label>True class <select class="g-class"><option value="">all</option>{classes}'
        "</select></label>"
        f'<label>Predicted <select class="g-pred"><option value="">all</option>{classes}'
        "</select></label>"
        '<label>Result <select class="g-correct"><option value="">all</option>'
        '<option value="ok">correct</option><option value="bad">wrong</option></select></label>'
        f'<label>Metric <select class="g-metric"><option value="">—</option>{metric_options}'
        '</select></label><input class="g-min" type="number" step="any" placeholder="min">'
        '<input class="g-max" type="number" step="any" placeholder="max">'
        '<span class="g-count"></span></div>'
    )


def gallery_html(out_dir: Path, page_dir: Path, class_names) -> str:
    """The gallery of one attributions folder: settings, metric means, controls, thumbnails
    (sorted and filtered by the page script) and the data of the detail view."""
    data = gallery_data(out_dir, page_dir, class_names)
    keys = [m["key"] for m in data["metrics"]]
    settings = " · ".join(f"{esc(k)} <b>{esc(v)}</b>" for k, v in data["settings"])
    means = "".join(
        f'<div class="mean" title="{esc(m["description"])}"><span>{esc(m["label"])}</span>'
        f"<b>{fmt(m['mean'])}</b></div>"
        for m in data["metrics"]
    )
    cards = "".join(_card(i, item, keys) for i, item in enumerate(data["items"]))
    return (
        f'<div class="gallery" data-folder="{esc(out_dir.name)}">'
        f'<p class="settings">{settings} · <b>{len(data["items"])}</b> images</p>'
        f'<div class="means">{means}</div>{_controls(data, class_names)}'
        f'<div class="grid">{cards}</div>{json_script(data, "gallery-data")}</div>'
    )
