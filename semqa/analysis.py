"""The analysis pipeline: (super-resolve) → segment → measure → PSD, and lot comparison.

This is the one implementation the CLI, the HTTP service, the dashboard and the demo call.
An image is a *unit* in the sense of FDA's PBE design (one field of view of one sample
preparation); a *lot* is a folder of units; a *product* is a set of lots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from semqa.particles.completeness import pooled_limit
from semqa.stats.censoring import Censoring, SizingLimit, assess_censoring, sizing_limit
from semqa.stats.equivalence import CompareConfig, ComparisonResult, compare_products
from semqa.errors import InputError
from semqa.io.images import DEFAULT_MAX_PIXELS, ImagePath, Micrograph, is_hidden, list_images, require_pixel_size
from semqa.io.region import AnalysedRegion, choose_region
from semqa.particles.measure import DEFAULT_MIN_PIXELS, Exclusions, Particle, measure_regions
from semqa.particles.limits import MAX_IMAGE_PIXELS, MAX_PARTICLE_AREA_PX
from semqa.stats.psd import MAX_BOOTSTRAP, PSD, compute_psd
from semqa.results import ImageSummary, Lineage, ModelRef, SegmenterRef
from semqa.particles.segmentation import Detection, SegmentationConfig, detect
from semqa.pool import map_ordered, resolve_workers
from semqa.version import code_version

if TYPE_CHECKING:
    from semqa.particles.learned import LearnedSegmenter
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
#: An image to analyse: already read, or a file that the process analysing it reads.
Unit = Micrograph | ImagePath

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
    excluded: tuple[Particle, ...] = ()


@dataclass(frozen=True)
class MeasuredImage:
    """What :func:`measure_image` found in one image array."""

    labels: np.ndarray
    particles: list[Particle]
    excluded: list[Particle]
    exclusions: Exclusions
    warnings: list[str]
    detection_um: tuple[float, float] | None = None  # ECDs detected with 50 % / 95 % probability (classic only)


def measure_image(
    image: np.ndarray,
    pixel_size_um: float,
    config: AnalysisConfig,
    name: str = "",
    origin_px: tuple[int, int] = (0, 0),
    segmenter: LearnedSegmenter | None = None,
    upscaled: bool = False,
) -> MeasuredImage:
    """Segment and measure one image array: the segment → measure step every analysis runs.

    Finds the particles (:func:`semqa.particles.segmentation.detect`, or a learned
    ``segmenter``), measures the kept ones and the excluded ones (marked with why), and says
    why the result may not be trustworthy (:func:`detection_warnings`); ``origin_px`` (row,
    column) places centroids in the input frame. The product's analyses (:func:`analyze_unit`)
    and the generator's evaluation (:func:`semqa.evaluation.evaluate_generator`) both call this,
    so they cannot drift apart. ``upscaled`` marks a super-resolved or interpolated image, whose
    noise and edge blur are not a scan's: the classic contact cuts then follow
    :attr:`~semqa.particles.segmentation.SegmentationConfig.contact_cuts_upscaled`, and the edge
    level is read as the window maximum (``edge_level_at_depth`` off).
    """
    detection = None
    if segmenter is not None:
        labels = segmenter.segment(image, config.segmentation.particle_diameter_px)
    else:
        seg = config.segmentation
        if upscaled:
            # An upscaled image's edge blur is the generator's (or the interpolation's), not the probe's.
            seg = seg.model_copy(update={"edge_level_at_depth": False} | ({} if seg.contact_cuts_upscaled else {"contact_k": None}))
        detection = detect(image, seg)
        labels = detection.labels
    particles, excluded, excl = measure_regions(
        labels, pixel_size_um, image_name=name, min_pixels=config.min_pixels, exclude_border=config.exclude_border,
        origin_px=origin_px,
    )
    warnings = detection_warnings(detection, len(particles), excl) if detection is not None else []
    limit = detection.limit if detection is not None else None
    detection_um = None if limit is None else (limit.d50_px * pixel_size_um, limit.d95_px * pixel_size_um)
    return MeasuredImage(labels, particles, excluded, excl, warnings, detection_um)


def analyze_unit(
    mg: Micrograph,
    config: AnalysisConfig,
    upscaler: Upscaler | None = None,
    hook: UnitHook | None = None,
    key: str | None = None,
    segmenter: LearnedSegmenter | None = None,
) -> UnitResult:
    """Segment and measure one micrograph's analysed region, super-resolving it first when ``upscaler`` is given.

    The region (:func:`semqa.io.region.choose_region`: ``config.roi``, else the frame without
    its data bar) is cropped before anything else, so a particle cut by its edge is excluded
    like one cut by the frame's edge; centroids stay in the input frame's coordinates.
    ``hook`` is called as ``hook(key or name, mg, result, analysed image, labels)``.
    """
    return _measure_unit(mg, _cropped(mg, config, upscaler), config, hook, key, segmenter)


@dataclass(frozen=True)
class _Cropped:
    """The analysed region of a micrograph, super-resolved or not: what :func:`_measure_unit` segments."""

    image: np.ndarray
    pixel_size_um: float
    roi: AnalysedRegion
    scale: int
    upscaled: bool


def _cropped(mg: Micrograph, config: AnalysisConfig, upscaler: Upscaler | None) -> _Cropped:
    """The first half of :func:`analyze_unit`: choose the region, crop it, super-resolve it."""
    pixel_size = require_pixel_size(mg)
    roi = choose_region(mg.image, mg.name, config.roi, config.detect_databar)
    image = roi.crop(mg.image)
    if upscaler is None:
        return _Cropped(image, pixel_size, roi, 1, False)
    return _Cropped(upscaler.upscale(image), pixel_size / upscaler.scale, roi, upscaler.scale, True)


def _measure_unit(
    mg: Micrograph,
    region: _Cropped,
    config: AnalysisConfig,
    hook: UnitHook | None = None,
    key: str | None = None,
    segmenter: LearnedSegmenter | None = None,
) -> UnitResult:
    """The second half of :func:`analyze_unit`: segment and measure the region, summarise the image."""
    image, pixel_size, roi, scale = region.image, region.pixel_size_um, region.roi, region.scale
    measured = measure_image(
        image, pixel_size, config, mg.name, origin_px=(roi.y * scale, roi.x * scale), segmenter=segmenter,
        upscaled=region.upscaled,
    )
    summary = ImageSummary(
        name=mg.name,
        digest=mg.digest,
        pixel_size_um=require_pixel_size(mg),
        pixel_size_source=mg.pixel_size_source or "caller",
        pixel_size_note=mg.pixel_size_note,
        analysed_pixel_size_um=pixel_size,
        width=mg.image.shape[1],
        height=mg.image.shape[0],
        n_particles=len(measured.particles),
        excluded_border=measured.exclusions.border,
        excluded_small=measured.exclusions.too_small,
        roi=roi,
        detection_d50_um=None if measured.detection_um is None else measured.detection_um[0],
        detection_d95_um=None if measured.detection_um is None else measured.detection_um[1],
        warnings=[w for w in (mg.pixel_size_warning,) if w] + measured.warnings,
    )
    unit = UnitResult(
        particles=measured.particles, summary=summary, exclusions=measured.exclusions, path=mg.path,
        excluded=tuple(measured.excluded),
    )
    if hook is not None:
        hook(key or mg.name, mg, unit, image, measured.labels)
    return unit


def detection_warnings(detection: Detection, n_particles: int, excl: Exclusions) -> list[str]:
    """Never a silent n = 0: why an image that holds significant structure yields no particle."""
    if n_particles > 0 or not detection.has_structure:
        return []
    if int(detection.labels.max()) == 0:
        return [
            (
                "the image holds significant structure (above its own noise model) but no particle was detected; "
                "check the contrast, focus and pixel size, or analyse with --sr"
            )
        ]
    return [
        (
            f"particles were detected but none was measured: {excl.border} cut by the border, {excl.too_small} "
            f"below {excl.min_pixels} px; the particles are too small for this pixel size (use --sr or a finer scan)"
        )
    ]


def _analyze_item(
    item: tuple[str, Unit],
    config: AnalysisConfig,
    upscaler: Upscaler | None = None,
    hook: UnitHook | None = None,
    segmenter: LearnedSegmenter | None = None,
) -> UnitResult:
    """:func:`analyze_unit` of a keyed micrograph, or of a file read here (in a pool worker)."""
    key, unit = item
    mg = unit.read() if isinstance(unit, ImagePath) else unit
    return analyze_unit(mg, config, upscaler, hook, key, segmenter)


def _measure_item(item: tuple[Micrograph, _Cropped], config: AnalysisConfig) -> UnitResult:
    """:func:`_measure_unit` of a micrograph super-resolved in the parent process (in a pool worker)."""
    mg, region = item
    return _measure_unit(mg, region, config)


def _map_units(
    items: Sequence[tuple[str, Unit]],
    config: AnalysisConfig,
    upscaler: Upscaler | None,
    workers: int | None,
    hook: UnitHook | None = None,
    segmenter: LearnedSegmenter | None = None,
) -> Iterator[UnitResult]:
    """Analysed ``(key, unit)`` items in input order, over a process pool when ``workers`` allows.

    With an upscaler, each image is super-resolved in this process (torch spreads the network
    over every core) and segmented in the pool: segmenting a 768² super-resolved frame takes
    about three times the CPU of super-resolving it (0.74 s against 0.26 s, the demo's compact
    generator), so one process alone would leave the other cores idle most of the time. With a
    learned segmenter, or a hook (e.g. writing overlays, which belongs to this process), every
    image is analysed here. The results do not depend on the number of workers.
    """
    in_process = segmenter is not None or hook is not None
    n = 1 if in_process else resolve_workers(workers, len(items))
    if upscaler is not None and n > 1:
        # A generator: map_ordered draws the next image only when the pool has room (at most
        # 2 × n in flight), so super-resolution overlaps the segmentation of earlier images.
        def upscaled() -> Iterator[tuple[Micrograph, _Cropped]]:
            for _, unit in items:
                mg = unit.read() if isinstance(unit, ImagePath) else unit
                yield mg, _cropped(mg, config, upscaler)

        return map_ordered(partial(_measure_item, config=config), upscaled(), n)
    return map_ordered(partial(_analyze_item, config=config, upscaler=upscaler, hook=hook, segmenter=segmenter), items, n)


def _lineage(units: Mapping[str, UnitResult], upscaler: Upscaler | None, segmenter: LearnedSegmenter | None = None) -> Lineage:
    """Lineage of units keyed by the name they are recorded under."""
    model: ModelRef | None = upscaler.ref if upscaler is not None else None
    return Lineage(
        model=model,
        segmenter=segmenter.ref if segmenter is not None else SegmenterRef(),
        input_digests={key: u.summary.digest for key, u in units.items()},
        input_paths={key: u.path for key, u in units.items() if u.path},
        code_version=code_version(),
    )


def units_sizing_limit(units: Sequence[UnitResult], config: AnalysisConfig) -> SizingLimit | None:
    """Sizing limit of a set of units: that of the coarsest analysed pixel, and the detection limit
    of the pooled images (:func:`semqa.particles.completeness.pooled_limit`, each image weighted by
    the area it images, µm²), above which all of them measure."""
    if not units:
        return None
    detected = [u.summary for u in units if u.summary.detection_d95_um is not None]
    pooled = None
    if detected:
        areas = [
            (s.roi.width * s.roi.height if s.roi is not None else s.width * s.height) * s.pixel_size_um**2 for s in detected
        ]
        pooled = pooled_limit([(s.detection_d50_um, s.detection_d95_um) for s in detected], areas)
    return sizing_limit(max(u.summary.analysed_pixel_size_um for u in units), config.min_pixels, pooled)


def summarize(
    units: Sequence[UnitResult], config: AnalysisConfig, upscaler: Upscaler | None = None, segmenter: LearnedSegmenter | None = None
) -> AnalysisResult:
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
        excluded_particles=[p for u in units for p in u.excluded],
        images=[u.summary for u in units],
        exclusions=Exclusions(
            border=sum(u.exclusions.border for u in units),
            too_small=sum(u.exclusions.too_small for u in units),
            min_pixels=min_pixels,
        ),
        sr=upscaler is not None,
        lineage=_lineage({u.summary.name: u for u in units}, upscaler, segmenter),
        config=config,
        sizing_limit=limit,
        censoring=censoring,
    )


def _check_unique_names(micrographs: Sequence[Unit], where: str) -> None:
    seen: set[str] = set()
    for mg in micrographs:
        if mg.name in seen:
            raise InputError(f"two images named {mg.name!r} in {where}: image names identify units and must be unique")
        seen.add(mg.name)


def analyze(
    micrographs: Sequence[Unit],
    config: AnalysisConfig | None = None,
    upscaler: Upscaler | None = None,
    progress: Progress | None = None,
    hook: UnitHook | None = None,
    segmenter: LearnedSegmenter | None = None,
    workers: int | None = 1,
) -> AnalysisResult:
    """PSD of the particles in ``micrographs`` (each needs a pixel size).

    Parameters
    ----------
    micrographs : sequence of Micrograph or ImagePath
        Images of one sample; their particles are pooled. Give :class:`~semqa.io.images.ImagePath`
        items to have each file read only when it is analysed (memory bounded on large lots).
    config : AnalysisConfig, optional
        Segmentation, exclusion and bootstrap settings.
    upscaler : semqa.sr.inference.Upscaler, optional
        Super-resolve each image first; its model is recorded in the lineage.
    progress : callable, optional
        Called as ``progress(done, total)`` after each image.
    hook : callable, optional
        :data:`UnitHook` called after each image (overlays).
    segmenter : semqa.particles.learned.LearnedSegmenter, optional
        A learned segmenter instead of the classic pipeline; recorded in the lineage.
    workers : int or None
        Processes to analyse images in (``None``: every available core); the result is the same
        for any number. With an upscaler, images are super-resolved here and segmented in the
        pool; ignored with a learned segmenter or a hook (see :func:`_map_units`).
    """
    config = config or AnalysisConfig()
    if not micrographs:
        raise InputError("no images to analyze")
    _check_unique_names(micrographs, "the input")
    for mg in micrographs:  # fail before any work on a missing pixel size (files: when read)
        if isinstance(mg, Micrograph):
            require_pixel_size(mg)
    units = []
    for i, unit in enumerate(_map_units([(mg.name, mg) for mg in micrographs], config, upscaler, workers, hook, segmenter), 1):
        units.append(unit)
        if progress:
            progress(i, len(micrographs))
    return summarize(units, config, upscaler, segmenter)


def _check_lots(label: str, lots: Mapping[str, Sequence[Unit]]) -> None:
    if not lots:
        raise InputError(f"the {label} product has no lots")
    for lot, mgs in lots.items():
        if not mgs:
            raise InputError(f"{label} lot {lot!r} has no images")
        _check_unique_names(mgs, f"{label} lot {lot!r}")
        for mg in mgs:
            if isinstance(mg, Micrograph):
                require_pixel_size(mg)


def _analyze_products(
    products: Mapping[str, Mapping[str, Sequence[Unit]]],
    config: AnalysisConfig,
    upscaler: Upscaler | None,
    progress: Progress | None,
    hook: UnitHook | None,
    segmenter: LearnedSegmenter | None,
    workers: int | None,
) -> list[dict[str, list[UnitResult]]]:
    """Every unit of ``products`` (role → lots) analysed, grouped per product and lot, in one pool.

    One list of all units of all products, so one pool keeps every core busy across lots;
    hook keys are ``role/lot/name``.
    """
    for role, lots in products.items():
        _check_lots(role, lots)
    keys = [(i, lot) for i, lots in enumerate(products.values()) for lot, mgs in lots.items() for _ in mgs]
    items = [(f"{role}/{lot}/{mg.name}", mg) for role, lots in products.items() for lot, mgs in lots.items() for mg in mgs]
    grouped: list[dict[str, list[UnitResult]]] = [{lot: [] for lot in lots} for lots in products.values()]
    units = _map_units(items, config, upscaler, workers, hook, segmenter)
    for done, ((i, lot), unit) in enumerate(zip(keys, units), 1):
        grouped[i][lot].append(unit)
        if progress:
            progress(done, len(items))
    return grouped


@dataclass(frozen=True)
class AnalysedLots:
    """One product's lots as analysed, with what analysed them: what :func:`compare_analysed` takes.

    A caller that compares one product with several others analyses it once and passes this
    to each comparison (the demo's RLD against two generics). It is a result the caller holds,
    not a cache: nothing is looked up by key, so nothing stale can be served; the units carry
    their images' digests, and :func:`compare_analysed` refuses two products analysed with
    different settings, generator or segmenter.
    """

    units: dict[str, list[UnitResult]]
    config: AnalysisConfig
    upscaler: Upscaler | None = None
    segmenter: LearnedSegmenter | None = None

    def summary(self, lot: str) -> AnalysisResult:
        """The analysis of one lot, as :func:`analyze` of its images returns it."""
        return summarize(self.units[lot], self.config, self.upscaler, self.segmenter)

    def setup(self) -> tuple[AnalysisConfig, ModelRef | None, SegmenterRef]:
        """What the analysis depended on besides the images: settings, generator, segmenter."""
        return (self.config, self.upscaler.ref if self.upscaler is not None else None,
                self.segmenter.ref if self.segmenter is not None else SegmenterRef())


def analyze_lots(
    lots: Mapping[str, Sequence[Unit]],
    config: AnalysisConfig | None = None,
    upscaler: Upscaler | None = None,
    progress: Progress | None = None,
    hook: UnitHook | None = None,
    segmenter: LearnedSegmenter | None = None,
    workers: int | None = 1,
    role: str = "reference",
) -> AnalysedLots:
    """Analyse every unit of one product's lots, for :func:`compare_analysed`.

    Arguments as in :func:`compare`; ``role`` names the product in errors and hook keys
    (``role/lot/name``).
    """
    config = config or AnalysisConfig()
    (units,) = _analyze_products({role: lots}, config, upscaler, progress, hook, segmenter, workers)
    return AnalysedLots(units, config, upscaler, segmenter)


def compare_analysed(reference: AnalysedLots, test: AnalysedLots, compare_config: CompareConfig | None = None) -> ComparisonReport:
    """Test the equivalence of two analysed products (:func:`analyze_lots`); see :func:`compare`.

    Raises
    ------
    InputError
        When the two were analysed with different settings, generators or segmenters: their
        sizes would not measure the same thing.
    """
    if reference.setup() != test.setup():
        raise InputError("the reference and test lots were analysed with different settings, generators or segmenters")
    ref_units, test_units = reference.units, test.units
    config, upscaler, segmenter = reference.config, reference.upscaler, reference.segmenter

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
        reference={lot: reference.summary(lot) for lot in ref_units},
        test={lot: test.summary(lot) for lot in test_units},
        sr=upscaler is not None,
        lineage=_lineage(all_units, upscaler, segmenter),
    )


def compare(
    reference_lots: Mapping[str, Sequence[Unit]],
    test_lots: Mapping[str, Sequence[Unit]],
    config: AnalysisConfig | None = None,
    upscaler: Upscaler | None = None,
    compare_config: CompareConfig | None = None,
    progress: Progress | None = None,
    hook: UnitHook | None = None,
    segmenter: LearnedSegmenter | None = None,
    workers: int | None = 1,
) -> ComparisonReport:
    """Analyse every unit of both products and test their equivalence.

    Each image is one unit of its lot; per-unit ECDs go to
    :func:`semqa.stats.equivalence.compare_products` (PBE on D50 and span, KS, Wasserstein).
    ``workers`` as in :func:`analyze`: all units of both products share one pool. To compare
    one product with several, analyse it once with :func:`analyze_lots` and call
    :func:`compare_analysed`.
    """
    config = config or AnalysisConfig()
    ref_units, test_units = _analyze_products(
        {"reference": reference_lots, "test": test_lots}, config, upscaler, progress, hook, segmenter, workers
    )
    return compare_analysed(
        AnalysedLots(ref_units, config, upscaler, segmenter), AnalysedLots(test_units, config, upscaler, segmenter), compare_config
    )


def load_lots(folder: str | Path) -> dict[str, list[Path]]:
    """Lots of a product folder laid out as ``DIR/<lot>/<image>``, sorted by lot name.

    Hidden folders (``.ipynb_checkpoints``, ``__MACOSX``: :func:`semqa.io.images.is_hidden`) are not lots.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    lots = {d.name: list_images(d) for d in sorted(folder.iterdir()) if d.is_dir() and not is_hidden(d)}
    lots = {name: files for name, files in lots.items() if files}
    if not lots:
        raise InputError(f"{folder} holds no lots: expected {folder}/<lot>/<images>")
    return lots
