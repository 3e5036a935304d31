"""The pieces every page is made of: escaping, numbers, tables, inlined images, the page shell.

Pages are plain HTML with the stylesheet and script of ``assets/`` inlined: one file that opens
from disk in any browser, with no network (no CDN, no web fonts).
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

GENERATOR = "cervix_jax"


def esc(value) -> str:
    """``value`` as HTML text (quotes escaped too, so it also fits in attributes)."""
    return html.escape(str(value), quote=True)


def fmt(value, digits: int = 3, percent: bool = False) -> str:
    """A number for a table: fixed digits, ``—`` for None or NaN, ints as ints."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if percent:
        return f"{100.0 * value:.{max(digits - 2, 0)}f}%"
    return f"{value:.{digits}f}"


def data_uri(content: bytes | str | os.PathLike, mime: str = "image/png") -> str:
    """``data:`` URI of ``content`` (bytes, or the path of a file to read)."""
    if not isinstance(content, bytes):
        content = Path(content).read_bytes()
    return f"data:{mime};base64,{base64.b64encode(content).decode('ascii')}"


def json_script(obj, css_class: str) -> str:
    """``obj`` as an inert JSON ``<script>`` block a page script reads (``</`` escaped)."""
    text = json.dumps(obj, allow_nan=False).replace("</", "<\\/")
    return f'<script type="application/json" class="{esc(css_class)}">{text}</script>'


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric: Sequence[bool] | None = None,
    css_class: str = "data",
) -> str:
    """A ``<table>``; cells are HTML already (escape text with `esc`); ``numeric[i]`` right-aligns
    column i with tabular figures."""
    numeric = list(numeric or [False] * len(headers))
    cls = lambda i: ' class="num"' if numeric[i] else ""
    head = "".join(f"<th{cls(i)}>{h}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def section(title: str, body: str, *, anchor: str, note: str = "") -> str:
    """A titled card of the page (``note``: a muted line under the title, HTML)."""
    note_html = f'<p class="note">{note}</p>' if note else ""
    return (
        f'<section class="card" id="{esc(anchor)}"><h2>{esc(title)}</h2>{note_html}{body}</section>'
    )


def tiles(items: Sequence[tuple[str, str, str]]) -> str:
    """Headline numbers: ``(label, value, detail)`` tiles."""
    cells = "".join(
        f'<div class="tile"><div class="tile-label">{esc(label)}</div>'
        f'<div class="tile-value">{value}</div><div class="tile-detail">{detail}</div></div>'
        for label, value, detail in items
    )
    return f'<div class="tiles">{cells}</div>'


def _asset(name: str) -> str:
    return resources.files("cervix_jax.reports").joinpath("assets", name).read_text()


def page(title: str, subtitle_chips: Sequence[str], nav: Sequence[tuple[str, str]], body: str):
    """The whole document: header (title, chips), in-page navigation, body, inlined CSS/JS."""
    chips = "".join(f'<span class="chip">{c}</span>' for c in subtitle_chips)
    links = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in nav)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="{GENERATOR}">'
        f"<title>{esc(title)}</title><style>{_asset('report.css')}</style></head>"
        f'<body><header class="top"><div class="wrap"><h1>{esc(title)}</h1>'
        f'<div class="chips">{chips}</div></div>'
        f'<nav class="wrap">{links}</nav></header>'
        f'<main class="wrap">{body}</main>'
        f'<footer class="wrap">Written by {GENERATOR}; self-contained page, no network.</footer>'
        f"<script>{_asset('report.js')}</script></body></html>\n"
    )
