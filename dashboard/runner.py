"""Running a comparison for the page: model choice, caching and progress.

Results are cached with ``st.cache_data`` under a key made of every image's digest and
pixel size, the *resolved* model version (never an alias, which can move), the analysis
settings and where the analysis ran; the loaded generator is cached with
``st.cache_resource`` under the same resolved version. A rerun with the same inputs is
therefore answered from the cache, and promoting another version invalidates nothing by
accident.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from semqa.analysis import AnalysisConfig, ComparisonReport, compare
from semqa.errors import InputError
from semqa.io.digests import bytes_digest
from semqa.io.images import Micrograph
from semqa.registry.records import record_result

if TYPE_CHECKING:
    from semqa.particles.learned import LearnedSegmenter
    from semqa.sr.inference import Upscaler
    from semqa.registry.lineage import LineageReport
    from service.client import ImageFile

    from dashboard.config import DashboardSettings


@dataclass(frozen=True)
class ModelChoice:
    """One registered generator version as offered in the page."""

    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str | None
    #: Registry URI it was found in: part of every cache key, as "version 1" names a
    #: different model in another registry.
    registry: str

    @property
    def label(self) -> str:
        tags = f" @{', @'.join(self.aliases)}" if self.aliases else ""
        return f"version {self.version}{tags}"


@st.cache_data(ttl=30, show_spinner=False)
def registered_versions(model_name: str, registry: str) -> list[ModelChoice]:
    """Registered versions of ``model_name`` in ``registry``, newest first.

    Cached 30 s so that promotions show up; ``registry`` is
    :func:`semqa.registry.store.tracking_uri`, the store MLflow is pointed at.

    Raises
    ------
    InputError
        When the registry cannot be reached.
    """
    from mlflow.exceptions import MlflowException

    from semqa.registry.promotion import list_versions
    from semqa.registry.store import configure_tracking, mask_credentials

    if configure_tracking() != registry:
        raise InputError(f"the registry in force is not {mask_credentials(registry)}")
    try:
        table = list_versions(model_name)
    except InputError as exc:
        raise InputError(f"model registry unavailable: {mask_credentials(str(exc))}") from None
    except MlflowException as exc:
        raise InputError(f"model registry unavailable: {mask_credentials(exc.message.splitlines()[0])}") from None
    choices = [
        ModelChoice(model_name, str(row["version"]), tuple(sorted(a for a in row["aliases"].split(",") if a)), row["run_id"], registry)
        for row in table.to_dict("records")
    ]
    return sorted(choices, key=lambda c: int(c.version), reverse=True)


def default_choice(choices: Sequence[ModelChoice], alias: str) -> int:
    """Index of the version carrying ``alias`` (the production model), else the newest."""
    for i, c in enumerate(choices):
        if alias in c.aliases:
            return i
    return 0


@st.cache_data(ttl=60, show_spinner=False)
def model_lineage(name: str, version: str, registry: str) -> LineageReport:
    """The chain behind a generator version (:func:`semqa.registry.lineage.trace_version`).

    A broken chain is returned, not raised: the page shows which links hold and which do not.
    """
    from semqa.registry.lineage import LineageBroken, trace_version

    try:
        return trace_version(version, name)
    except LineageBroken as exc:
        return exc.report


@st.cache_resource(show_spinner="Loading the super-resolution model…", max_entries=4)
def load_generator(name: str, version: str, alias: str | None, registry: str) -> Upscaler:
    """The generator of ``name`` version ``version`` in ``registry``, loaded once per process.

    It is loaded through ``alias`` when the user kept the aliased default, so the lineage
    records the alias too; the version is checked so a moved alias cannot slip in.
    """
    from semqa.sr.inference import load_upscaler
    from semqa.registry.store import tracking_uri

    if tracking_uri() != registry:
        raise InputError(f"the registry in force is not {registry}: reload the page")
    uri = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
    upscaler = load_upscaler(uri)
    if upscaler.ref.version is not None and str(upscaler.ref.version) != version:
        raise InputError(f"{uri} now resolves to version {upscaler.ref.version}, not {version}: reload the page")
    return upscaler


@st.cache_resource(show_spinner="Loading the learned segmenter…", max_entries=4)
def load_learned_segmenter(name: str, version: str, alias: str | None, registry: str) -> LearnedSegmenter:
    """The learned segmenter ``name`` version ``version`` in ``registry``, loaded once per process.

    Loaded through ``alias`` (the production one) when given, so the lineage records it; the
    version is checked, as :func:`load_generator` does, so a moved alias cannot slip in.
    """
    from semqa.particles.learned import load_segmenter
    from semqa.registry.store import tracking_uri

    if tracking_uri() != registry:
        raise InputError(f"the registry in force is not {registry}: reload the page")
    uri = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
    segmenter = load_segmenter(uri)
    if segmenter.ref.version != version:
        raise InputError(f"{uri} now resolves to version {segmenter.ref.version}, not {version}: reload the page")
    return segmenter


def _learned(segmenter: ModelChoice | None) -> LearnedSegmenter | None:
    """The loaded segmenter of a choice (None: the classic pipeline)."""
    if segmenter is None:
        return None
    alias = "production" if "production" in segmenter.aliases else None
    return load_learned_segmenter(segmenter.name, segmenter.version, alias, segmenter.registry)


def segmenter_spec(segmenter: ModelChoice | None) -> str:
    """The ``segmenter`` a service request names for a choice: classic, learned (production) or a version URI."""
    if segmenter is None:
        return "classic"
    return "learned" if "production" in segmenter.aliases else f"models:/{segmenter.name}/{segmenter.version}"


def _inventory(lots: Mapping[str, Sequence[Micrograph]]) -> dict[str, list[tuple[str, str, float | None]]]:
    return {lot: [(mg.name, mg.digest, mg.pixel_size_um) for mg in mgs] for lot, mgs in lots.items()}


def comparison_key(
    reference: Mapping[str, Sequence[Micrograph]],
    test: Mapping[str, Sequence[Micrograph]],
    config: AnalysisConfig,
    model: ModelChoice | None,
    service_url: str | None,
    segmenter: ModelChoice | None = None,
) -> str:
    """Cache key: image digests and pixel sizes per lot, resolved model and segmenter versions, settings, runner."""
    payload = {
        "reference": _inventory(reference),
        "test": _inventory(test),
        "config": config.model_dump(mode="json"),
        "model": None if model is None else [model.registry, model.name, model.version],
        "service": service_url,
        "segmenter": None if segmenter is None else [segmenter.registry, segmenter.name, segmenter.version],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@st.cache_data(show_spinner=False, max_entries=16)
def _cached_comparison(
    key: str,
    _reference: Mapping[str, Sequence[Micrograph]],
    _test: Mapping[str, Sequence[Micrograph]],
    _config: AnalysisConfig,
    _model: ModelChoice | None,
    _settings: DashboardSettings,
    _uploads: Mapping[str, bytes],
    _pixel_size_um: float | None,
    _segmenter: ModelChoice | None = None,
) -> ComparisonReport:
    # The progress bar is made inside the cached function: Streamlit replays the elements a
    # cached function creates, and an element made outside it could not be replayed.
    total = sum(map(len, _reference.values())) + sum(map(len, _test.values()))
    bar = st.progress(0.0, text=f"Analysing {total} images…")

    def progress(done: int, all_: int) -> None:
        bar.progress(done / all_, text=f"Analysed {done} of {all_} images")

    try:
        if _settings.service_url is not None:
            report = _compare_via_service(_reference, _test, _config, _model, _settings, progress, _uploads, _pixel_size_um, _segmenter)
        else:
            upscaler = None if _model is None else load_generator(_model.name, _model.version, _alias(_model, _settings), _model.registry)
            # Recorded like the CLI's and the service's results (the service records its own).
            segmenter = _learned(_segmenter)
            report = record_result(compare(_reference, _test, config=_config, upscaler=upscaler, progress=progress, segmenter=segmenter))
    finally:
        bar.empty()
    return report


def _alias(model: ModelChoice, settings: DashboardSettings) -> str | None:
    return settings.default_alias if settings.default_alias in model.aliases else None


def original_files(
    lots: Mapping[str, Sequence[Micrograph]], uploads: Mapping[str, bytes], pixel_size_um: float | None
) -> dict[str, list[ImageFile]]:
    """The file behind each micrograph, byte for byte, as :class:`service.client.ImageFile`.

    An upload's bytes come from ``uploads`` (digest → bytes); a file read from a folder is
    read again from its path. Either must still hash to the micrograph's digest, so the
    service analyses, and its lineage records, exactly the file the page analysed.

    A file from a folder carries its micrograph's pixel size, which the service uses only
    where the file's metadata has none, as :func:`semqa.io.images.read_image` falls back to
    the sidecar; with ``pixel_size_um`` (the value the user entered, sent as the request's
    override) none is needed. An upload's pixel size is the override or its metadata.

    Raises
    ------
    InputError
        When a file cannot be read, or has changed since the page read it.
    """
    from service.client import ImageFile

    def original(mg: Micrograph) -> ImageFile:
        if mg.path is None:
            data = uploads.get(mg.digest)
            if data is None:
                raise InputError(f"{mg.name}: the uploaded file is no longer available: upload it again")
        else:
            try:
                data = Path(mg.path).read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read {mg.path}: {exc.strerror}") from None
        if bytes_digest(data) != mg.digest:
            raise InputError(f"{mg.path or mg.name} changed since the page read it: reload the page")
        fallback = mg.pixel_size_um if mg.path is not None and pixel_size_um is None else None
        return ImageFile(mg.name, data, fallback)

    return {lot: [original(mg) for mg in mgs] for lot, mgs in lots.items()}


def _compare_via_service(
    reference: Mapping[str, Sequence[Micrograph]],
    test: Mapping[str, Sequence[Micrograph]],
    config: AnalysisConfig,
    model: ModelChoice | None,
    settings: DashboardSettings,
    progress: Callable[[int, int], None],
    uploads: Mapping[str, bytes],
    pixel_size_um: float | None,
    segmenter: ModelChoice | None = None,
) -> ComparisonReport:
    """:meth:`service.client.SemqaClient.compare`: the service runs the same ``compare``.

    The original files travel (:func:`original_files`), with the user's pixel size as the
    override, so the service resolves the same pixel sizes and its lineage records the
    same file digests as an in-process run.
    """
    from service.client import SemqaClient

    files = original_files(reference, uploads, pixel_size_um), original_files(test, uploads, pixel_size_um)
    with SemqaClient(str(settings.service_url), timeout=settings.service_timeout_s) as client:
        return client.compare(
            *files, sr=model is not None, pixel_size_um=pixel_size_um, config=config,
            model_version=None if model is None else model.version, progress=progress,
            segmenter=segmenter_spec(segmenter),
        )


def run_comparison(
    reference: Mapping[str, Sequence[Micrograph]],
    test: Mapping[str, Sequence[Micrograph]],
    config: AnalysisConfig,
    model: ModelChoice | None,
    settings: DashboardSettings,
    *,
    uploads: Mapping[str, bytes] | None = None,
    pixel_size_um: float | None = None,
    segmenter: ModelChoice | None = None,
) -> ComparisonReport:
    """Compare the two products, from the cache when these inputs were compared before.

    ``uploads`` (digest → bytes of the uploaded files) and ``pixel_size_um`` (the value the
    user entered, already applied to the micrographs) are what the service path sends
    besides the files read from folders. ``segmenter``: a registered learned segmenter
    version, or None for the classic pipeline.
    """
    service = None if settings.service_url is None else str(settings.service_url)
    key = comparison_key(reference, test, config, model, service, segmenter)
    return _cached_comparison(key, reference, test, config, model, settings, uploads or {}, pixel_size_um, segmenter)


@st.cache_data(show_spinner=False, max_entries=64)
def analysed_view(
    digest: str,
    _micrograph: Micrograph,
    config_json: str,
    model_version: str | None,
    _model: ModelChoice | None,
    _settings: DashboardSettings,
    segmenter_version: str | None = None,
    _segmenter: ModelChoice | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(input image, super-resolved image or None, overlay)`` of one micrograph.

    The overlay is :func:`semqa.particles.overlay.draw_overlay` of the image analysed by
    :func:`semqa.analysis.analyze_unit` with the comparison's configuration (region, data bar)
    and segmenter (``segmenter_version`` keys the cache; None: classic), the same picture
    ``semqa analyze --overlays`` writes.
    """
    from semqa.analysis import analyze_unit
    from semqa.particles.overlay import draw_overlay

    upscaler = None
    if _model is not None:
        upscaler = load_generator(_model.name, _model.version, _alias(_model, _settings), _model.registry)
    seen: dict[str, np.ndarray] = {}

    def keep(key, mg, unit, analysed, labels) -> None:
        seen["sr"] = analysed
        seen["overlay"] = draw_overlay(mg.image, analysed, labels, unit.summary.roi, unit.excluded)

    analyze_unit(_micrograph, AnalysisConfig.model_validate_json(config_json), upscaler, keep, segmenter=_learned(_segmenter))
    return _micrograph.image, seen["sr"] if upscaler is not None else None, seen["overlay"]
