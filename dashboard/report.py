"""The exported comparison report (HTML and PDF) for a quality record.

Both formats hold the same content, made once by :func:`summarize`: the verdict and its
reason, the equivalence statistics, the PSD figures of both products, D-values per lot
with confidence intervals, the input images with their digests, and the lineage (model
version, training run, data and code). The PDF is written with matplotlib's ``PdfPages``,
so the figures are the very ones the page shows.
"""

from __future__ import annotations

import base64
import html
import io
import json
import textwrap
from dataclasses import dataclass
from datetime import datetime, timezone

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from dashboard import charts, tables
from semqa.analysis import AnalysisConfig, ComparisonReport
from semqa.registry.lineage import LineageReport
from semqa.stats.psd import PSD

WEIGHTINGS = ("number", "volume")
_VERDICT_COLORS = {"equivalent": "#1a7f37", "not_equivalent": "#cf222e", "inconclusive": "#9a6700"}
#: Columns of the input-image table (page and report): the 95 % detection size says where each
#: image's noise thins its particles (semqa.particles.completeness; empty with the learned segmenter).
IMAGE_COLUMNS = ["product", "lot", "name", "digest", "pixel_size_um", "pixel_size_source", "n_particles", "detection_d95_um"]


@dataclass(frozen=True)
class Summary:
    """Tables and PSDs of one comparison, as shown in the page and written to the report."""

    statistics: pd.DataFrame
    pooled: dict[str, dict[str, PSD]]
    dvalues: dict[str, pd.DataFrame]
    particles: pd.DataFrame
    images: pd.DataFrame
    lineage: pd.DataFrame
    chain: pd.DataFrame | None


def summarize(report: ComparisonReport, config: AnalysisConfig, chain: LineageReport | None = None) -> Summary:
    """Everything the page and the report show of ``report``, computed once.

    ``chain`` is the lineage chain of the generator version used (None without SR).
    """
    pooled = {w: tables.product_psds(report, w, config) for w in WEIGHTINGS}
    return Summary(
        statistics=tables.statistics_frame(report),
        pooled=pooled,
        dvalues={w: tables.dvalue_frame(report, w, pooled[w]) for w in WEIGHTINGS},
        particles=tables.particle_frame(report),
        images=tables.image_frame(report),
        lineage=tables.lineage_frame(report, config, chain),
        chain=None if chain is None else tables.chain_frame(chain),
    )


def _figures(summary: Summary) -> list[tuple[str, Figure]]:
    figs = [(f"{w.capitalize()}-weighted PSD", charts.psd_figure(summary.pooled[w], f"{w.capitalize()}-weighted PSD")) for w in WEIGHTINGS]
    figs.append(("D50 per lot", charts.lot_d50_figure(summary.dvalues["number"])))
    return figs


def _formatted(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers to 4 significant digits, missing values as an em dash, everything as text."""

    def cell(v: object) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "—"
        if isinstance(v, (float, np.floating)):
            return f"{v:.4g}"
        return str(v)

    # Rows say which side they are on in the reader's words: "Reference (RLD)", "Test (generic)".
    if "product" in frame.columns:
        frame = frame.assign(product=frame["product"].map(lambda p: charts.LABELS.get(p, p)))
    return frame.map(cell)


def covers(report: ComparisonReport) -> str:
    """Which comparison a report covers: both products' lots and images, and the input set's digest."""
    sides = [
        f"{charts.LABELS[product]}: lots {', '.join(lots)} ({sum(len(r.images) for r in lots.values())} images)"
        for product, lots in (("reference", report.reference), ("test", report.test))
    ]
    return f"Covers {'; '.join(sides)}. Input set {tables.input_set_digest(report)}."


def figure_pngs(summary: Summary, dpi: int = 110) -> list[tuple[str, bytes]]:
    """The report's figures as ``(title, PNG bytes)``, for the page and the HTML report."""
    out = []
    for name, fig in _figures(summary):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        plt.close(fig)
        out.append((name, buf.getvalue()))
    return out


def _html_table(frame: pd.DataFrame) -> str:
    # In a scroll box, so a wide table never widens the page; cells wrap long digests.
    return f'<div class="scroll">{_formatted(frame).to_html(index=False, border=0, classes="t", escape=True)}</div>'



def render_html(report: ComparisonReport, summary: Summary, title: str) -> str:
    """A self-contained HTML report (figures embedded as PNG)."""
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    color = _VERDICT_COLORS.get(report.verdict, "#57606a")
    figures = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"/>'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, png in figure_pngs(summary)
    )
    dvalue_sections = "".join(
        f"<h3>{w.capitalize()}-weighted</h3>{_html_table(summary.dvalues[w])}" for w in WEIGHTINGS
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in _notes(report, summary)) or "<li>none</li>"
    chain = "" if summary.chain is None else f"<h3>Model version lineage chain</h3>{_html_table(summary.chain)}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #24292f; max-width: 100%; overflow-wrap: anywhere; }}
div.scroll {{ max-width: 100%; overflow-x: auto; }}
table.t td {{ overflow-wrap: anywhere; max-width: 40em; }}
.verdict {{ border-left: 8px solid {color}; background: #f6f8fa; padding: .8em 1em; font-size: 1.15em; }}
table.t {{ border-collapse: collapse; font-size: .85em; margin: .5em 0 1.5em; }}
table.t th, table.t td {{ border: 1px solid #d0d7de; padding: .25em .5em; text-align: left; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Created {created} by semqa. Each image is one unit of its lot.</p>
<p class="covers">{html.escape(covers(report))}</p>
<div class="verdict"><strong>Verdict: {html.escape(report.verdict.replace("_", " ").upper())}</strong><br/>{html.escape(report.reason)}</div>
<h2>Equivalence statistics</h2>{_html_table(summary.statistics)}
<h2>Particle size distributions</h2>{figures}
<h2>D-values per lot</h2>{dvalue_sections}
<h2>Notes on the statistics</h2><ul>{notes}</ul>
<h2>Lineage</h2>{_html_table(summary.lineage)}{chain}
<h2>Input images</h2>{_html_table(summary.images[IMAGE_COLUMNS])}
</body></html>
"""


_A4_PORTRAIT = (8.27, 11.69)
_A4_LANDSCAPE = (11.69, 8.27)
_LEFT = 0.07


#: Widest glyph advance of the fonts used, in em: DejaVu Sans digits and capitals (0.64–0.77,
#: "W" 0.99 aside) and DejaVu Sans Mono (0.60). Wrapping at the page width over this keeps
#: any line of ordinary text inside the margins.
_EM_PER_CHAR = {"sans-serif": 0.72, "monospace": 0.61}

#: Lowest top of a line of text on a page (figure fraction): the bottom margin.
_BOTTOM = 0.04


def _chars_per_line(fig: Figure, size: float, family: str) -> int:
    width_pt = fig.get_figwidth() * (1 - 2 * _LEFT) * 72
    return max(20, int(width_pt / (size * _EM_PER_CHAR.get(family, 0.72))))


def _lines(fig: Figure, text: str, size: float, family: str) -> list[str]:
    width = _chars_per_line(fig, size, family)
    return [line for para in text.splitlines() for line in (textwrap.wrap(para, width) or [""])]


def _put(fig: Figure, y: float, text: str, size: float = 9, **style: object) -> float:
    """Write ``text`` wrapped to the page's width with its top at ``y``; returns the y below it."""
    lines = _lines(fig, text, size, str(style.get("family", "sans-serif")))
    fig.text(_LEFT, y, "\n".join(lines), fontsize=size, va="top", **style)
    return y - len(lines) * size * 1.3 / 72 / fig.get_figheight() - 0.006


class _Flow:
    """Text and tables flowing down portrait pages; a new page starts where one is full."""

    def __init__(self) -> None:
        self.pages: list[Figure] = []
        self._new()

    def _new(self) -> None:
        self.pages.append(plt.figure(figsize=_A4_PORTRAIT))
        self.y = 0.96

    @property
    def fig(self) -> Figure:
        return self.pages[-1]

    def put(self, text: str, size: float = 9, gap: float = 0.0, **style: object) -> None:
        """Write ``text``, splitting it over pages where it does not fit (a long JSON value, many notes)."""
        lines = _lines(self.fig, text, size, str(style.get("family", "sans-serif")))
        line_h = size * 1.3 / 72 / self.fig.get_figheight()
        self.y -= gap
        while lines:
            room = int((self.y - _BOTTOM) / line_h)
            if room < 1:
                self._new()
                continue
            chunk, lines = lines[:room], lines[room:]
            self.fig.text(_LEFT, self.y, "\n".join(chunk), fontsize=size, va="top", **style)
            self.y -= len(chunk) * line_h + 0.006

    def table(self, frame: pd.DataFrame, font: float = 7.5) -> None:
        """Draw ``frame`` (fitted to the width), on a new page where the rest of this one is too short."""
        layout = _fit_table(self.fig, frame, self.fig.get_figwidth() * (1 - 2 * _LEFT), font)
        header = max(h.count("\n") + 1 for h in layout.header)
        height = (layout.row_height_in(header) + sum(layout.row_height_in(n) for n in layout.row_lines)) / self.fig.get_figheight()
        if self.y - height < _BOTTOM:
            self._new()
        self.y = _draw_table(self.fig, self.y, frame, layout=layout)


#: Smallest font a PDF table is shrunk to before its cells are wrapped narrower (legible in print).
_MIN_TABLE_FONT = 5.0

#: Cell padding, inches: either side of the text, and above and below each row.
_CELL_PAD_IN = 0.04


@dataclass(frozen=True)
class _TableLayout:
    """A table's text wrapped to fit a width, with the font and column widths that make it fit."""

    text: pd.DataFrame
    header: list[str]
    font: float
    col_widths_in: list[float]
    row_lines: list[int]

    @property
    def line_in(self) -> float:
        return self.font * 1.25 / 72

    def row_height_in(self, lines: int) -> float:
        return lines * self.line_in + 2 * _CELL_PAD_IN


def _wrap(value: str, chars: int) -> str:
    return "\n".join(line for para in value.splitlines() or [""] for line in (textwrap.wrap(para, chars) or [""]))


def _fit_table(fig: Figure, frame: pd.DataFrame, width_in: float, font: float) -> _TableLayout:
    """Wrap and shrink ``frame`` until its columns fit ``width_in`` inches of ``fig``.

    The widths are measured with the figure's renderer (the real glyph widths of the font),
    so nothing relies on an average character width. The font shrinks first, down to
    :data:`_MIN_TABLE_FONT`; then cells are wrapped narrower (long digests broken anywhere).
    """
    from matplotlib.font_manager import FontProperties

    renderer = fig.canvas.get_renderer()
    formatted = _formatted(frame)
    measured: dict[tuple[str, float], float] = {}  # many cells repeat (units, sources): measure each text once

    def width(s: str, size: float) -> float:
        if (s, size) not in measured:
            prop = FontProperties(size=size)
            measured[s, size] = max(
                renderer.get_text_width_height_descent(line or " ", prop, ismath=False)[0] for line in s.split("\n")
            ) / fig.dpi
        return measured[s, size]

    chars = 48
    while True:
        text = formatted.map(lambda v, n=chars: _wrap(v, n))
        header = [_wrap(str(c), chars) for c in formatted.columns]
        widths = [
            max([width(h, font)] + [width(v, font) for v in text[c]]) + 2 * _CELL_PAD_IN
            for h, c in zip(header, text.columns)
        ]
        if sum(widths) <= width_in or chars <= 8:
            break
        if font > _MIN_TABLE_FONT:
            font = max(_MIN_TABLE_FONT, font * width_in / sum(widths) * 0.98)
        else:
            chars = max(8, int(chars * 0.8))
    lines = [max([1] + [v.count("\n") + 1 for v in row]) for row in text.itertuples(index=False)]
    return _TableLayout(text=text, header=header, font=font, col_widths_in=widths, row_lines=lines)


def _draw_table(fig: Figure, top: float, frame: pd.DataFrame, font: float = 7.5, layout: _TableLayout | None = None) -> float:
    """Draw ``frame`` as a table whose top edge is at ``top``, within the page's margins; returns the y below it.

    ``layout`` (from :func:`_fit_table` for the whole table, so every page of it looks alike)
    gives the rows of ``frame`` their wrapped text; without it the table is fitted here.
    """
    fig_w, fig_h = fig.get_size_inches()
    layout = layout or _fit_table(fig, frame, fig_w * (1 - 2 * _LEFT), font)
    rows = [layout.text.loc[i].tolist() for i in frame.index]
    lines = [layout.row_lines[layout.text.index.get_loc(i)] for i in frame.index]
    if not rows:  # an empty table still shows its header, over one blank row
        rows, lines = [[""] * len(layout.header)], [1]
    header_lines = max(h.count("\n") + 1 for h in layout.header)
    heights = [layout.row_height_in(header_lines)] + [layout.row_height_in(n) for n in lines]
    height, width = sum(heights), sum(layout.col_widths_in)
    ax = fig.add_axes([_LEFT, top - height / fig_h, width / fig_w, height / fig_h])
    ax.axis("off")
    table = ax.table(
        cellText=rows, colLabels=layout.header, colWidths=[w / width for w in layout.col_widths_in],
        bbox=[0, 0, 1, 1], cellLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(layout.font)
    for (r, _), cell in table.get_celld().items():
        cell.set_height(heights[r] / height)
        cell.PAD = _CELL_PAD_IN / (cell.get_width() * width)  # matplotlib pads by a fraction of the cell's width
        cell.get_text().set_va("center")
    return top - height / fig_h - 0.02


def _first_pages(report: ComparisonReport, summary: Summary, title: str) -> list[Figure]:
    """Verdict, statistics and lineage: one portrait page, or more where the lineage is long."""
    flow = _Flow()
    flow.put(title, size=16, weight="bold")
    flow.put(f"Created {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC by semqa. Each image is one unit of its lot.")
    flow.put(covers(report), size=8)
    color = _VERDICT_COLORS.get(report.verdict, "#57606a")
    flow.put(f"Verdict: {report.verdict.replace('_', ' ').upper()}", size=15, gap=0.01, weight="bold", color=color)
    flow.put(report.reason)
    flow.put("Equivalence statistics", size=11, gap=0.01, weight="bold")
    flow.table(summary.statistics[["statistic", "value"]])
    for row in summary.statistics.itertuples():
        flow.put(f"{row.statistic}: {row.result}", size=7.5)
    flow.put("Lineage", size=11, gap=0.01, weight="bold")
    for row in summary.lineage.itertuples():
        flow.put(f"{row.item}: {row.value}", size=7.5, family="monospace")
    if summary.chain is not None:
        flow.put("Model version lineage chain", size=11, gap=0.01, weight="bold")
        for row in summary.chain.itertuples():
            flow.put(f"[{'ok' if row.holds == 'yes' else 'BROKEN'}] {row.step}: {row.summary}", size=7)
    return flow.pages


def table_pages(caption: str, frame: pd.DataFrame) -> list[Figure]:
    """Landscape pages holding ``frame``: fitted to the page's width once, split where a page is full."""
    pages: list[Figure] = []
    frame = frame.reset_index(drop=True)
    probe = plt.figure(figsize=_A4_LANDSCAPE)
    layout = _fit_table(probe, frame, _A4_LANDSCAPE[0] * (1 - 2 * _LEFT), 6.5)
    plt.close(probe)
    header_lines = max(h.count("\n") + 1 for h in layout.header)
    # Room under the caption (top 0.90) down to a bottom margin of 0.05 of the page.
    room = 0.85 * _A4_LANDSCAPE[1] - layout.row_height_in(header_lines)
    start = 0
    while True:
        stop, used = start, 0.0
        while stop < len(frame) and (stop == start or used + layout.row_height_in(layout.row_lines[stop]) <= room):
            used += layout.row_height_in(layout.row_lines[stop])
            stop += 1
        fig = plt.figure(figsize=_A4_LANDSCAPE)
        suffix = f" (rows {start + 1}–{stop} of {len(frame)})" if start > 0 or stop < len(frame) else ""
        y = _put(fig, 0.95, caption + suffix, size=11, weight="bold")
        _draw_table(fig, min(y, 0.90), frame.iloc[start:stop], layout=layout)
        pages.append(fig)
        start = stop
        if start >= len(frame):
            return pages


def _notes(report: ComparisonReport, summary: Summary) -> list[str]:
    """Warnings of the comparison and of every lot's PSD (low counts, design shortfalls)."""
    notes = list(report.statistics.warnings)
    for product, lots in (("reference", report.statistics.reference_lots), ("test", report.statistics.test_lots)):
        notes += [f"{product} {lot.lot}: {lot.censoring.message}" for lot in lots if lot.censoring and lot.censoring.message]
    for w in WEIGHTINGS:
        notes += [f"{r.product} {r.lot} ({w}-weighted): {r.notes}" for r in summary.dvalues[w].itertuples() if r.notes]
    return notes


def _notes_pages(notes: list[str]) -> list[Figure]:
    flow = _Flow()
    flow.put("Notes on the statistics", size=11, weight="bold")
    for note in notes or ["none"]:
        flow.put(f"• {note}", size=7.5)
    return flow.pages


def pdf_pages(report: ComparisonReport, summary: Summary, title: str) -> list[Figure]:
    """The PDF's pages as figures, in order: verdict, statistics and lineage first, then figures and tables."""
    pages = _first_pages(report, summary, title) + [fig for _, fig in _figures(summary)]
    for w in WEIGHTINGS:
        pages += table_pages(f"D-values per lot, {w}-weighted", summary.dvalues[w].drop(columns="notes"))
    pages += _notes_pages(_notes(report, summary))
    pages += table_pages("Input images", summary.images[IMAGE_COLUMNS])
    return pages


def render_pdf(report: ComparisonReport, summary: Summary, title: str) -> bytes:
    """The report as a PDF (:func:`pdf_pages`)."""
    buf = io.BytesIO()
    with PdfPages(buf) as pdf:
        for fig in pdf_pages(report, summary, title):
            pdf.savefig(fig)
            plt.close(fig)
        info = pdf.infodict()
        info["Title"] = title
        info["Subject"] = f"verdict: {report.verdict}"
        info["Keywords"] = json.dumps({"code_version": report.lineage.code_version})
        info["Creator"] = "semqa dashboard"
    return buf.getvalue()
