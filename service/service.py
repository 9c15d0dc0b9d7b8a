"""The semqa HTTP service (BentoML): super-resolution, analysis and lot comparison.

Two BentoML services run together:

``Generator``
    Holds the super-resolution generator (CUDA with autocast where a GPU exists, else CPU).
    Its batchable ``upscale`` API gathers concurrent calls into one batch (BentoML adaptive
    batching) and runs same-size images through :meth:`semqa.sr.inference.Upscaler.upscale_batch`
    together; large images go through tiled inference with bounded memory. It listens on a
    private Unix socket only.
``Semqa``
    The public API server. Routes (a Starlette app mounted at ``/v1``)::

        POST /v1/super_resolve   multipart: image=<file>; format=auto|png|tiff
        POST /v1/analyze         multipart: images=<file>...; pixel_size_um, pixel_sizes_um, sr, config, model_version
        POST /v1/compare         multipart: reference=<file>..., test=<file>... (file name "<lot>/<image>"),
                                 pixel_size_um, pixel_sizes_um, sr, config, model_version
        GET  /v1/model_info

    and BentoML's ``/healthz``, ``/livez``, ``/readyz`` (open) and ``/metrics`` (token).
    Every route but health and readiness needs ``Authorization: Bearer <SEMQA_API_TOKEN>``.
    Results are :class:`semqa.analysis.AnalysisResult` / :class:`ComparisonReport` JSON, made by
    the same :func:`semqa.analysis.analyze` / :func:`~semqa.analysis.compare` the CLI calls.

    Each image's pixel size follows :func:`semqa.io.images.read_image`'s precedence: the
    ``pixel_size_um`` field (an explicit value for every image), else the file's own metadata,
    else the image's entry in ``pixel_sizes_um``, a JSON object mapping the image's lineage
    key (``<image>`` for analyze, ``reference|test/<lot>/<image>`` for compare) to µm per
    pixel: what a ``<stem>.json`` sidecar beside the file gives in-process. Files are analysed
    as uploaded, so the lineage records the digests of the bytes sent.

The generator is ``SEMQA_MODEL_URI`` or ``models:/semqa-generator@production`` from the
MLflow registry; inside a Bento built by ``semqa service build`` it is the packaged BentoML
model (bento argument ``bento_model``) and MLflow is not needed.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import math
from typing import Any

import aiohttp
import anyio
import bentoml
import numpy as np
import torch
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semqa.analysis import DEFAULT_SR, AnalysisConfig, analyze, compare
from semqa.errors import InputError, TooLargeError
from semqa.io.images import Micrograph, encode_image, read_image_bytes
from semqa.sr.inference import load_upscaler
from service.build import BENTO_MODEL_ARG, upscaler_from_bento_model
from service.config import load_settings
from service.schemas import ModelInfo

logger = logging.getLogger("semqa.service")


class ModelMismatchError(InputError):
    """A client asked for a model version other than the one served."""

    http_status = 409


#: Routes served without a token (orchestrators probe them).
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
#: Magic bytes of TIFF files (little- and big-endian, classic and BigTIFF).
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

_SETTINGS = load_settings()
# Bento arguments are fixed at build time and restored when a Bento is served.
_BENTO_MODEL_TAG: str | None = getattr(bentoml.use_arguments(), BENTO_MODEL_ARG, None)
_HAS_GPU = torch.cuda.is_available()


@bentoml.service(
    name="semqa-generator",
    resources={"gpu": 1} if _HAS_GPU else {"cpu": "1"},
    workers=1,
    traffic={"timeout": _SETTINGS.timeout_s},
)
class Generator:
    """The super-resolution generator, with adaptive batching."""

    if _BENTO_MODEL_TAG:  # declared at class level so that ``bentoml build`` packages it
        bento_model = bentoml.models.BentoModel(_BENTO_MODEL_TAG)

    def __init__(self) -> None:
        settings = load_settings()
        tiling = {"tile_size": settings.tile_size, "tile_batch": settings.tile_batch}
        if _BENTO_MODEL_TAG:
            self.upscaler = upscaler_from_bento_model(self.bento_model, **tiling)
            source = "bento"
        else:
            self.upscaler = load_upscaler(settings.model_uri, **tiling)
            source = "registry"
        self.info = ModelInfo(
            model=self.upscaler.ref,
            source=source,
            bento_model=_BENTO_MODEL_TAG,
            device=str(self.upscaler.device),
            batching=settings.batching,
            max_batch_size=settings.max_batch_size,
        )
        logger.info("serving generator %s from %s on %s", self.upscaler.ref.model_dump_json(), source, self.upscaler.device)

    @bentoml.api(batchable=True, max_batch_size=_SETTINGS.max_batch_size, max_latency_ms=_SETTINGS.max_latency_ms)
    def upscale(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Super-resolve a batch gathered from concurrent calls; same-size images run together."""
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(i)
        out: list[np.ndarray] = [np.empty(0)] * len(images)
        for indices in by_shape.values():
            for i, result in zip(indices, self.upscaler.upscale_batch([images[i] for i in indices])):
                out[i] = result
        return out

    @bentoml.api
    def upscale_one(self, image: np.ndarray) -> np.ndarray:
        """Super-resolve one image on its own (the service's unbatched mode)."""
        return self.upscaler.upscale(image)

    @bentoml.api
    def model_info(self) -> ModelInfo:
        """What is served."""
        return self.info


#: Tries of one call to the generator service. Its server (uvicorn) closes idle keep-alive
#: connections after 5 s while the calling service's aiohttp pool keeps them for 15 s, so a
#: call can go out on a connection the server has just closed and fail with
#: ``ServerDisconnectedError`` before reaching the model (seen under load: ~10 % of calls).
#: Upscaling is idempotent, so the call is repeated once on a fresh connection.
_GENERATOR_TRIES = 2


class RemoteUpscaler:
    """The :class:`semqa.sr.inference.Upscaler` interface :mod:`semqa.analysis` uses, served by ``Generator``.

    The analysis then runs in the API process while the generator's calls from all requests
    share one model and its batching queue.
    """

    def __init__(self, generator: Any, info: ModelInfo) -> None:
        self.generator = generator
        self.ref = info.model
        self.scale = int(info.model.scale)
        self.batching = info.batching

    def upscale(self, image: np.ndarray) -> np.ndarray:
        image = np.ascontiguousarray(image, dtype=np.float32)
        for attempt in range(1, _GENERATOR_TRIES + 1):
            try:
                if self.batching:
                    return self.generator.upscale(images=[image])[0]
                return self.generator.upscale_one(image=image)
            except aiohttp.ServerDisconnectedError:
                if attempt == _GENERATOR_TRIES:
                    raise
        raise RuntimeError("no generator call was made")  # only if _GENERATOR_TRIES < 1

    async def upscale_async(self, image: np.ndarray) -> np.ndarray:
        image = np.ascontiguousarray(image, dtype=np.float32)
        for attempt in range(1, _GENERATOR_TRIES + 1):
            try:
                if self.batching:
                    return (await self.generator.to_async.upscale(images=[image]))[0]
                return await self.generator.to_async.upscale_one(image=image)
            except aiohttp.ServerDisconnectedError:
                if attempt == _GENERATOR_TRIES:
                    raise
        raise RuntimeError("no generator call was made")  # only if _GENERATOR_TRIES < 1


# --- request guard ------------------------------------------------------------------------


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class RequestGuard:
    """ASGI middleware: API token on every route but health, and the request body size limit.

    The token is compared in constant time (:func:`hmac.compare_digest`). Bodies are read
    here up to ``max_upload_bytes`` (declared length or streamed), so an oversized upload is
    refused with 413 before any parsing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        settings = load_settings()
        self.token = settings.token().encode()
        self.max_bytes = settings.max_upload_bytes

    def _authorized(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or [])
        scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            resp = _json_error(401, "missing or invalid API token: send 'Authorization: Bearer <token>'",
                               {"WWW-Authenticate": "Bearer"})
            await resp(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        resp = _json_error(413, f"request body exceeds the limit of {self.max_bytes} bytes", {"Connection": "close"})
        await resp(scope, receive, send)


# --- routes -------------------------------------------------------------------------------


def _service() -> Semqa:
    return bentoml.get_current_service()


async def _form(request: Request) -> FormData:
    settings = _service().settings
    try:
        return await request.form(max_files=settings.max_files, max_fields=64)
    except HTTPException as exc:  # starlette's multipart errors
        raise InputError(f"bad multipart form: {exc.detail}") from None
    except ValueError as exc:
        raise InputError(f"bad form: {exc}") from None


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if isinstance(value, UploadFile):
        raise InputError(f"form field {name!r} must be a value, not a file")
    return value.strip() or None


def _files(form: FormData, name: str) -> list[UploadFile]:
    items = form.getlist(name)
    if any(not isinstance(v, UploadFile) for v in items):
        raise InputError(f"form field {name!r} must hold files (multipart file parts), not values")
    return items  # type: ignore[return-value]


def _bool(form: FormData, name: str, default: bool) -> bool:
    value = _field(form, name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise InputError(f"{name} must be true or false, got {value!r}")


def _pixel_size(form: FormData) -> float | None:
    value = _field(form, "pixel_size_um")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise InputError(f"pixel_size_um must be a number of µm per pixel, got {value!r}") from None


def _config(form: FormData) -> AnalysisConfig:
    value = _field(form, "config")
    if value is None:
        return AnalysisConfig()
    try:
        return AnalysisConfig.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "config"
        raise InputError(f"invalid config: {where}: {first['msg']}") from None


def _pixel_sizes(form: FormData, keys: set[str], scheme: str) -> dict[str, float]:
    """The ``pixel_sizes_um`` field: uploaded image (by lineage key) → µm per pixel.

    Strict, as a wrong pixel size silently scales every size: a JSON object whose keys each
    name one uploaded image and whose values are positive finite JSON numbers.
    """
    value = _field(form, "pixel_sizes_um")
    if value is None:
        return {}
    try:
        sizes = json.loads(value)
    except ValueError as exc:
        raise InputError(f"pixel_sizes_um must be a JSON object of image name → µm per pixel: {exc}") from None
    if not isinstance(sizes, dict):
        raise InputError(f"pixel_sizes_um must be a JSON object of image name → µm per pixel, got {type(sizes).__name__}")
    out: dict[str, float] = {}
    for key, size in sizes.items():
        if key not in keys:
            raise InputError(f"pixel_sizes_um names {key!r}, which is not an uploaded image (keys are {scheme})")
        # bool is an int in Python but not a number in JSON; an integer beyond float range overflows.
        number = float(size) if isinstance(size, (int, float)) and not isinstance(size, bool) and abs(size) < 1e300 else math.nan
        if not math.isfinite(number) or number <= 0:
            raise InputError(f"pixel_sizes_um[{key!r}] must be a positive finite number of µm per pixel, got {json.dumps(size)[:40]}")
        out[key] = number
    return out


async def _micrograph(
    upload: UploadFile, name: str, pixel_size: float | None, max_pixels: int, fallback: float | None = None
) -> Micrograph:
    """Decode an upload; ``fallback`` is its pixel size where neither ``pixel_size`` nor its metadata gives one."""
    data = await upload.read()
    # Decoding is CPU work; the name is only a label, never opened.
    mg = await anyio.to_thread.run_sync(
        lambda: read_image_bytes(data, name, pixel_size_um=pixel_size, max_pixels=max_pixels)
    )
    if mg.pixel_size_um is None and fallback is not None:
        # read_image's last resort, the sidecar, arrives as a form entry: the service opens no paths.
        mg = dataclasses.replace(mg, pixel_size_um=fallback)
    return mg


def _image_name(upload: UploadFile, index: int) -> str:
    name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return name or f"image-{index}"


def _lot_and_name(upload: UploadFile, field: str) -> tuple[str, str]:
    parts = (upload.filename or "").replace("\\", "/").split("/")
    if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
        raise InputError(f"{field} file {upload.filename!r}: name it '<lot>/<image>' to say which lot it belongs to")
    return parts[0], parts[1]


async def _upscaler(form: FormData, default_sr: bool = DEFAULT_SR) -> RemoteUpscaler | None:
    if not _bool(form, "sr", default_sr):
        return None
    up = await _service().upscaler()
    wanted = _field(form, "model_version")
    if wanted is not None and wanted != (up.ref.version or ""):
        raise ModelMismatchError(f"model version {wanted} requested, but this service serves version {up.ref.version}")
    return up


def _handle_errors(endpoint):
    """Map input errors to 4xx JSON and anything else to a 500 JSON; the worker keeps serving."""

    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except InputError as exc:
            return _json_error(exc.http_status, str(exc).splitlines()[0])
        except Exception as exc:  # a bug or a failed dependency: log it, answer, keep serving
            logger.exception("request to %s failed", request.url.path)
            return _json_error(500, f"internal error ({type(exc).__name__}); see the service log")

    return wrapped


@_handle_errors
async def super_resolve(request: Request) -> Response:
    svc = _service()
    form = await _form(request)
    uploads = _files(form, "image")
    if len(uploads) != 1:
        raise InputError(f"send exactly one file in the form field 'image' (got {len(uploads)})")
    upload = uploads[0]
    fmt = (_field(form, "format") or "auto").lower()
    if fmt not in ("auto", "png", "tiff", "tif"):
        raise InputError(f"format must be auto, png or tiff, got {fmt!r}")
    head = await upload.read(4)
    await upload.seek(0)
    mg = await _micrograph(upload, _image_name(upload, 0), None, svc.settings.max_pixels)
    up = await svc.upscaler()
    sr = await up.upscale_async(mg.image)
    if fmt == "auto":
        fmt = "tiff" if head in _TIFF_MAGIC else "png"
    depth = 16 if mg.bit_depth > 8 else 8
    px = None if mg.pixel_size_um is None else mg.pixel_size_um / up.scale
    body = await anyio.to_thread.run_sync(lambda: encode_image(sr, fmt, bit_depth=depth, pixel_size_um=px))
    headers = {
        "X-Semqa-Model-Version": str(up.ref.version),
        "X-Semqa-Model-Digest": str(up.ref.weights_digest),
        "X-Semqa-Scale": str(up.scale),
    }
    return Response(body, media_type="image/png" if fmt == "png" else "image/tiff", headers=headers)


@_handle_errors
async def analyze_route(request: Request) -> Response:
    svc = _service()
    form = await _form(request)
    uploads = _files(form, "images")
    if not uploads:
        raise InputError("no images: send one or more files in the form field 'images'")
    config = _config(form)
    pixel_size = _pixel_size(form)
    max_pixels = min(config.max_pixels, svc.settings.max_pixels)
    names = [_image_name(u, i) for i, u in enumerate(uploads)]
    fallbacks = _pixel_sizes(form, set(names), "'<image>', the uploaded file names")
    micrographs = [await _micrograph(u, n, pixel_size, max_pixels, fallbacks.get(n)) for u, n in zip(uploads, names)]
    upscaler = await _upscaler(form)
    result = await anyio.to_thread.run_sync(lambda: analyze(micrographs, config=config, upscaler=upscaler))
    result.sr_by_default = _field(form, "sr") is None
    return Response(result.model_dump_json(), media_type="application/json")


@_handle_errors
async def compare_route(request: Request) -> Response:
    svc = _service()
    form = await _form(request)
    config = _config(form)
    pixel_size = _pixel_size(form)
    max_pixels = min(config.max_pixels, svc.settings.max_pixels)
    named: list[tuple[str, str, str, UploadFile]] = []
    for field in ("reference", "test"):
        uploads = _files(form, field)
        if not uploads:
            raise InputError(f"no {field} images: send files named '<lot>/<image>' in the form field {field!r}")
        named.extend((field, *_lot_and_name(upload, field), upload) for upload in uploads)
    # Keys as semqa.analysis.compare records the inputs in the lineage: product/lot/image.
    keys = {f"{field}/{lot}/{name}" for field, lot, name, _ in named}
    fallbacks = _pixel_sizes(form, keys, "'reference/<lot>/<image>' or 'test/<lot>/<image>'")
    products: dict[str, dict[str, list[Micrograph]]] = {"reference": {}, "test": {}}
    for field, lot, name, upload in named:
        mg = await _micrograph(upload, name, pixel_size, max_pixels, fallbacks.get(f"{field}/{lot}/{name}"))
        products[field].setdefault(lot, []).append(mg)
    products = {field: dict(sorted(lots.items())) for field, lots in products.items()}
    upscaler = await _upscaler(form)
    report = await anyio.to_thread.run_sync(
        lambda: compare(products["reference"], products["test"], config=config, upscaler=upscaler)
    )
    report.sr_by_default = _field(form, "sr") is None
    return Response(report.model_dump_json(), media_type="application/json")


@_handle_errors
async def model_info_route(request: Request) -> Response:
    info = await _service().model_info()
    return Response(info.model_dump_json(), media_type="application/json")


routes = Starlette(
    routes=[
        Route("/super_resolve", super_resolve, methods=["POST"]),
        Route("/analyze", analyze_route, methods=["POST"]),
        Route("/compare", compare_route, methods=["POST"]),
        Route("/model_info", model_info_route, methods=["GET"]),
    ]
)


@bentoml.service(name="semqa", workers=1, traffic={"timeout": _SETTINGS.timeout_s})
@bentoml.asgi_app(routes, path="/v1", name="semqa-v1")
class Semqa:
    """The public API server; the generator runs in :class:`Generator`."""

    generator = bentoml.depends(Generator)

    def __init__(self) -> None:
        self.settings = load_settings()
        self.settings.token()  # refuse to start without a token
        self._info: ModelInfo | None = None

    async def model_info(self) -> ModelInfo:
        """The served model (asked once from the generator service, then kept)."""
        if self._info is None:
            raw = await self.generator.to_async.model_info()
            self._info = raw if isinstance(raw, ModelInfo) else ModelInfo.model_validate(raw)
        return self._info

    async def upscaler(self) -> RemoteUpscaler:
        """The generator as an :class:`~semqa.sr.inference.Upscaler` for :mod:`semqa.analysis`."""
        return RemoteUpscaler(self.generator, await self.model_info())


Semqa.add_asgi_middleware(RequestGuard)

