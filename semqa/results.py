"""Typed results shared by the CLI, the service, the dashboard and training.

The JSON written by ``semqa analyze`` is :class:`AnalysisResult` serialized with
``model_dump_json``; the service returns the same models, so both agree field for field.
Measurement and statistics models live beside the code that computes them
(:mod:`semqa.particles.measure`, :mod:`semqa.stats.psd`, :mod:`semqa.stats.equivalence`); this module holds
what ties them together: which model and which inputs produced a result.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel, Field

from semqa import __version__
from semqa.io.region import AnalysedRegion


class ModelRef(BaseModel):
    """The generator that produced a super-resolved image, as resolved at run time."""

    name: str
    version: str | None = None
    alias: str | None = Field(None, description="registry alias used to resolve it, e.g. 'production'")
    run_id: str | None = Field(None, description="MLflow training run that produced it")
    model_uri: str | None = None
    weights_digest: str | None = Field(None, description="sha256 of the generator weights")
    scale: int


class SegmenterRef(BaseModel):
    """The segmenter that labelled the particles: the classic pipeline or a learned version."""

    kind: str = Field("classic", description="'classic' (semqa.particles.segmentation) or 'learned'")
    name: str | None = Field(None, description="registered model name of a learned segmenter")
    version: str | None = None
    alias: str | None = None
    run_id: str | None = Field(None, description="MLflow training run that produced it")
    model_uri: str | None = None
    weights_digest: str | None = Field(None, description="sha256 of the segmenter weights")


class ImageSummary(BaseModel):
    """One analysed image (one unit)."""

    name: str
    digest: str = Field(description="sha256 of the input file bytes")
    pixel_size_um: float = Field(description="pixel size of the input image, µm per pixel")
    pixel_size_source: str = Field(
        description="where pixel_size_um came from: 'flag' (given by the user), a TIFF tag such as "
        "'tiff:CZ_SEM:ap_image_pixel_size' or a sidecar such as 'sidecar:x.txt:[SemImageFile]PixelSize'"
    )
    pixel_size_note: str | None = Field(None, description="the file's own pixel size where a given one overrode it")
    analysed_pixel_size_um: float = Field(description="pixel size of the image segmented (after SR)")
    width: int
    height: int
    n_particles: int
    excluded_border: int
    excluded_small: int
    roi: AnalysedRegion | None = Field(
        None, description="region of the input image analysed (pixels of the input) and how it was chosen"
    )
    detection_d50_um: float | None = Field(
        None,
        description="ECD a particle of this image's contrast needs to be detected with 50 % probability against its "
        "noise (semqa.particles.completeness); None with the learned segmenter or without particles",
    )
    detection_d95_um: float | None = Field(None, description="the same at 95 % probability")
    warnings: list[str] = Field(
        default_factory=list,
        description="why this image's particles may not be trustworthy, e.g. structure was found but no particle",
    )


class ResultRecord(BaseModel):
    """Where a result was recorded (:func:`semqa.registry.records.record_result`): the pointer ``semqa lineage`` follows."""

    run_id: str = Field(description="MLflow run holding the result's digest and a copy of its content")
    digest: str = Field(description="sha256 of the result's canonical JSON without this pointer")
    store: str = Field(description="tracking store the run is in, credentials masked")


class Lineage(BaseModel):
    """What an auditor needs to trace a result: model, inputs, code."""

    model: ModelRef | None = Field(None, description="None when analysed without super-resolution")
    segmenter: SegmenterRef = Field(default_factory=SegmenterRef, description="which segmenter labelled the particles")
    input_digests: dict[str, str] = Field(default_factory=dict, description="image name → sha256")
    input_paths: dict[str, str] = Field(
        default_factory=dict, description="image name → absolute path read, so lineage can re-hash the inputs"
    )
    code_version: str = Field(description="git commit of the code, or the package version")
    semqa_version: str = __version__
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    record: ResultRecord | None = Field(None, description="the tamper-evident record of this result; set once it is recorded")
