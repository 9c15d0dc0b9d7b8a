"""Figures of the dashboard and the report (matplotlib, so the page and the PDF show the same).

Histograms and cumulative curves are drawn from :class:`semqa.stats.psd.PSD` as computed by
:func:`semqa.stats.psd.compute_psd`; nothing here recomputes a statistic.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from semqa.stats.psd import PSD  # noqa: E402

#: One colour per product everywhere (page, report): reference blue, test orange.
COLORS = {"reference": "#1f77b4", "test": "#ff7f0e"}
LABELS = {"reference": "Reference (RLD)", "test": "Test (generic)"}


def psd_figure(psds: dict[str, PSD], title: str) -> Figure:
    """Histogram (left) and cumulative undersize curve (right) of both products, log size axis.

    Parameters
    ----------
    psds : dict
        ``{"reference": PSD, "test": PSD}`` of one weighting, on shared histogram edges.
    title : str
        Figure title (names the weighting).
    """
    fig, (ax_hist, ax_cum) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    for product, psd in psds.items():
        h = psd.histogram
        if psd.n == 0 or not h.fraction:
            continue
        label = f"{LABELS[product]} (n = {psd.n})"
        edges = np.asarray(h.edges_um)
        ax_hist.stairs(np.asarray(h.fraction) * 100, edges, color=COLORS[product], label=label, linewidth=1.6)
        ax_cum.plot(edges, np.r_[0.0, h.cumulative] * 100, color=COLORS[product], label=label, linewidth=1.6)
        for d in (psd.d10_um, psd.d50_um, psd.d90_um):
            if d is not None:
                ax_cum.axvline(d, color=COLORS[product], linestyle=":", linewidth=0.9)
    for ax in (ax_hist, ax_cum):
        _log_size_axis(ax)
        ax.set_xlabel("Equivalent circular diameter (µm)")
        ax.grid(True, which="both", alpha=0.3)
    ax_hist.set_ylabel("Share per bin (%)")
    ax_cum.set_ylabel("Cumulative undersize (%)")
    ax_cum.set_ylim(0, 100)
    for q in (10, 50, 90):
        ax_cum.axhline(q, color="grey", linewidth=0.6, alpha=0.6)
    ax_hist.legend(loc="upper right", fontsize=8)
    fig.suptitle(title)
    return fig


def _log_size_axis(ax: plt.Axes) -> None:
    """Log size axis labelled 1, 2, 5, 10 … µm in plain numbers (QA reads µm, not 10^x)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(mticker.StrMethodFormatter("{x:g}"))
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())


def lot_d50_figure(dvalues: pd.DataFrame) -> Figure:
    """D50 of every lot with its confidence interval, reference and test side by side.

    ``dvalues`` is :func:`dashboard.tables.dvalue_frame` restricted to one weighting.
    """
    lots = dvalues[dvalues["lot"] != "(all lots)"].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(10, 3.2), layout="constrained")
    for product in ("reference", "test"):
        rows = lots[lots["product"] == product]
        if rows.empty:
            continue
        d50 = rows["D50 (µm)"].to_numpy(float)
        err = np.vstack([d50 - rows["D50 low"].to_numpy(float), rows["D50 high"].to_numpy(float) - d50])
        ax.errorbar(rows.index, d50, yerr=np.nan_to_num(err), fmt="o", color=COLORS[product], capsize=4, label=LABELS[product])
    ticks = [f"{'R' if p == 'reference' else 'T'} · {lot}" for p, lot in zip(lots["product"], lots["lot"])]
    ax.set_xticks(lots.index, ticks, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("D50 (µm)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Number-weighted D50 per lot (bars: bootstrap confidence interval)")
    return fig
