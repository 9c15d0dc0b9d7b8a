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
_IMAGE_COLUMNS = ["product", "lot", "name", "digest", "pixel_size_um", "pixel_size_source", "n_particles"]


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
<h2>Input images</h2>{_html_table(summary.images[_IMAGE_COLUMNS])}
</body></html>
"""


_A4_PORTRAIT = (8.27, 11.69)
_A4_LANDSCAPE = (11.69, 8.27)
_LEFT = 0.07


def _put(fig: Figure, y: float, text: str, size: float = 9, width: int = 110, **style: object) -> float:
    """Write ``text`` wrapped to ``width`` characters with its top at ``y``; returns the y below it."""
    lines = [line for para in text.splitlines() for line in (textwrap.wrap(para, width) or [""])]
    fig.text(_LEFT, y, "\n".join(lines), fontsize=size, va="top", **style)
    return y - len(lines) * size * 1.3 / 72 / fig.get_figheight() - 0.006


def _draw_table(fig: Figure, top: float, frame: pd.DataFrame, font: float = 7.5, row_height: float = 0.018) -> float:
    """Draw ``frame`` as a table whose top edge is at ``top``; returns the y below it."""
    height = row_height * (len(frame) + 1)
    ax = fig.add_axes([_LEFT, top - height, 1 - 2 * _LEFT, height])
    ax.axis("off")
    text = _formatted(frame)
    table = ax.table(cellText=text.to_numpy(), colLabels=list(text.columns), bbox=[0, 0, 1, 1], cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(font)
    table.auto_set_column_width(list(range(len(text.columns))))
    return top - height - 0.02


def _first_page(pdf: PdfPages, report: ComparisonReport, summary: Summary, title: str) -> None:
    fig = plt.figure(figsize=_A4_PORTRAIT)
    y = _put(fig, 0.96, title, size=16, weight="bold")
    y = _put(fig, y, f"Created {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC by semqa. Each image is one unit of its lot.")
    y = _put(fig, y, covers(report), size=8, width=120)
    color = _VERDICT_COLORS.get(report.verdict, "#57606a")
    y = _put(fig, y - 0.01, f"Verdict: {report.verdict.replace('_', ' ').upper()}", size=15, weight="bold", color=color)
    y = _put(fig, y, report.reason, width=115)
    y = _put(fig, y - 0.01, "Equivalence statistics", size=11, weight="bold")
    y = _draw_table(fig, y, summary.statistics[["statistic", "value"]])
    for row in summary.statistics.itertuples():
        y = _put(fig, y, f"{row.statistic}: {row.result}", size=7.5, width=130)
    y = _put(fig, y - 0.01, "Lineage", size=11, weight="bold")
    for row in summary.lineage.itertuples():
        y = _put(fig, y, f"{row.item}: {row.value}", size=7.5, width=100, family="monospace")
    if summary.chain is not None:
        y = _put(fig, y - 0.01, "Model version lineage chain", size=11, weight="bold")
        for row in summary.chain.itertuples():
            y = _put(fig, y, f"[{'ok' if row.holds == 'yes' else 'BROKEN'}] {row.step}: {row.summary}", size=7, width=120)
    pdf.savefig(fig)
    plt.close(fig)


def _table_pages(pdf: PdfPages, caption: str, frame: pd.DataFrame, rows_per_page: int = 36) -> None:
    for start in range(0, max(len(frame), 1), rows_per_page):
        fig = plt.figure(figsize=_A4_LANDSCAPE)
        part = frame.iloc[start : start + rows_per_page]
        suffix = f" (rows {start + 1}–{start + len(part)} of {len(frame)})" if len(frame) > rows_per_page else ""
        y = _put(fig, 0.95, caption + suffix, size=11, weight="bold")
        _draw_table(fig, y, part, font=6.5, row_height=0.022)
        pdf.savefig(fig)
        plt.close(fig)


def _notes(report: ComparisonReport, summary: Summary) -> list[str]:
    """Warnings of the comparison and of every lot's PSD (low counts, design shortfalls)."""
    notes = list(report.statistics.warnings)
    for product, lots in (("reference", report.statistics.reference_lots), ("test", report.statistics.test_lots)):
        notes += [f"{product} {lot.lot}: {lot.censoring.message}" for lot in lots if lot.censoring and lot.censoring.message]
    for w in WEIGHTINGS:
        notes += [f"{r.product} {r.lot} ({w}-weighted): {r.notes}" for r in summary.dvalues[w].itertuples() if r.notes]
    return notes


def _notes_pages(pdf: PdfPages, notes: list[str]) -> None:
    fig, y = None, 0.0
    for note in notes or ["none"]:
        if fig is None or y < 0.06:
            if fig is not None:
                pdf.savefig(fig)
                plt.close(fig)
            fig = plt.figure(figsize=_A4_PORTRAIT)
            y = _put(fig, 0.96, "Notes on the statistics", size=11, weight="bold")
        y = _put(fig, y, f"• {note}", size=7.5, width=125)
    pdf.savefig(fig)
    plt.close(fig)


def render_pdf(report: ComparisonReport, summary: Summary, title: str) -> bytes:
    """The report as a PDF: verdict, statistics and lineage first, then figures and tables."""
    buf = io.BytesIO()
    with PdfPages(buf) as pdf:
        _first_page(pdf, report, summary, title)
        for _, fig in _figures(summary):
            pdf.savefig(fig)
            plt.close(fig)
        for w in WEIGHTINGS:
            _table_pages(pdf, f"D-values per lot, {w}-weighted", summary.dvalues[w].drop(columns="notes"))
        _notes_pages(pdf, _notes(report, summary))
        _table_pages(pdf, "Input images", summary.images[_IMAGE_COLUMNS])
        info = pdf.infodict()
        info["Title"] = title
        info["Subject"] = f"verdict: {report.verdict}"
        info["Keywords"] = json.dumps({"code_version": report.lineage.code_version})
        info["Creator"] = "semqa dashboard"
    return buf.getvalue()
