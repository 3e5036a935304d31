"""``study.md``: the study's tables in Markdown (the same numbers as ``study.json``)."""

from __future__ import annotations

from cervix_jax import reports
from cervix_jax.study.crossval import SUMMARY_KEYS, format_interval
from cervix_jax.study.paper import CITATION


def _paper(group: dict) -> str:
    ref = group.get("paper")
    if not ref:
        return "—"
    n = ref["num_test_images"]
    return f"{ref['accuracy']:.4f} (1 split, {n if n else 'n not stated'} test images)"


def _results_table(study: dict, key: str) -> list[str]:
    variants = study["spec"]["variants"]
    lines = [
        "| model | " + " | ".join(variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    by = {(g["model"], g["variant"]): g for g in study["groups"]}
    for model in study["spec"]["models"]:
        cells = []
        for variant in variants:
            g = by[(model, variant)]
            if g["summary"] is None:
                cells.append("missing")
                continue
            stats = g["summary"][key] if key in SUMMARY_KEYS else g["attribution"].get(key)
            folds = len(g["folds"]) if key in SUMMARY_KEYS else g.get("explained_folds", 0)
            text = format_interval(stats) if stats else "n/a"
            cells.append(f"{text} ({folds} folds, {g['num_test_images']} images)")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def _paper_table(study: dict) -> list[str]:
    variants = study["spec"]["variants"]
    by = {(g["model"], g["variant"]): g for g in study["groups"]}
    lines = ["| model | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for model in study["spec"]["models"]:
        row = [_paper(by[(model, v)]) for v in variants]
        lines.append(f"| {model} | " + " | ".join(row) + " |")
    return lines


def _interval(d: dict | None, low: str = "ci_low", high: str = "ci_high") -> str:
    if not d or d.get(low) is None:
        return "n/a"
    return f"[{d[low]:+.4f}, {d[high]:+.4f}]"


def _comparison_lines(study: dict) -> list[str]:
    lines = [
        "| variant | b - a | metric | folds | mean diff | paired t 95% CI | corrected 95% CI | "
        "bootstrap 95% CI | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in study["comparisons"]:
        t = c["paired_t"]
        mean = "n/a" if t["mean"] is None else f"{t['mean']:+.4f}"
        lines.append(
            f"| {c['variant']} | {c['b']} - {c['a']} | {c['metric']} | {len(c['folds'])} | "
            f"{mean} | {_interval(t)} | "
            f"{_interval(t, 'corrected_ci_low', 'corrected_ci_high')} | "
            f"{_interval(c['bootstrap'])} | {c['verdict']} |"
        )
    return lines


def _header(study: dict) -> list[str]:
    spec = study["spec"]
    explain = spec["explain"]
    init = {g["model"]: g["init_from"] for g in study["groups"]}
    lines = [
        "# Study",
        "",
        f"- grid: models {', '.join(spec['models'])}; variants {', '.join(spec['variants'])}; "
        f"folds {', '.join(map(str, spec['folds']))} of K={spec['num_folds']} (grouped, "
        "stratified)",
        "- initialisation: "
        + "; ".join(f"{m}: {init[m] or 'from scratch'}" for m in spec["models"]),
        f"- explanations: integrated gradients, {explain['steps']} steps, "
        f"{explain['num_baselines']} uniform baselines, probability of the predicted class"
        + ("" if explain["enabled"] else " (not run)"),
    ]
    if study.get("synthetic"):
        lines.append("- **data: the synthetic SIPaKMeD; these numbers say nothing about cytology**")
    if study["missing"]:
        lines.append(f"- missing or unfinished cells: {', '.join(study['missing'])}")
    return lines


def study_markdown(study: dict) -> str:
    """The whole ``study.md``."""
    lines = _header(study)
    keys = list(SUMMARY_KEYS) + reports.ordered_metrics(
        {k for g in study["groups"] for k in g["attribution"]}
    )
    for key in keys:
        label = reports.metric_info(key).label
        lines += ["", f"## {label}: mean ± sd [95% CI] over folds", "", *_results_table(study, key)]
    lines += ["", "## The paper's numbers (reference)", "", CITATION, "", *_paper_table(study)]
    lines += ["", "## Paired comparisons", "", study["methods"], "", *_comparison_lines(study)]
    return "\n".join(lines) + "\n"
