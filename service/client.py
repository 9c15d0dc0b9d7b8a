"""A typed client of the semqa service, for the dashboard and scripts.

Uploads go as multipart forms (the scheme :mod:`service.service` documents); results come
back as the same pydantic models the CLI writes.

Example
-------
>>> with SemqaClient("http://127.0.0.1:3000", token="…") as client:  # doctest: +SKIP
...     result = client.analyze([("a.tif", Path("a.tif").read_bytes())], pixel_size_um=0.4)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import httpx

from semqa.analysis import AnalysisConfig, AnalysisResult, ComparisonReport
from semqa.errors import InputError, SemqaError
from semqa.imageio import Micrograph, encode_image
from service.config import load_settings
from service.schemas import ModelInfo

#: An image to upload: a decoded micrograph, or ``(file name, file bytes)`` as read from disk.
Upload = Micrograph | tuple[str, bytes]


class ServiceError(SemqaError):
    """The service failed (5xx) or could not be reached."""


def _file(upload: Upload, name: str | None = None) -> tuple[str, bytes, str]:
    """A multipart file part; a :class:`Micrograph` travels as a 16-bit TIFF with its pixel size.

    A 16-bit TIFF holds 8- and 16-bit images exactly, so the service analyses the same
    pixels; the lineage then records the digest of the bytes sent, not of the original file.
    Send ``(name, bytes)`` to keep the original file's digest.
    """
    if isinstance(upload, Micrograph):
        data = encode_image(upload.image, "tiff", bit_depth=16, pixel_size_um=upload.pixel_size_um)
        return (name or upload.name, data, "image/tiff")
    filename, data = upload
    return (name or filename, data, "application/octet-stream")


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
        sr: bool, pixel_size_um: float | None, config: AnalysisConfig | None, model_version: str | None
    ) -> dict[str, str]:
        form = {"sr": json.dumps(sr)}
        if pixel_size_um is not None:
            form["pixel_size_um"] = repr(float(pixel_size_um))
        if config is not None:
            form["config"] = config.model_dump_json()
        if model_version is not None:
            form["model_version"] = str(model_version)
        return form

    def health(self) -> bool:
        """Whether the service is ready (``/readyz``)."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def model_info(self) -> ModelInfo:
        """The generator being served."""
        return ModelInfo.model_validate_json(self._call("GET", "/v1/model_info").content)

    def super_resolve(self, image: Upload, *, format: Literal["auto", "png", "tiff"] = "auto") -> bytes:
        """The super-resolved image file (PNG, or TIFF for TIFF input with ``auto``)."""
        resp = self._call("POST", "/v1/super_resolve", files=[("image", _file(image))], data={"format": format})
        return resp.content

    def analyze(
        self,
        images: Sequence[Upload],
        *,
        sr: bool = True,
        pixel_size_um: float | None = None,
        config: AnalysisConfig | None = None,
        model_version: str | None = None,
    ) -> AnalysisResult:
        """PSD of ``images`` (:func:`semqa.analysis.analyze` run by the service)."""
        files = [("images", _file(im)) for im in images]
        resp = self._call("POST", "/v1/analyze", files=files, data=self._form(sr, pixel_size_um, config, model_version))
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
    ) -> ComparisonReport:
        """Equivalence of ``test``'s lots with ``reference``'s (lot name → images).

        ``sr`` defaults to super-resolving exactly when a ``model_version`` is named; the
        service refuses (409) a version other than the one it serves. ``progress`` is told
        when the single call has finished.
        """
        files = []
        for field, lots in (("reference", reference), ("test", test)):
            for lot, images in lots.items():
                for im in images:
                    name = im.name if isinstance(im, Micrograph) else im[0]
                    files.append((field, _file(im, f"{lot}/{name.replace(chr(92), '/').rsplit('/', 1)[-1]}")))
        use_sr = model_version is not None if sr is None else sr
        resp = self._call("POST", "/v1/compare", files=files, data=self._form(use_sr, pixel_size_um, config, model_version))
        report = ComparisonReport.model_validate_json(resp.content)
        if progress is not None:
            total = len(files)
            progress(total, total)
        return report
