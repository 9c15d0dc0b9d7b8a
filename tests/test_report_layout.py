"""The exported report's layout: no text past the PDF page's edge, no sideways overflow of the HTML at 1400 px (issue 12).

The report is made from a real comparison of generated lots whose image files carry long
names (as instruments and LIMS name them), so the input-image table is as wide as in use.
The HTML is measured in headless Chromium (the dashboard browser test's driver).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text
from test_dashboard_browser import browser  # noqa: F401  (the fixture)

from dashboard import report as report_export
from semqa.analysis import AnalysisConfig, compare, load_lots
from semqa.io.images import read_image
from semqa.synth.scenes import ProductSpec, make_lots, synth_config

LONG_NAME = "PhenomXL_batch-2026-12-01_API-micronised_lot{lot}_field{i:04d}_BSD-15kV_WD8.2mm_mag2500x_{side}.tif"


@pytest.fixture(scope="module")
def wide_report(tmp_path_factory):
    """A comparison of 2 × 2 lots × 2 images whose files have 90-character names."""
    root = tmp_path_factory.mktemp("lots")
    make_lots(
        root, products={"rld": ProductSpec(d50_um=3.0, gsd=1.5), "generic": ProductSpec(d50_um=3.0, gsd=1.5)},
        lots=2, images_per_lot=2, config=synth_config(size_px=256), seed=3,
    )
    lots = {}
    for side in ("rld", "generic"):
        folder = root / side / "hr"
        for lot_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            for i, path in enumerate(sorted(lot_dir.glob("*.tif"))):
                path.rename(lot_dir / LONG_NAME.format(lot=lot_dir.name, i=i, side=side))
        lots[side] = {lot: [read_image(p) for p in ps] for lot, ps in load_lots(folder).items()}
    config = AnalysisConfig(n_bootstrap=50)
    report = compare(lots["rld"], lots["generic"], config)
    return report, report_export.summarize(report, config)


def _texts(fig) -> list[Text]:
    """Every text of ``fig``: its artists' and its tables' cells (a cell's text is not among its children)."""
    cells = [cell.get_text() for ax in fig.axes for table in ax.tables for cell in table.get_celld().values()]
    return fig.findobj(Text) + cells


def _outside(fig) -> list[str]:
    """What of ``fig`` is drawn past the page (1 px of tolerance): its tight box, and each table cell's text.

    The tight box covers what is drawn (tick labels outside an axis' view are not), text and
    axes alike; a table cell's text is not in it, so the cells are checked one by one.
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    bad = []
    tight = fig.get_tightbbox(renderer)
    w, h = fig.get_size_inches()
    if tight.x0 < -1 / fig.dpi or tight.y0 < -1 / fig.dpi or tight.x1 > w + 1 / fig.dpi or tight.y1 > h + 1 / fig.dpi:
        bad.append(f"drawn extent {tight.bounds} of a {w:.2f} × {h:.2f} in page")
    cells = [cell.get_text() for ax in fig.axes for table in ax.tables for cell in table.get_celld().values()]
    for text in cells:
        if not text.get_visible() or not text.get_text().strip():
            continue
        box = text.get_window_extent(renderer)
        if box.x0 < page.x0 - 1 or box.x1 > page.x1 + 1 or box.y0 < page.y0 - 1 or box.y1 > page.y1 + 1:
            bad.append(text.get_text()[:60])
    return bad


def test_wide_table_pages_keep_every_cell_on_the_page():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "name": [LONG_NAME.format(lot="L1", i=i, side="reference") for i in range(80)],
        "digest": ["sha256:" + "".join(rng.choice(list("0123456789abcdef"), 64)) for _ in range(80)],
        "pixel_size_source": ["scale bar (512 px = 10 µm, read from the data bar)"] * 80,
        "pixel_size_um": rng.uniform(0.01, 0.2, 80),
        "remark": ["a long free-text remark entered by the analyst about this field of view and its focus"] * 80,
        "n_particles": rng.integers(10, 500, 80),
    })
    pages = report_export.table_pages("Input images", frame)
    try:
        assert len(pages) > 1  # 80 wrapped rows do not fit one page
        shown = []
        for fig in pages:
            assert _outside(fig) == []
            shown += [t.get_text() for t in _texts(fig) if t.get_text().startswith("sha256:")]
        # Every row is on some page, once (a wrapped digest is one cell holding its pieces).
        assert sorted(s.replace("\n", "") for s in shown) == sorted(frame["digest"])
    finally:
        for fig in pages:
            plt.close(fig)


def test_pdf_pages_keep_every_text_on_the_page(wide_report):
    report, summary = wide_report
    pages = report_export.pdf_pages(report, summary, "QA record")
    try:
        outside = {i: _outside(fig) for i, fig in enumerate(pages)}
        assert not any(outside.values()), outside
    finally:
        for fig in pages:
            plt.close(fig)
    assert report_export.render_pdf(report, summary, "QA record").startswith(b"%PDF")


@pytest.mark.slow
def test_html_report_has_no_sideways_overflow_at_1400px(wide_report, browser, tmp_path):  # noqa: F811
    report, summary = wide_report
    page = tmp_path / "report.html"
    page.write_text(report_export.render_html(report, summary, "QA record"), encoding="utf-8")
    browser.set_window_size(1400, 1000)
    browser.get(page.as_uri())
    inner = browser.execute_script("return window.innerWidth")
    scroll = browser.execute_script("return document.documentElement.scrollWidth")
    body = browser.execute_script("return document.body.scrollWidth")
    assert inner == 1400 and scroll <= inner and body <= inner, (inner, scroll, body)
    assert "PhenomXL_batch" in browser.page_source  # the long names are in the page, wrapped rather than cut
