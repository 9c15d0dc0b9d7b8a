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
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from semqa.stats.equivalence import CompareConfig, ComparisonResult, compare_products
from semqa.errors import InputError
from semqa.io.images import DEFAULT_MAX_PIXELS, Micrograph, list_images, require_pixel_size
from semqa.io.region import choose_region
from semqa.particles.measure import DEFAULT_MIN_PIXELS, Exclusions, Particle, measure_regions
from semqa.particles.limits import MAX_IMAGE_PIXELS, MAX_PARTICLE_AREA_PX
from semqa.stats.psd import MAX_BOOTSTRAP, PSD, compute_psd
from semqa.results import ImageSummary, Lineage, ModelRef
from semqa.particles.segmentation import SegmentationConfig, segment
from semqa.version import code_version

if TYPE_CHECKING:
    from semqa.sr.inference import Upscaler

#: Called after each image with (images done, images in all).
Progress = Callable[[int, int], None]

#: Called after each image with (key, the micrograph, its result, the analysed image, its label
#: image), e.g. to draw overlays (:func:`semqa.particles.overlay.draw_overlay`) without keeping
#: every label image in memory; key is the image name, or ``product/lot/name`` in a comparison.
UnitHook = Callable[[str, Micrograph, "UnitResult", np.ndarray, np.ndarray], None]


class AnalysisConfig(BaseModel):
    """Settings of one analysis; recorded in every result.

    Unknown keys are refused, and every field has an upper bound (:data:`MAX_BOOTSTRAP`,
    :mod:`semqa.particles.limits`): a configuration sent to the service cannot make the work unbounded.
    """

    model_config = ConfigDict(extra="forbid")

    segmentation: SegmentationConfig = Field(default_factory=SegmentationConfig)
    min_pixels: int = Field(DEFAULT_MIN_PIXELS, ge=1, le=MAX_PARTICLE_AREA_PX, description="smallest particle measured, in pixels of the analysed image")
    exclude_border: bool = Field(True, description="drop particles cut by the image border (ISO 13322-1)")
    n_bootstrap: int = Field(1000, ge=0, le=MAX_BOOTSTRAP, description="bootstrap resamples for D-value confidence intervals")
    ci_level: float = Field(0.95, gt=0, lt=1)
    # numpy's generators take non-negative seeds; 64 bits is the entropy of one SeedSequence word pair.
    seed: int = Field(0, ge=0, le=2**64 - 1)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, le=MAX_IMAGE_PIXELS, description="largest input image accepted, in pixels")
    roi: tuple[NonNegativeInt, NonNegativeInt, PositiveInt, PositiveInt] | None = Field(
        None, description="(x, y, width, height) in input pixels analysed in every image; None: find it"
    )
    detect_databar: bool = Field(True, description="leave out the instrument's data bar (semqa.io.databar) when no roi is given")


class AnalysisResult(BaseModel):
    """PSD of a set of images: the result JSON of ``semqa analyze`` (docs/architecture.md, "Contracts")."""

    psd: PSD = Field(description="number-weighted PSD of equivalent circular diameters")
    psd_volume: PSD = Field(description="volume-weighted PSD (sphere-equivalent volume ∝ ECD³)")
    particles: list[Particle]
    excluded_particles: list[Particle] = Field(
        default_factory=list, description="particles found but left out of the PSD, with their exclusion reason"
    )
    images: list[ImageSummary]
    exclusions: Exclusions
    sr: bool = Field(description="whether the images were super-resolved before segmentation")
    lineage: Lineage
    config: AnalysisConfig


class ComparisonReport(BaseModel):
    """Result JSON of ``semqa compare``: the statistics and each lot's analysis."""

    verdict: str
    reason: str
    statistics: ComparisonResult
    reference: dict[str, AnalysisResult] = Field(description="lot name → analysis")
    test: dict[str, AnalysisResult] = Field(description="lot name → analysis")
    sr: bool
    lineage: Lineage


@dataclass(frozen=True)
class UnitResult:
    """Particles and summary of one analysed image."""

    particles: list[Particle]
    summary: ImageSummary
    exclusions: Exclusions
    path: str | None = None
    excluded: tuple[Particle, ...] = ()


def measure_image(
    image: np.ndarray,
    pixel_size_um: float,
    config: AnalysisConfig,
    name: str = "",
    *,
    origin_px: tuple[int, int] = (0, 0),
    excluded: list[Particle] | None = None,
) -> tuple[np.ndarray, list[Particle], Exclusions]:
    """Segment and measure one image array: the segment → measure step every analysis runs.

    Returns the label image, the particles kept and what was excluded. The product's
    analyses (:func:`analyze_unit`) and the generator's evaluation
    (:func:`semqa.evaluation.evaluate_generator`) both call this, so they cannot drift apart.
    ``origin_px`` is the image's corner in the frame the centroids refer to; when ``excluded``
    is a list, the excluded particles are measured too and appended to it, marked with why.
    """
    labels = segment(image, config.segmentation)
    particles, dropped, excl = measure_regions(
        labels, pixel_size_um, image_name=name, min_pixels=config.min_pixels, exclude_border=config.exclude_border,
        origin_px=origin_px, keep_excluded=excluded is not None,
    )
    if excluded is not None:
        excluded.extend(dropped)
    return labels, particles, excl


def analyze_unit(
    mg: Micrograph,
    config: AnalysisConfig,
    upscaler: Upscaler | None = None,
    hook: UnitHook | None = None,
    key: str | None = None,
) -> UnitResult:
    """Segment and measure one micrograph's analysed region, super-resolving it first when ``upscaler`` is given.

    The region (:func:`semqa.io.region.choose_region`: ``config.roi``, else the frame without
    its data bar) is cropped before anything else, so a particle cut by its edge is excluded
    like one cut by the frame's edge; centroids stay in the input frame's coordinates.
    ``hook`` is called as ``hook(key or name, mg, result, analysed image, labels)``.
    """
    pixel_size = require_pixel_size(mg)
    roi = choose_region(mg.image, mg.name, config.roi, config.detect_databar)
    image = roi.crop(mg.image)
    scale = 1
    if upscaler is not None:
        image = upscaler.upscale(image)
        scale = upscaler.scale
        pixel_size = pixel_size / scale
    excluded: list[Particle] = []
    labels, particles, excl = measure_image(
        image, pixel_size, config, mg.name, origin_px=(roi.y * scale, roi.x * scale), excluded=excluded
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
        roi=roi,
    )
    unit = UnitResult(particles=particles, summary=summary, exclusions=excl, path=mg.path, excluded=tuple(excluded))
    if hook is not None:
        hook(key or mg.name, mg, unit, image, labels)
    return unit


def _lineage(units: Mapping[str, UnitResult], upscaler: Upscaler | None) -> Lineage:
    """Lineage of units keyed by the name they are recorded under."""
    model: ModelRef | None = upscaler.ref if upscaler is not None else None
    return Lineage(
        model=model,
        input_digests={key: u.summary.digest for key, u in units.items()},
        input_paths={key: u.path for key, u in units.items() if u.path},
        code_version=code_version(),
    )


def summarize(units: Sequence[UnitResult], config: AnalysisConfig, upscaler: Upscaler | None = None) -> AnalysisResult:
    """Pool the particles of analysed units into one :class:`AnalysisResult`."""
    particles = [p for u in units for p in u.particles]
    ecd = np.array([p.ecd_um for p in particles], dtype=float)
    psd_kwargs = dict(n_bootstrap=config.n_bootstrap, ci_level=config.ci_level, seed=config.seed)
    min_pixels = units[0].exclusions.min_pixels if units else config.min_pixels
    return AnalysisResult(
        psd=compute_psd(ecd, "number", **psd_kwargs),
        psd_volume=compute_psd(ecd, "volume", **psd_kwargs),
        particles=particles,
        excluded_particles=[p for u in units for p in u.excluded],
        images=[u.summary for u in units],
        exclusions=Exclusions(
            border=sum(u.exclusions.border for u in units),
            too_small=sum(u.exclusions.too_small for u in units),
            min_pixels=min_pixels,
        ),
        sr=upscaler is not None,
        lineage=_lineage({u.summary.name: u for u in units}, upscaler),
        config=config,
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
    hook: UnitHook | None = None,
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
    hook : callable, optional
        :data:`UnitHook` called after each image (overlays).
    """
    config = config or AnalysisConfig()
    if not micrographs:
        raise InputError("no images to analyze")
    _check_unique_names(micrographs, "the input")
    for mg in micrographs:  # fail before any work on a missing pixel size
        require_pixel_size(mg)
    units = []
    for i, mg in enumerate(micrographs, 1):
        units.append(analyze_unit(mg, config, upscaler, hook))
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
    hook: UnitHook | None = None,
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

    def run(product: str, lots: Mapping[str, Sequence[Micrograph]]) -> dict[str, list[UnitResult]]:
        nonlocal done
        out: dict[str, list[UnitResult]] = {}
        for lot, mgs in lots.items():
            out[lot] = []
            for mg in mgs:
                out[lot].append(analyze_unit(mg, config, upscaler, hook, f"{product}/{lot}/{mg.name}"))
                done += 1
                if progress:
                    progress(done, total)
        return out

    ref_units, test_units = run("reference", reference_lots), run("test", test_lots)

    def ecds(units: dict[str, list[UnitResult]]) -> dict[str, list[np.ndarray]]:
        return {lot: [np.array([p.ecd_um for p in u.particles], dtype=float) for u in us] for lot, us in units.items()}

    stats = compare_products(ecds(ref_units), ecds(test_units), compare_config)
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
