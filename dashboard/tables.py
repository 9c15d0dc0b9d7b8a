"""Tables of a comparison (pandas), shared by the page and the exported report.

Product-level PSDs pool the particles of all lots of a product and go through
:func:`semqa.stats.psd.compute_psd` like every other PSD, on histogram edges shared by both
products (:func:`semqa.stats.psd.histogram_edges`) so their histograms can be overlaid.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from semqa.analysis import AnalysisConfig, AnalysisResult, ComparisonReport
from semqa.stats.equivalence import PBEResult
from semqa.registry.lineage import LineageReport
from semqa.report_tables import comparison_tables
from semqa.results import SegmenterRef
from semqa.stats.psd import PSD, Weighting, compute_psd, histogram_edges

PRODUCTS = ("reference", "test")
#: Lot label of the pooled row of a product in :func:`dvalue_frame`.
ALL_LOTS = "(all lots)"


def _lots(report: ComparisonReport, product: str) -> dict[str, AnalysisResult]:
    return report.reference if product == "reference" else report.test


def _ecds(report: ComparisonReport, product: str) -> np.ndarray:
    return np.array([p.ecd_um for r in _lots(report, product).values() for p in r.particles], dtype=float)


def product_psds(report: ComparisonReport, weighting: Weighting, config: AnalysisConfig) -> dict[str, PSD]:
    """``{"reference": PSD, "test": PSD}``: each product's lots pooled, on shared bins."""
    ecds = {product: _ecds(report, product) for product in PRODUCTS}
    both = np.concatenate(list(ecds.values()))
    bins = histogram_edges(float(both.min()), float(both.max())) if both.size else None
    return {
        product: compute_psd(
            x, weighting, n_bootstrap=config.n_bootstrap, ci_level=config.ci_level, seed=config.seed, bins=bins
        )
        for product, x in ecds.items()
    }


def _ci(ci: tuple[float, float] | None) -> tuple[float, float]:
    return (np.nan, np.nan) if ci is None else ci


def _psd_row(product: str, lot: str, images: int, psd: PSD) -> dict:
    row: dict = {"product": product, "lot": lot, "images": images, "particles": psd.n}
    for name, value, ci in (
        ("D10 (µm)", psd.d10_um, psd.d10_ci_um),
        ("D50 (µm)", psd.d50_um, psd.d50_ci_um),
        ("D90 (µm)", psd.d90_um, psd.d90_ci_um),
        ("span", psd.span, psd.span_ci),
    ):
        stem = name.split(" ")[0]
        low, high = _ci(ci)
        row |= {name: np.nan if value is None else value, f"{stem} low": low, f"{stem} high": high}
    row["notes"] = "; ".join(psd.warnings)
    return row


def dvalue_frame(report: ComparisonReport, weighting: Weighting, pooled: dict[str, PSD]) -> pd.DataFrame:
    """D10/D50/D90/span with confidence limits per lot, and each product pooled.

    ``pooled`` is :func:`product_psds` of the same weighting. The interval level is the
    analysis' ``ci_level`` (bootstrap over particles, :func:`semqa.stats.psd.compute_psd`).
    """
    rows = []
    for product in PRODUCTS:
        lots = _lots(report, product)
        for lot, result in lots.items():
            psd = result.psd if weighting == "number" else result.psd_volume
            rows.append(_psd_row(product, lot, len(result.images), psd))
        rows.append(_psd_row(product, ALL_LOTS, sum(len(r.images) for r in lots.values()), pooled[product]))
    return pd.DataFrame(rows)


def particle_frame(report: ComparisonReport) -> pd.DataFrame:
    """Every particle found, measured or excluded, with its product and lot: the table of ``semqa compare --csv``.

    :func:`semqa.report_tables.comparison_tables`; ``status`` says whether a row is in the PSD.
    """
    return comparison_tables(report)[0]


def image_frame(report: ComparisonReport) -> pd.DataFrame:
    """One row per analysed image: lot, name, digest, pixel sizes, particles and exclusions."""
    rows = [
        {"product": product, "lot": lot, **summary.model_dump()}
        for product in PRODUCTS
        for lot, result in _lots(report, product).items()
        for summary in result.images
    ]
    return pd.DataFrame(rows)


def input_set_digest(report: ComparisonReport) -> str:
    """``sha256:`` over the sorted ``product/lot/name=digest`` lines of every input image.

    One value that identifies the whole set of images compared, for a quality record.
    Lots are part of each line because image names need only be unique within a lot.
    """
    lines = sorted(
        f"{product}/{lot}/{summary.name}={summary.digest}"
        for product in PRODUCTS
        for lot, result in _lots(report, product).items()
        for summary in result.images
    )
    return "sha256:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


def chain_frame(chain: LineageReport) -> pd.DataFrame:
    """The links of a model version's lineage chain: step, whether it holds, summary."""
    return pd.DataFrame(
        [{"step": link.step, "holds": "yes" if link.ok else "NO", "summary": link.summary} for link in chain.links],
        columns=["step", "holds", "summary"],
    )


def _link_detail(chain: LineageReport | None, step: str, key: str) -> str:
    for link in chain.links if chain is not None else []:
        if link.step == step and link.details.get(key) is not None:
            return str(link.details[key])
    return "—"


def _segmenter_text(ref: SegmenterRef) -> str:
    """``classic pipeline``, or the learned version, its alias and weights digest."""
    if ref.kind == "classic":
        return "classic pipeline"
    alias = f" @{ref.alias}" if ref.alias else ""
    return f"{ref.name} version {ref.version}{alias}, weights {ref.weights_digest}" if ref.version else f"learned, from {ref.model_uri}"


def lineage_frame(report: ComparisonReport, config: AnalysisConfig, chain: LineageReport | None = None) -> pd.DataFrame:
    """What produced the result, one ``item``/``value`` row each: model, run, data, code, settings.

    ``chain`` (:func:`semqa.registry.lineage.trace_version` of the model version used) adds the
    training data digest, its validation and the training code.
    """
    lin = report.lineage
    model = lin.model
    rows = [
        ("super-resolution", "on" if report.sr else "off"),
        ("super-resolution chosen by", "default (off unless asked)" if report.sr_by_default else "the user"),
        ("model", model.name if model else "— (no super-resolution)"),
        ("model version", model.version if model else "—"),
        ("registry alias", model.alias if model and model.alias else "—"),
        ("training run", model.run_id if model and model.run_id else "—"),
        ("model URI", model.model_uri if model and model.model_uri else "—"),
        ("weights digest", model.weights_digest if model and model.weights_digest else "—"),
        ("segmenter", _segmenter_text(lin.segmenter)),
        ("training data digest", _link_detail(chain, "dataset", "digest")),
        ("training data validation", _link_detail(chain, "validation_report", "success")),
        ("training code version", _link_detail(chain, "code", "code_version")),
        ("model lineage chain", "—" if chain is None else ("intact" if chain.ok else "BROKEN at " + ", ".join(b.step for b in chain.broken))),
        ("input image set digest", input_set_digest(report)),
        ("images analysed", str(sum(len(r.images) for p in PRODUCTS for r in _lots(report, p).values()))),
        ("analysis code version", lin.code_version),
        ("semqa version", lin.semqa_version),
        ("created (UTC)", lin.created_at.strftime("%Y-%m-%d %H:%M:%S")),
        ("analysis settings", config.model_dump_json()),
    ]
    return pd.DataFrame(rows, columns=["item", "value"])


def _pbe_row(name: str, pbe: PBEResult | None) -> dict:
    if pbe is None:
        return {"statistic": name, "value": np.nan, "result": "not computed (see the reason)"}
    outcome = "passes" if pbe.passes else "fails"
    return {
        "statistic": name,
        "value": pbe.upper_bound,
        "result": (
            f"{outcome}: {pbe.confidence_level:.0%} upper bound of η {pbe.upper_bound:.4g} "
            f"({'≤' if pbe.passes else '>'} 0); η = {pbe.criterion:.4g}, {pbe.scaling}-scaled, "
            f"σT = {pbe.sigma_t:.3g}, σR = {pbe.sigma_r:.3g}, T/R geometric mean ratio {pbe.geometric_mean_ratio:.4g}"
        ),
    }


def statistics_frame(report: ComparisonReport) -> pd.DataFrame:
    """The equivalence statistics of :func:`semqa.stats.equivalence.compare_products`, one row each.

    PBE (FDA in-vitro population bioequivalence) on per-unit D50 and span decides; the
    two-sample Kolmogorov–Smirnov test and the Wasserstein distance of the pooled ECDs are
    reported beside it.
    """
    s = report.statistics
    ks_result = "—" if s.ks_pvalue is None else f"p = {s.ks_pvalue:.4g} (two-sample KS on pooled number-based ECDs)"
    rows = [
        _pbe_row("PBE on D50 (upper bound of η)", s.pbe_d50),
        _pbe_row("PBE on span (upper bound of η)", s.pbe_span),
        {"statistic": "Kolmogorov–Smirnov D", "value": s.ks_statistic, "result": ks_result},
        {"statistic": "Wasserstein distance (µm)", "value": s.wasserstein_um, "result": f"{s.weighting}-weighted pooled PSDs"},
        {"statistic": "Wasserstein distance (ln ECD)", "value": s.wasserstein_ln, "result": "scale-free: on ln(ECD/µm)"},
        {"statistic": "particles measured", "value": float(s.n_particles_reference), "result": "reference (all lots)"},
        {"statistic": "particles measured", "value": float(s.n_particles_test), "result": "test (all lots)"},
    ]
    if s.sizing_limit is not None:
        censored = [lot for lot in s.reference_lots + s.test_lots if lot.censoring and lot.censoring.censored]
        rows += [
            {"statistic": "sizing limit (µm)", "value": s.sizing_limit.d_min_um, "result": s.sizing_limit.source},
            {
                "statistic": "lots with censored D-values",
                "value": float(len(censored)),
                "result": "none: the sizing limit biases no D-value beyond its 95 % uncertainty"
                if not censored
                else "; ".join(f"{lot.lot}: {', '.join(lot.censoring.censored)}" for lot in censored),
            },
        ]
    frame = pd.DataFrame(rows)
    frame["value"] = frame["value"].astype(float)
    return frame
