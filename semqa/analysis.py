"""The analysis pipeline: (super-resolve) → segment → measure → PSD, and lot comparison.

This is the one implementation the CLI, the HTTP service, the dashboard and the demo call.
An image is a *unit* in the sense of FDA's PBE design (one field of view of one sample
preparation); a *lot* is a folder of units; a *product* is a set of lots.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field

from semqa.stats.censoring import Censoring, SizingLimit, assess_censoring, sizing_limit
from semqa.stats.equivalence import CompareConfig, ComparisonResult, compare_products
from semqa.errors import InputError
from semqa.io.images import DEFAULT_MAX_PIXELS, Micrograph, list_images, require_pixel_size
from semqa.particles.measure import DEFAULT_MIN_PIXELS, Exclusions, Particle, measure_particles
from semqa.stats.psd import PSD, compute_psd
from semqa.results import ImageSummary, Lineage, ModelRef
from semqa.particles.segmentation import SegmentationConfig, segment
from semqa.version import code_version

if TYPE_CHECKING:
    from semqa.sr.inference import Upscaler

#: Whether an analysis super-resolves when its caller does not say: off. SR needs a
#: registered production generator, and a default that followed what the registry holds would
#: make one command mean two things. The CLI (``--sr``), the service (form field ``sr``) and
#: the dashboard (its toggle) share this default; a result records when this default decided
#: rather than the caller (``sr_by_default``), and an analysis at a resolution too
#: coarse for its particles says so (:mod:`semqa.stats.censoring`).
DEFAULT_SR: bool = False

#: Called after each image with (images done, images in all).
Progress = Callable[[int, int], None]


class AnalysisConfig(BaseModel):
    """Settings of one analysis; recorded in every result."""

    segmentation: SegmentationConfig = Field(default_factory=SegmentationConfig)
    min_pixels: int = Field(DEFAULT_MIN_PIXELS, ge=1, description="smallest particle measured, in pixels of the analysed image")
    exclude_border: bool = Field(True, description="drop particles cut by the image border (ISO 13322-1)")
    n_bootstrap: int = Field(1000, ge=0, description="bootstrap resamples for D-value confidence intervals")
    ci_level: float = Field(0.95, gt=0, lt=1)
    seed: int = 0
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="largest input image accepted, in pixels")


class AnalysisResult(BaseModel):
    """PSD of a set of images: the result JSON of ``semqa analyze`` (DESIGN.md)."""

    psd: PSD = Field(description="number-weighted PSD of equivalent circular diameters")
    psd_volume: PSD = Field(description="volume-weighted PSD (sphere-equivalent volume ∝ ECD³)")
    particles: list[Particle]
    images: list[ImageSummary]
    exclusions: Exclusions
    sr: bool = Field(description="whether the images were super-resolved before segmentation")
    lineage: Lineage
    config: AnalysisConfig
    sizing_limit: SizingLimit | None = Field(None, description="smallest size measured (semqa.stats.censoring)")
    sr_by_default: bool = Field(
        False, description="True when the caller did not say and DEFAULT_SR decided sr; False: the caller's choice"
    )
    censoring: Censoring | None = Field(None, description="which number-weighted D-values the sizing limit censors")


class ComparisonReport(BaseModel):
    """Result JSON of ``semqa compare``: the statistics and each lot's analysis."""

    verdict: str
    reason: str
    statistics: ComparisonResult
    reference: dict[str, AnalysisResult] = Field(description="lot name → analysis")
    test: dict[str, AnalysisResult] = Field(description="lot name → analysis")
    sr: bool
    sr_by_default: bool = Field(
        False, description="True when the caller did not say and DEFAULT_SR decided sr; False: the caller's choice"
    )
    lineage: Lineage


@dataclass(frozen=True)
class UnitResult:
    """Particles and summary of one analysed image."""

    particles: list[Particle]
    summary: ImageSummary
    exclusions: Exclusions
    path: str | None = None


def analyze_unit(mg: Micrograph, config: AnalysisConfig, upscaler: Upscaler | None = None) -> UnitResult:
    """Segment and measure one micrograph, super-resolving it first when ``upscaler`` is given."""
    pixel_size = require_pixel_size(mg)
    image = mg.image
    if upscaler is not None:
        image = upscaler.upscale(image)
        pixel_size = pixel_size / upscaler.scale
    labels = segment(image, config.segmentation)
    particles, excl = measure_particles(
        labels, pixel_size, image_name=mg.name, min_pixels=config.min_pixels, exclude_border=config.exclude_border
    )
    summary = ImageSummary(
        name=mg.name,
        digest=mg.digest,
        pixel_size_um=require_pixel_size(mg),
        analysed_pixel_size_um=pixel_size,
        width=mg.image.shape[1],
        height=mg.image.shape[0],
        n_particles=len(particles),
        excluded_border=excl.border,
        excluded_small=excl.too_small,
    )
    return UnitResult(particles=particles, summary=summary, exclusions=excl, path=mg.path)


def _lineage(units: Mapping[str, UnitResult], upscaler: Upscaler | None) -> Lineage:
    """Lineage of units keyed by the name they are recorded under."""
    model: ModelRef | None = upscaler.ref if upscaler is not None else None
    return Lineage(
        model=model,
        input_digests={key: u.summary.digest for key, u in units.items()},
        input_paths={key: u.path for key, u in units.items() if u.path},
        code_version=code_version(),
    )


def units_sizing_limit(units: Sequence[UnitResult], config: AnalysisConfig) -> SizingLimit | None:
    """Sizing limit of a set of units: that of the coarsest analysed pixel, above which all of them measure."""
    if not units:
        return None
    return sizing_limit(max(u.summary.analysed_pixel_size_um for u in units), config.min_pixels)


def summarize(units: Sequence[UnitResult], config: AnalysisConfig, upscaler: Upscaler | None = None) -> AnalysisResult:
    """Pool the particles of analysed units into one :class:`AnalysisResult`."""
    particles = [p for u in units for p in u.particles]
    ecd = np.array([p.ecd_um for p in particles], dtype=float)
    psd_kwargs = dict(n_bootstrap=config.n_bootstrap, ci_level=config.ci_level, seed=config.seed)
    min_pixels = units[0].exclusions.min_pixels if units else config.min_pixels
    limit = units_sizing_limit(units, config)
    censoring = assess_censoring(ecd, limit) if limit is not None else None
    psd = compute_psd(ecd, "number", **psd_kwargs)
    if censoring is not None and censoring.message:
        psd.warnings.append(censoring.message)
    return AnalysisResult(
        psd=psd,
        psd_volume=compute_psd(ecd, "volume", **psd_kwargs),
        particles=particles,
        images=[u.summary for u in units],
        exclusions=Exclusions(
            border=sum(u.exclusions.border for u in units),
            too_small=sum(u.exclusions.too_small for u in units),
            min_pixels=min_pixels,
        ),
        sr=upscaler is not None,
        lineage=_lineage({u.summary.name: u for u in units}, upscaler),
        config=config,
        sizing_limit=limit,
        censoring=censoring,
    )


def _check_unique_names(micrographs: Sequence[Micrograph], where: str) -> None:
    seen: set[str] = set()
    for mg in micrographs:
        if mg.name in seen:
            raise InputError(f"two images named {mg.name!r} in {where}: image names identify units and must be unique")
        seen.add(mg.name)


def analyze(
    micrographs: Sequence[Micrograph],
    config: AnalysisConfig | None = None,
    upscaler: Upscaler | None = None,
    progress: Progress | None = None,
) -> AnalysisResult:
    """PSD of the particles in ``micrographs`` (each needs a pixel size).

    Parameters
    ----------
    micrographs : sequence of Micrograph
        Images of one sample; their particles are pooled.
    config : AnalysisConfig, optional
        Segmentation, exclusion and bootstrap settings.
    upscaler : semqa.sr.inference.Upscaler, optional
        Super-resolve each image first; its model is recorded in the lineage.
    progress : callable, optional
        Called as ``progress(done, total)`` after each image.
    """
    config = config or AnalysisConfig()
    if not micrographs:
        raise InputError("no images to analyze")
    _check_unique_names(micrographs, "the input")
    for mg in micrographs:  # fail before any work on a missing pixel size
        require_pixel_size(mg)
    units = []
    for i, mg in enumerate(micrographs, 1):
        units.append(analyze_unit(mg, config, upscaler))
        if progress:
            progress(i, len(micrographs))
    return summarize(units, config, upscaler)


def compare(
    reference_lots: Mapping[str, Sequence[Micrograph]],
    test_lots: Mapping[str, Sequence[Micrograph]],
    config: AnalysisConfig | None = None,
    upscaler: Upscaler | None = None,
    compare_config: CompareConfig | None = None,
    progress: Progress | None = None,
) -> ComparisonReport:
    """Analyse every unit of both products and test their equivalence.

    Each image is one unit of its lot; per-unit ECDs go to
    :func:`semqa.stats.equivalence.compare_products` (PBE on D50 and span, KS, Wasserstein).
    """
    config = config or AnalysisConfig()
    for label, lots in (("reference", reference_lots), ("test", test_lots)):
        if not lots:
            raise InputError(f"the {label} product has no lots")
        for lot, mgs in lots.items():
            if not mgs:
                raise InputError(f"{label} lot {lot!r} has no images")
            _check_unique_names(mgs, f"{label} lot {lot!r}")
            for mg in mgs:
                require_pixel_size(mg)
    total = sum(len(m) for m in reference_lots.values()) + sum(len(m) for m in test_lots.values())
    done = 0

    def run(lots: Mapping[str, Sequence[Micrograph]]) -> dict[str, list[UnitResult]]:
        nonlocal done
        out: dict[str, list[UnitResult]] = {}
        for lot, mgs in lots.items():
            out[lot] = []
            for mg in mgs:
                out[lot].append(analyze_unit(mg, config, upscaler))
                done += 1
                if progress:
                    progress(done, total)
        return out

    ref_units, test_units = run(reference_lots), run(test_lots)

    def ecds(units: dict[str, list[UnitResult]]) -> dict[str, list[np.ndarray]]:
        return {lot: [np.array([p.ecd_um for p in u.particles], dtype=float) for u in us] for lot, us in units.items()}

    every_unit = [u for units in (ref_units, test_units) for us in units.values() for u in us]
    stats = compare_products(ecds(ref_units), ecds(test_units), compare_config, units_sizing_limit(every_unit, config))
    # Lots may reuse file names (image001.tif in every folder): key inputs by product and lot.
    all_units = {
        f"{product}/{lot}/{u.summary.name}": u
        for product, units in (("reference", ref_units), ("test", test_units))
        for lot, us in units.items()
        for u in us
    }
    return ComparisonReport(
        verdict=stats.verdict,
        reason=stats.reason,
        statistics=stats,
        reference={lot: summarize(us, config, upscaler) for lot, us in ref_units.items()},
        test={lot: summarize(us, config, upscaler) for lot, us in test_units.items()},
        sr=upscaler is not None,
        lineage=_lineage(all_units, upscaler),
    )


def load_lots(folder: str | Path) -> dict[str, list[Path]]:
    """Lots of a product folder laid out as ``DIR/<lot>/<image>``, sorted by lot name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    lots = {d.name: list_images(d) for d in sorted(folder.iterdir()) if d.is_dir()}
    lots = {name: files for name, files in lots.items() if files}
    if not lots:
        raise InputError(f"{folder} holds no lots: expected {folder}/<lot>/<images>")
    return lots
