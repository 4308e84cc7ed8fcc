"""index.html: one self-contained page (figures embedded as data URIs, no script, nothing fetched from the network)."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import yaml

from reports.plots import Figure
from run_record.files import write_text

STYLE = """body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}img{max-width:100%}
figcaption{font-size:14px;color:#444}pre{background:#f7f7f7;padding:1em;overflow-x:auto;font-size:12px}
.note{color:#8a5a00}.failed{color:#a00}"""


def table_html(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>No rows.</p>"
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else html.escape("" if v is None else str(v))  # noqa: E731
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.png.read_bytes()).decode()
    return (f'<figure id="{fig.name}"><h3>{html.escape(fig.title)}</h3><img alt="{html.escape(fig.title)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(fig.caption)} '
            f'<a href="figures/{fig.pdf.name}">PDF</a></figcaption></figure>')


def write_page(path: Path, title: str, intro: str, sections: list[tuple[str, str]], figures: list[Figure],
               notes: list[str], config: dict | None, links: list[tuple[str, str]]) -> Path:
    parts = [f"<h1>{html.escape(title)}</h1><p>{intro}</p>"]
    if links:
        parts.append("<p>" + " &middot; ".join(f'<a href="{html.escape(u)}">{html.escape(t)}</a>' if u.startswith(("https://", "http://"))
                                               else f"{html.escape(t)}: <code>{html.escape(u)}</code>" for t, u in links) + "</p>")
    for heading, content in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{content}")
    parts.append("<h2>Figures</h2>" + "".join(figure_html(f) for f in figures))
    if notes:
        parts.append("<h2>Left out</h2><ul>" + "".join(f'<li class="note">{html.escape(n)}</li>' for n in notes) + "</ul>")
    if config:
        text = yaml.safe_dump(config, sort_keys=False) if not isinstance(config, str) else config
        parts.append(f"<details><summary>Config</summary><pre>{html.escape(text)}</pre></details>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    return write_text(path, page)


def json_block(data) -> str:
    return f"<pre>{html.escape(json.dumps(data, indent=1))}</pre>"
