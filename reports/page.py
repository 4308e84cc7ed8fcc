"""One report page: sections and figures in reading order, written as a self-contained index.html (figures embedded as
data URIs, no script, nothing fetched from the network) with each figure also saved as PNG and PDF.

The experiment kinds (reports/kinds/) fill a Page; build.py adds what every page has (status, damaged files, the
W&B link, the config) and writes it.
"""
from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from reports.style import VariantEncoding, plt
from run_record.files import REPORT_FIGURES_FILE, atomic_writer, write_text

STYLE = """body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}figure{margin:1.5em 0}img{max-width:100%}
figcaption{font-size:14px;color:#444}pre{background:#f7f7f7;padding:1em;overflow-x:auto;font-size:12px}
.wide{overflow-x:auto;max-width:100%}.note{color:#8a5a00}.failed{color:#a00}nav{font-size:14px;margin:1em 0}"""


@dataclass
class Figure:
    name: str
    title: str
    caption: str
    png: Path
    pdf: Path
    legend: dict[str, str] = field(default_factory=dict)  # label -> colour (hex) of every legend entry, as drawn


def _colour(handle) -> str | None:
    """The colour a legend handle was drawn in: a line's, an error bar's line, a bar's or a scatter's face."""
    from matplotlib.colors import to_hex

    for get in (lambda h: h.get_color(), lambda h: h.lines[0].get_color(), lambda h: h.patches[0].get_facecolor(),
                lambda h: h.get_facecolor()[0]):
        try:
            return to_hex(get(handle))
        except (AttributeError, IndexError, TypeError, ValueError):
            continue
    return None


def legend_entries(fig) -> dict[str, str]:
    """{label: colour} of every labelled artist of the figure (what its legends can show)."""
    out = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            colour = _colour(handle)
            if colour and not label.startswith("_"):
                out.setdefault(label, colour)
    return out


@dataclass
class Page:
    """``directory``: where figures go (report/figures); ``context``: appended to every caption (seed, settings)."""

    title: str
    directory: Path
    context: str = ""
    intro: str = ""
    blocks: list[tuple[str, object]] = field(default_factory=list)  # ("section", (heading, html)) | ("figure", Figure)
    notes: list[str] = field(default_factory=list)
    variants: VariantEncoding = field(default_factory=VariantEncoding)  # every figure's colour and label of a variant

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def figures(self) -> list[Figure]:
        return [b for kind, b in self.blocks if kind == "figure"]

    def section(self, heading: str, content: str) -> None:
        self.blocks.append(("section", (heading, content)))

    def table(self, heading: str, rows: list[dict], columns: list[str] | None = None, note: str = "") -> None:
        self.section(heading, (f"<p>{html.escape(note)}</p>" if note else "") + table_html(rows, columns))

    def save(self, fig, name: str, title: str, caption: str) -> Figure:
        """A matplotlib figure, as PNG (110 dpi) and PDF, each written whole; appended to the page."""
        fig.suptitle(title, fontsize=12)
        if fig.get_layout_engine() is None:  # a figure made with layout="constrained" lays itself out
            fig.tight_layout()
        png, pdf = self.directory / f"{name}.png", self.directory / f"{name}.pdf"
        legend = legend_entries(fig)
        try:
            with atomic_writer(png, "wb") as f:
                fig.savefig(f, dpi=110, format="png")
            with atomic_writer(pdf, "wb") as f:
                fig.savefig(f, format="pdf")
        finally:
            plt.close(fig)
        entry = Figure(name, title, f"{caption} {self.context}".strip(), png, pdf, legend)
        self.blocks.append(("figure", entry))
        return entry

    def skip(self, title: str, reason: str) -> None:
        self.notes.append(f"{title}: not drawn, {reason}.")

    def write(self, path: Path, config: dict | None = None, links: list[tuple[str, str]] = ()) -> Path:
        drawn = {f.name for f in self.figures}
        for old in [*self.directory.glob("*.png"), *self.directory.glob("*.pdf")]:
            if old.stem not in drawn:  # a figure of an earlier report of this directory that this one did not draw
                old.unlink()
        parts = [f"<h1>{html.escape(self.title)}</h1><p>{self.intro}</p>"]
        if links:
            parts.append("<p>" + " &middot; ".join(
                f'<a href="{html.escape(u)}">{html.escape(t)}</a>' if u.startswith(("https://", "http://"))
                else f"{html.escape(t)}: <code>{html.escape(u)}</code>" for t, u in links) + "</p>")
        items = []  # a table of contents, in reading order, for a long page
        for i, (kind, block) in enumerate(self.blocks):
            anchor, text = (f"s{i}", block[0]) if kind == "section" else (block.name, block.title)
            items.append(f'<a href="#{anchor}">{html.escape(text)}</a>')
        if len(items) > 3:
            parts.append("<nav>Contents: " + " &middot; ".join(items) + "</nav>")
        for i, (kind, block) in enumerate(self.blocks):
            if kind == "section":
                heading, content = block
                parts.append(f'<h2 id="s{i}">{html.escape(heading)}</h2>{content}')
            else:
                parts.append(figure_html(block))
        if self.notes:
            parts.append("<h2>Left out</h2><ul>" + "".join(f'<li class="note">{html.escape(x)}</li>' for x in self.notes) + "</ul>")
        if config:
            text = yaml.safe_dump(config, sort_keys=False)
            parts.append(f"<details><summary>Config</summary><pre>{html.escape(text)}</pre></details>")
        # what each figure shows, machine-readable: its title, caption and legend's colours (a check of the encoding)
        write_text(path.parent / REPORT_FIGURES_FILE, json.dumps(
            [{"name": f.name, "title": f.title, "caption": f.caption, "legend": f.legend} for f in self.figures], indent=1))
        page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
        return write_text(path, page)


class Markup(str):
    """A table cell that is HTML already (a link), written as is."""


def table_html(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>No rows.</p>"
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    def fmt(row: dict, c: str) -> str:  # blank: not in this row; n/a: recorded as undefined (null)
        if c not in row:
            return ""
        v = row[c]
        if isinstance(v, Markup):
            return v
        return f"{v:.4f}" if isinstance(v, float) else ("n/a" if v is None else html.escape(str(v)))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r, c)}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<div class=\"wide\"><table><tr>{head}</tr>{body}</table></div>"  # wide tables scroll, not the page


def figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.png.read_bytes()).decode()
    return (f'<figure id="{fig.name}"><img alt="{html.escape(fig.title)}" '
            f'src="data:image/png;base64,{data}"><figcaption><b>{html.escape(fig.title)}.</b> {html.escape(fig.caption)} '
            f'<a href="figures/{fig.pdf.name}">PDF</a></figcaption></figure>')
