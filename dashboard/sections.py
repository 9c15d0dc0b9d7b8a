"""The parts of the dashboard page: sidebar, product inputs and the result panels.

Each function draws one part with Streamlit and returns what the page needs next; the
numbers come from :mod:`dashboard.tables` and the figures from :mod:`dashboard.charts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import charts, report as report_export, tables
from dashboard.config import DashboardSettings
from dashboard.inputs import LotInput, ProductInput, lot_from_uploads, lots_from_folder, product_folders
from dashboard.runner import (
    ModelChoice,
    analysed_view,
    comparison_key,
    default_choice,
    model_lineage,
    registered_versions,
)
from semqa.analysis import DEFAULT_SR, AnalysisConfig, ComparisonReport
from semqa.io.region import parse_roi
from semqa.errors import InputError, SemqaError
from semqa.io.images import Micrograph
from semqa.registry.lineage import LineageReport
from semqa.registry.store import SEGMENTER_MODEL_NAME, tracking_uri

#: Caption of the overlay (colours of :mod:`semqa.particles.overlay`).
OVERLAY_CAPTION = "Measured (green), cut by the region's edge (orange), too small (magenta); analysed region (yellow)"

#: Banner per verdict (docs/architecture.md: equivalent | not_equivalent | inconclusive).
_BANNERS = {"equivalent": st.success, "not_equivalent": st.error, "inconclusive": st.warning}
_VERDICT_TEXT = {
    "equivalent": "EQUIVALENT",
    "not_equivalent": "NOT EQUIVALENT",
    "inconclusive": "INCONCLUSIVE",
}


@dataclass(frozen=True)
class Options:
    """What the sidebar decided: pixel size override, the generator (None: no SR), the analysed region."""

    pixel_size_um: float | None
    model: ModelChoice | None
    roi: tuple[int, int, int, int] | None = None
    detect_databar: bool = True
    roi_error: str | None = None
    #: The learned segmenter (the registry's production version), or None for the classic pipeline.
    segmenter: ModelChoice | None = None


def sidebar(settings: DashboardSettings) -> Options:
    """Pixel size, super-resolution and model version; where the analysis runs."""
    with st.sidebar:
        st.header("Settings")
        pixel_size = st.number_input(
            "Pixel size (µm per pixel)",
            min_value=0.0001,
            value=None,
            format="%.4f",
            placeholder="from the image metadata",
            help="Leave empty to use the pixel size stored in each TIFF (or its JSON sidecar).",
            key="pixel_size",
        )
        use_sr = st.toggle(
            "Super-resolution", value=DEFAULT_SR, key="use_sr",
            help="Super-resolve each image before segmentation (default off, as in the CLI and the service).",
        )
        model = _model_choice(settings) if use_sr else None
        segmenter = _segmenter_choice()
        roi_text = st.text_input(
            "Analysed region (x,y,width,height px)", value="", placeholder="the frame without its data bar", key="roi",
            help="Pixels of the input images; leave empty to find and leave out the instrument's data bar.",
        )
        detect = st.toggle("Leave out the data bar", value=True, key="detect_databar",
                           help="Find the instrument's information strip (top or bottom) and analyse the frame without it.")
        roi, roi_error = None, None
        if roi_text.strip():
            try:
                roi = parse_roi(roi_text)
            except InputError as exc:
                roi_error = str(exc)
                st.error(roi_error)
        where = f"service at {settings.service_url}" if settings.service_url else "this server (in-process)"
        st.caption(f"Analysis runs on {where}.")
    return Options(pixel_size_um=pixel_size, model=model, roi=roi, detect_databar=detect, roi_error=roi_error, segmenter=segmenter)


def _model_choice(settings: DashboardSettings) -> ModelChoice | None:
    try:
        choices = registered_versions(settings.model_name, tracking_uri())
    except InputError as exc:
        st.error(f"{exc}; analysing without super-resolution.")
        return None
    if not choices:
        st.warning(f"No version of {settings.model_name} is registered; analysing without super-resolution.")
        return None
    index = default_choice(choices, settings.default_alias)
    return st.selectbox(
        "Model version", choices, index=index, format_func=lambda c: c.label, key="model_version",
        help=f"Preselected: the version with alias @{settings.default_alias}.",
    )


def _segmenter_choice() -> ModelChoice | None:
    """Classic pipeline or the production learned segmenter (offered when one is registered)."""
    try:
        choices = registered_versions(SEGMENTER_MODEL_NAME, tracking_uri())
    except InputError:
        choices = []
    production = next((c for c in choices if "production" in c.aliases), None)
    labels = {"classic": None} | ({f"learned ({production.label})": production} if production else {})
    picked = st.radio(
        "Segmenter", list(labels), index=0, key="segmenter", horizontal=True,
        help="The classic pipeline (the reference), or the registry's production learned segmenter (semqa-segmenter).",
    )
    if production is None:
        st.caption("No production learned segmenter is registered: the classic pipeline segments.")
    return labels[picked]


def _full_height(frame: pd.DataFrame) -> int:
    """Pixel height that shows every row of a short table without an inner scroll bar."""
    return 35 * (len(frame) + 1) + 3


def _show_problems(lot: LotInput) -> None:
    for problem in lot.problems:
        st.error(problem, icon="⚠️")


def product_input(key: str, title: str, settings: DashboardSettings, pixel_size_um: float | None) -> ProductInput:
    """Lots of one product from uploads or a server folder; problems are shown, not raised."""
    st.subheader(title)
    folders = product_folders(settings.lots_root)
    sources = ["Upload images", "Server folder"] if folders else ["Upload images"]
    source = st.radio("Images from", sources, key=f"{key}_source", horizontal=True)
    if source == "Server folder":
        # No preselection: a default would put one product on both sides of the comparison.
        folder = st.selectbox("Product folder", folders, index=None, placeholder="choose a product folder", key=f"{key}_folder")
        if folder is None:
            return ProductInput({}, {})
        try:
            lots = lots_from_folder(Path(settings.lots_root) / folder, pixel_size_um)
        except InputError as exc:
            st.error(str(exc))
            return ProductInput({}, {})
    else:
        count = int(st.number_input("Number of lots", min_value=1, max_value=20, value=3, key=f"{key}_lots"))
        lots = []
        for i in range(count):
            name = st.text_input(f"Lot {i + 1} name", value=f"{key}-lot-{i + 1}", key=f"{key}_lot{i}_name").strip()
            files = st.file_uploader(
                f"Images of lot {i + 1}", accept_multiple_files=True, key=f"{key}_lot{i}_files",
                help="TIFF, PNG, JPEG or BMP; one image is one unit of the lot.",
            )
            if files:
                lots.append(lot_from_uploads(name or f"lot {i + 1}", [(f.name, f.getvalue()) for f in files], pixel_size_um))
    usable: dict[str, list[Micrograph]] = {}
    uploads: dict[str, bytes] = {}
    for lot in lots:
        _show_problems(lot)
        if lot.name in usable:
            st.error(f"Two lots are named {lot.name!r}; the second is left out. Give each lot its own name.")
        elif not lot.micrographs:
            st.warning(f"Lot {lot.name!r} has no usable images and is left out.")
        else:
            usable[lot.name] = lot.micrographs
            uploads.update(lot.uploads)
    if usable:
        st.caption(", ".join(f"{lot}: {len(m)} images" for lot, m in usable.items()))
    return ProductInput(usable, uploads)


def inputs_key(
    reference: Mapping[str, Sequence[Micrograph]],
    test: Mapping[str, Sequence[Micrograph]],
    config: AnalysisConfig,
    options: Options,
    settings: DashboardSettings,
) -> str:
    """The comparison's cache key (:func:`dashboard.runner.comparison_key`) for these inputs."""
    service = None if settings.service_url is None else str(settings.service_url)
    return comparison_key(reference, test, config, options.model, service, options.segmenter)


def verdict_banner(report: ComparisonReport) -> None:
    """The verdict as a coloured banner with its reason."""
    banner = _BANNERS.get(report.verdict, st.warning)
    banner(f"**Verdict: {_VERDICT_TEXT.get(report.verdict, report.verdict)}** — {report.reason}")
    limit = report.statistics.sizing_limit
    if limit is not None:
        st.caption(f"Sizing limit {limit.d_min_um:.3g} µm: {limit.source}.")


@st.cache_data(show_spinner=False, max_entries=16)
def _summary(key: str, _report: ComparisonReport, _config: AnalysisConfig, chain_json: str | None) -> report_export.Summary:
    chain = None if chain_json is None else LineageReport.model_validate_json(chain_json)
    return report_export.summarize(_report, _config, chain)


@st.cache_data(show_spinner=False, max_entries=16)
def _figures(key: str, _summary: report_export.Summary) -> list[tuple[str, bytes]]:
    # Drawing the figures costs more than the rest of a rerun: they are made once per comparison.
    return report_export.figure_pngs(_summary)


def _chain(options: Options) -> LineageReport | None:
    """Lineage chain of the chosen generator version; None without SR or when it cannot be read."""
    if options.model is None:
        return None
    try:
        return model_lineage(options.model.name, options.model.version, options.model.registry)
    except SemqaError as exc:
        st.error(f"Lineage of model version {options.model.version} could not be read: {exc}")
        return None


def results(
    key: str,
    report: ComparisonReport,
    reference: Mapping[str, Sequence[Micrograph]],
    test: Mapping[str, Sequence[Micrograph]],
    config: AnalysisConfig,
    options: Options,
    settings: DashboardSettings,
) -> None:
    """Everything shown after a comparison."""
    chain = _chain(options)
    summary = _summary(key, report, config, None if chain is None else chain.model_dump_json())
    st.header("Result")
    verdict_banner(report)
    for product in tables.PRODUCTS:
        for lot, result in (report.reference if product == "reference" else report.test).items():
            if result.psd.n == 0:
                st.warning(f"{charts.LABELS[product]} lot {lot!r}: no particles were found in its images.")
    st.subheader("Equivalence statistics")
    st.dataframe(summary.statistics, hide_index=True, height=_full_height(summary.statistics))

    tab_dist, tab_lots, tab_images, tab_particles, tab_lineage, tab_report = st.tabs(
        ["Distributions", "D-values per lot", "Images", "Particles", "Lineage", "Report"]
    )
    figures = dict(_figures(key, summary))
    with tab_dist:
        for weighting in ("number", "volume"):
            st.image(figures[f"{weighting.capitalize()}-weighted PSD"], width="stretch")
    with tab_lots:
        for weighting in ("number", "volume"):
            st.markdown(f"**{weighting.capitalize()}-weighted** (interval level {config.ci_level:.0%})")
            st.dataframe(summary.dvalues[weighting], hide_index=True)
        st.image(figures["D50 per lot"], width="stretch")
    with tab_images:
        _images(reference, test, config, options, settings)
    with tab_particles:
        _particles(summary.particles)
    with tab_lineage:
        st.dataframe(summary.lineage, hide_index=True, height=_full_height(summary.lineage))
        if summary.chain is not None:
            st.caption(f"Lineage chain of model version {options.model.version} (registry, weights, training run, data, code):")
            st.dataframe(summary.chain, hide_index=True, height=_full_height(summary.chain))
        st.caption("Input images (sha256 of each file as received):")
        st.dataframe(summary.images[report_export.IMAGE_COLUMNS],
                     hide_index=True)
    with tab_report:
        st.write("A self-contained record of this comparison: verdict, statistics, figures, tables and lineage.")
        left, right = st.columns(2)
        left.download_button(
            "Download report (HTML)", lambda: report_export.render_html(report, summary, settings.report_title),
            file_name="semqa-comparison.html", mime="text/html", key="report_html",
        )
        right.download_button(
            "Download report (PDF)", lambda: report_export.render_pdf(report, summary, settings.report_title),
            file_name="semqa-comparison.pdf", mime="application/pdf", key="report_pdf",
        )


def _images(
    reference: Mapping[str, Sequence[Micrograph]],
    test: Mapping[str, Sequence[Micrograph]],
    config: AnalysisConfig,
    options: Options,
    settings: DashboardSettings,
) -> None:
    entries = {
        f"{charts.LABELS[product]} / {lot} / {mg.name}": mg
        for product, lots in (("reference", reference), ("test", test))
        for lot, mgs in lots.items()
        for mg in mgs
    }
    choice = st.selectbox("Image", list(entries), key="image_choice")
    mg = entries[choice]
    model_version = None if options.model is None else options.model.version
    try:
        lr, sr, outline = analysed_view(
            mg.digest, mg, config.model_dump_json(), model_version, options.model, settings,
            None if options.segmenter is None else options.segmenter.version, options.segmenter,
        )
    except InputError as exc:
        st.error(str(exc))
        return
    if sr is None:
        left, right = st.columns(2)
        left.image(lr, caption=f"{mg.name} — as acquired", clamp=True, width="stretch")
        right.image(outline, caption=OVERLAY_CAPTION, clamp=True, width="stretch")
    else:
        left, middle, right = st.columns(3)
        left.image(lr, caption=f"{mg.name} — low resolution (LR)", clamp=True, width="stretch")
        middle.image(sr, caption=f"Super-resolved (SR), model version {model_version}", clamp=True, width="stretch")
        right.image(outline, caption=f"On SR: {OVERLAY_CAPTION}", clamp=True, width="stretch")


def _particles(frame: pd.DataFrame) -> None:
    left, middle, right = st.columns(3)
    products = left.multiselect("Product", tables.PRODUCTS, default=list(tables.PRODUCTS), key="filter_product")
    lots = sorted(frame["lot"].unique())
    chosen_lots = middle.multiselect("Lot", lots, default=lots, key="filter_lot")
    if frame.empty:
        st.info("No particles were measured.")
        return
    lo, hi = float(frame["ecd_um"].min()), float(frame["ecd_um"].max())
    ecd = right.slider("ECD range (µm)", min_value=lo, max_value=max(hi, lo + 1e-3), value=(lo, max(hi, lo + 1e-3)), key="filter_ecd")
    shown = frame[frame["product"].isin(products) & frame["lot"].isin(chosen_lots) & frame["ecd_um"].between(*ecd)]
    st.caption(f"{len(shown)} of {len(frame)} particles")
    st.dataframe(shown, hide_index=True)
    st.download_button(
        "Download particles (CSV)", shown.to_csv(index=False).encode(), file_name="semqa-particles.csv",
        mime="text/csv", key="particles_csv",
    )
