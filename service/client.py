"""A typed client of the semqa service, for the dashboard and scripts.

Uploads go as multipart forms (the scheme :mod:`service.service` documents); results come
back as the same pydantic models the CLI writes.

Example
-------
>>> with SemqaClient("http://127.0.0.1:3000", token="…") as client:  # doctest: +SKIP
...     result = client.analyze([ImageFile("a.png", Path("a.png").read_bytes(), pixel_size_um=0.4)])
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import httpx

from semqa.analysis import DEFAULT_SR, AnalysisConfig, AnalysisResult, ComparisonReport
from semqa.errors import InputError, SemqaError
from semqa.io.images import Micrograph, encode_image
from service.config import load_settings
from service.schemas import ModelInfo


@dataclass(frozen=True)
class ImageFile:
    """An image file uploaded byte for byte, so the service's lineage records the file's own digest.

    Attributes
    ----------
    name : str
        File name (the service keeps only the part after the last ``/``).
    data : bytes
        The file's bytes as stored.
    pixel_size_um : float or None
        µm per pixel the service uses only where the file's own metadata holds none: what a
        ``<stem>.json`` sidecar gives :func:`semqa.io.images.read_image` (the request's
        ``pixel_size_um`` overrides both, as ``read_image``'s argument does).
    """

    name: str
    data: bytes = field(repr=False)
    pixel_size_um: float | None = None


#: An image to upload: a file's bytes (:class:`ImageFile`, or ``(file name, file bytes)``),
#: or a decoded :class:`Micrograph` for callers that have no file (it is re-encoded, see :func:`_file`).
Upload = ImageFile | tuple[str, bytes] | Micrograph


#: Seconds one readiness probe may take: a ready server answers ``/readyz`` in milliseconds,
#: so a few seconds mean "not ready" even on a loaded machine, never a long hang.
HEALTH_TIMEOUT_S = 5.0


class ServiceError(SemqaError):
    """The service failed (5xx) or could not be reached."""


def _file(upload: Upload, name: str | None = None) -> tuple[tuple[str, bytes, str], float | None]:
    """A multipart file part and the pixel size to send for it where its metadata has none.

    An :class:`ImageFile` or ``(name, bytes)`` travels unchanged, so the lineage records
    the original file's digest. A :class:`Micrograph` travels as a 16-bit TIFF carrying its
    pixel size: that holds 8- and 16-bit images exactly, so the service analyses the same
    pixels, but the lineage then records the digest of the re-encoded TIFF, which matches no
    file an auditor can re-hash.
    """
    if isinstance(upload, Micrograph):
        data = encode_image(upload.image, "tiff", bit_depth=16, pixel_size_um=upload.pixel_size_um)
        return (name or upload.name, data, "image/tiff"), None
    if isinstance(upload, ImageFile):
        return (name or upload.name, upload.data, "application/octet-stream"), upload.pixel_size_um
    filename, data = upload
    return (name or filename, data, "application/octet-stream"), None


def _upload_name(upload: Upload) -> str:
    name = upload[0] if isinstance(upload, tuple) else upload.name
    return name.replace("\\", "/").rsplit("/", 1)[-1]


class SemqaClient:
    """Client of one semqa service.

    Parameters
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:3000``.
    token : str, optional
        API token; default ``SEMQA_API_TOKEN`` or the file ``SEMQA_API_TOKEN_FILE``.
    timeout : float
        Seconds to wait for one call (analyses of many images take minutes on CPU).
    """

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 600.0) -> None:
        token = token or load_settings().token()
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def __enter__(self) -> SemqaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(f"semqa service at {self._http.base_url} unreachable: {exc}") from None
        if resp.is_success:
            return resp
        try:
            message = resp.json()["error"]
        except (ValueError, KeyError, TypeError):
            message = resp.text[:200]
        if 400 <= resp.status_code < 500:
            err = InputError(f"service: {message}")
            err.http_status = resp.status_code
            raise err
        raise ServiceError(f"service failed ({resp.status_code}): {message}")

    @staticmethod
    def _form(
        sr: bool,
        pixel_size_um: float | None,
        config: AnalysisConfig | None,
        model_version: str | None,
        pixel_sizes_um: Mapping[str, float] | None = None,
    ) -> dict[str, str]:
        form = {"sr": json.dumps(sr)}
        if pixel_size_um is not None:
            form["pixel_size_um"] = repr(float(pixel_size_um))
        if pixel_sizes_um:
            # json writes floats with repr: the service reads back the same float.
            form["pixel_sizes_um"] = json.dumps({k: float(v) for k, v in pixel_sizes_um.items()}, allow_nan=False)
        if config is not None:
            form["config"] = config.model_dump_json()
        if model_version is not None:
            form["model_version"] = str(model_version)
        return form

    def health(self, timeout: float = HEALTH_TIMEOUT_S) -> bool:
        """Whether the service is ready (``/readyz``), asked with its own ``timeout`` in seconds.

        The probe never waits as long as an analysis call may (the client's ``timeout``): a
        server that accepts connections but does not answer yet is simply not ready.
        """
        try:
            return self._http.get("/readyz", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 240.0, alive: Callable[[], bool] | None = None) -> None:
        """Block until :meth:`health` is true; :class:`TimeoutError` after ``timeout`` seconds.

        Each probe's own timeout is the shorter of :data:`HEALTH_TIMEOUT_S` and the time left,
        so the wait ends within ``timeout`` (plus one poll interval) whatever the server does.
        ``alive``, when given, is asked between probes (e.g. whether the server's process still
        runs): :class:`RuntimeError` as soon as it says no, instead of waiting out ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"service at {self._http.base_url} not ready after {timeout:g} s")
            if self.health(timeout=min(HEALTH_TIMEOUT_S, left)):
                return
            if alive is not None and not alive():
                raise RuntimeError(f"service at {self._http.base_url} stopped before it was ready")
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def model_info(self) -> ModelInfo:
        """The generator being served."""
        return ModelInfo.model_validate_json(self._call("GET", "/v1/model_info").content)

    def super_resolve(self, image: Upload, *, format: Literal["auto", "png", "tiff"] = "auto") -> bytes:
        """The super-resolved image file (PNG, or TIFF for TIFF input with ``auto``)."""
        resp = self._call("POST", "/v1/super_resolve", files=[("image", _file(image)[0])], data={"format": format})
        return resp.content

    def analyze(
        self,
        images: Sequence[Upload],
        *,
        sr: bool = DEFAULT_SR,
        pixel_size_um: float | None = None,
        config: AnalysisConfig | None = None,
        model_version: str | None = None,
        segmenter: str = "classic",
    ) -> AnalysisResult:
        """PSD of ``images`` (:func:`semqa.analysis.analyze` run by the service).

        ``pixel_size_um`` overrides every image's pixel size; an :class:`ImageFile`'s own
        ``pixel_size_um`` serves only where its file's metadata has none. ``segmenter``:
        ``classic``, ``learned`` (the served production one) or ``models:/semqa-segmenter/<version>``.
        """
        files, sizes = [], {}
        for im in images:
            part, size = _file(im)
            files.append(("images", part))
            if size is not None:
                sizes[_upload_name(im)] = size
        form = {**self._form(sr, pixel_size_um, config, model_version, sizes), "segmenter": segmenter}
        resp = self._call("POST", "/v1/analyze", files=files, data=form)
        return AnalysisResult.model_validate_json(resp.content)

    def compare(
        self,
        reference: Mapping[str, Sequence[Upload]],
        test: Mapping[str, Sequence[Upload]],
        *,
        sr: bool | None = None,
        pixel_size_um: float | None = None,
        config: AnalysisConfig | None = None,
        model_version: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        segmenter: str = "classic",
    ) -> ComparisonReport:
        """Equivalence of ``test``'s lots with ``reference``'s (lot name → images).

        ``sr`` defaults to super-resolving exactly when a ``model_version`` is named; the
        service refuses (409) a version other than the one it serves. ``pixel_size_um``
        overrides every image's pixel size; an :class:`ImageFile`'s own ``pixel_size_um``
        serves only where its file's metadata has none. ``progress`` is told when the single
        call has finished. ``segmenter`` as for :meth:`analyze`.
        """
        files, sizes = [], {}
        for product, lots in (("reference", reference), ("test", test)):
            for lot, images in lots.items():
                for im in images:
                    part, size = _file(im, f"{lot}/{_upload_name(im)}")
                    files.append((product, part))
                    if size is not None:
                        # keyed as the lineage records the image: product/lot/image
                        sizes[f"{product}/{lot}/{_upload_name(im)}"] = size
        use_sr = model_version is not None if sr is None else sr
        form = {**self._form(use_sr, pixel_size_um, config, model_version, sizes), "segmenter": segmenter}
        resp = self._call("POST", "/v1/compare", files=files, data=form)
        report = ComparisonReport.model_validate_json(resp.content)
        if progress is not None:
            total = len(files)
            progress(total, total)
        return report
