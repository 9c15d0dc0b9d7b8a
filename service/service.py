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
        POST /v1/analyze         multipart: images=<file>...; pixel_size_um, pixel_sizes_um, sr, config, model_version,
                                 roi, overlays, segmenter
        POST /v1/compare         multipart: reference=<file>..., test=<file>... (file name "<lot>/<image>"),
                                 pixel_size_um, pixel_sizes_um, sr, config, model_version, roi, overlays, segmenter
        GET  /v1/model_info

    and BentoML's ``/healthz``, ``/livez``, ``/readyz`` (open) and ``/metrics`` (token).
    Every route but health and readiness needs ``Authorization: Bearer <SEMQA_API_TOKEN>``.
    Results are :class:`semqa.analysis.AnalysisResult` / :class:`ComparisonReport` JSON, made by
    the same :func:`semqa.analysis.analyze` / :func:`~semqa.analysis.compare` the CLI calls.

    Every request has a time budget (``SEMQA_SERVICE_REQUEST_BUDGET_S``, :mod:`service.budget`):
    past it the answer is a 503 JSON (no analysis slot came free) or 504 JSON (the work ran
    too long; it stops at its next image). Every field of ``config`` has an upper bound
    (:class:`semqa.analysis.AnalysisConfig`), and unknown keys are refused (400 naming the field).

    Each image's pixel size follows :func:`semqa.io.images.read_image`'s precedence: the
    ``pixel_size_um`` field (an explicit value for every image), else the file's own metadata,
    else the image's entry in ``pixel_sizes_um``, a JSON object mapping the image's lineage
    key (``<image>`` for analyze, ``reference|test/<lot>/<image>`` for compare) to µm per
    pixel: what a ``<stem>.json`` sidecar beside the file gives in-process. Files are analysed
    as uploaded, so the lineage records the digests of the bytes sent; each image summary
    records where its pixel size came from (``pixel_size_source``: ``flag`` for the
    ``pixel_size_um`` field, as for the CLI's flag; ``form:pixel_sizes_um``; or the tag that
    stated it).

    ``roi`` (``x,y,w,h`` in input pixels) sets the analysed region of every image, as
    ``semqa analyze --roi``; without it the instrument's data bar is found and left out (the
    ``config`` field's ``detect_databar`` turns that off). ``overlays=true`` adds
    ``"overlays": {key: base64 PNG}`` to the JSON (:func:`semqa.particles.overlay.draw_overlay`,
    keys as in the lineage).

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
import re
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
from semqa.errors import InputError
from semqa.io.images import Micrograph, encode_image, read_image_bytes
from semqa.registry.records import RecordError, record_result
from semqa.registry.store import CredentialFilter
from semqa.io.metadata import check_pixel_size, number
from semqa.sr.inference import load_upscaler
from service.budget import BudgetExceeded, RequestBudget, ServiceBusy, run_in_budget
from service.build import BENTO_MODEL_ARG, BENTO_SEGMENTER_ARG, segmenter_from_bento_model, upscaler_from_bento_model
from service.config import load_settings
from service.schemas import ModelInfo

logger = logging.getLogger("semqa.service")
logger.addFilter(CredentialFilter())  # exceptions may quote a store URI with its password


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
_BENTO_SEGMENTER_TAG: str | None = getattr(bentoml.use_arguments(), BENTO_SEGMENTER_ARG, None)
_HAS_GPU = torch.cuda.is_available()


#: How the API server's client of the generator keeps its connection. BentoML replaces that
#: client's HTTP session after ``max_requests`` calls or ``max_age`` seconds (defaults 100 and
#: 300 s, meant to rebalance across replicas behind a load balancer) and closes the old
#: session at once, failing every call still in flight on it with ``ClientConnectionError:
#: Connector is closed`` (seen under load: 7 of 50 concurrent analyses). The generator is one
#: local worker on a private Unix socket, so there is nothing to rebalance: the session lives
#: as long as the server.
_GENERATOR_CONNECTION = {"max_requests": 2**62, "max_age": 1e12}


@bentoml.service(
    name="semqa-generator",
    resources={"gpu": 1} if _HAS_GPU else {"cpu": "1"},
    workers=1,
    traffic={"timeout": _SETTINGS.timeout_s},
    runner_connection=_GENERATOR_CONNECTION,
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


#: Tries of one call to the generator service. Its server (uvicorn, started by BentoML with
#: no way to set its keep-alive) closes idle keep-alive connections after 5 s while the
#: calling service's aiohttp pool keeps them for 15 s, so a call can go out on a connection
#: the server has just closed: it fails before reaching the model, with
#: ``ServerDisconnectedError`` or, when the close lands while the request is being written,
#: ``ClientConnectionResetError: Cannot write to closing transport`` (seen in the mixed load
#: test: 1 of 200). Upscaling is idempotent, so the call is repeated once on a fresh connection.
_GENERATOR_TRIES = 2
#: The errors of a pooled connection the server had already closed (see above), and only those.
_STALE_CONNECTION = (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError)


class RemoteUpscaler:
    """The :class:`semqa.sr.inference.Upscaler` interface :mod:`semqa.analysis` uses, served by ``Generator``.

    The analysis then runs in the API process while the generator's calls from all requests
    share one model and its batching queue.
    """

    def __init__(self, generator: Any, info: ModelInfo, budget: RequestBudget | None = None) -> None:
        self.generator = generator
        self.ref = info.model
        self.scale = int(info.model.scale)
        self.batching = info.batching
        self.budget = budget

    def upscale(self, image: np.ndarray) -> np.ndarray:
        if self.budget is not None:  # an abandoned analysis sends no more images to the generator
            self.budget.check()
        image = np.ascontiguousarray(image, dtype=np.float32)
        for attempt in range(1, _GENERATOR_TRIES + 1):
            try:
                if self.batching:
                    return self.generator.upscale(images=[image])[0]
                return self.generator.upscale_one(image=image)
            except _STALE_CONNECTION:
                if attempt == _GENERATOR_TRIES:
                    raise
        raise RuntimeError("no generator call was made")  # only if _GENERATOR_TRIES < 1

    async def upscale_async(self, image: np.ndarray) -> np.ndarray:
        if self.budget is not None:
            self.budget.check()
        image = np.ascontiguousarray(image, dtype=np.float32)
        for attempt in range(1, _GENERATOR_TRIES + 1):
            try:
                if self.batching:
                    return (await self.generator.to_async.upscale(images=[image]))[0]
                return await self.generator.to_async.upscale_one(image=image)
            except _STALE_CONNECTION:
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
    # Strict: Python's float() reads "1_0" as 10 and "nan" as a number.
    return number(value, "pixel_size_um (µm per pixel)")


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


def _region_config(form: FormData) -> AnalysisConfig:
    """``config`` with the ``roi`` field (``x,y,w,h``) applied when given."""
    from semqa.io.region import parse_roi

    config = _config(form)
    roi = _field(form, "roi")
    return config if roi is None else config.model_copy(update={"roi": parse_roi(roi)})


def _with_overlays(model: Any, pngs: dict[str, bytes] | None) -> Response:
    """The result JSON, with ``overlays`` (key → base64 PNG) when they were asked for."""
    if pngs is None:
        return Response(model.model_dump_json(), media_type="application/json")
    import base64

    body = model.model_dump(mode="json") | {"overlays": {k: base64.b64encode(v).decode() for k, v in pngs.items()}}
    return JSONResponse(body)


def _overlay_hook(form: FormData):
    """``(hook, pngs)`` when the form asks for overlays, else ``(None, None)``."""
    if not _bool(form, "overlays", False):
        return None, None
    from semqa.particles.overlay import overlay_collector

    return overlay_collector()


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
    upload: UploadFile, name: str, pixel_size: float | None, max_pixels: int, fallback: float | None = None,
    key: str | None = None,
) -> Micrograph:
    """Decode an upload; ``fallback`` is its pixel size where neither ``pixel_size`` nor its metadata gives one.

    With ``key`` (the image's key in ``pixel_sizes_um``) a missing pixel size is refused here,
    in the form's terms; without it (super-resolution) none is needed.
    """
    data = await upload.read()
    # Decoding is CPU work; the name is only a label, never opened.
    mg = await anyio.to_thread.run_sync(
        lambda: read_image_bytes(data, name, pixel_size_um=pixel_size, max_pixels=max_pixels)
    )
    if mg.pixel_size_um is None and fallback is not None:
        # read_image's last resort, the sidecar, arrives as a form entry: the service opens no paths.
        px = check_pixel_size(fallback, f"{name}, pixel_sizes_um")
        mg = dataclasses.replace(mg, pixel_size_um=px, pixel_size_source="form:pixel_sizes_um")
    if key is not None and mg.pixel_size_um is None:
        raise InputError(
            f"{name}: pixel size unknown; send the form field pixel_size_um (µm per pixel, every image) or "
            f"pixel_sizes_um ({json.dumps({key: 0.4}, ensure_ascii=False)} in µm per pixel), or store it in the TIFF metadata"
        )
    return mg


def _image_name(upload: UploadFile, index: int) -> str:
    name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return name or f"image-{index}"


def _lot_and_name(upload: UploadFile, field: str) -> tuple[str, str]:
    parts = (upload.filename or "").replace("\\", "/").split("/")
    if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
        raise InputError(f"{field} file {upload.filename!r}: name it '<lot>/<image>' to say which lot it belongs to")
    return parts[0], parts[1]


async def _upscaler(form: FormData, default_sr: bool = DEFAULT_SR, budget: RequestBudget | None = None) -> RemoteUpscaler | None:
    if not _bool(form, "sr", default_sr):
        return None
    return _check_model_version(form, await _service().upscaler(budget))


def _check_model_version(form: FormData, up: RemoteUpscaler) -> RemoteUpscaler:
    """``up`` if the form's ``model_version`` (when given) is the served one, else 409."""
    wanted = _field(form, "model_version")
    if wanted is not None and wanted != (up.ref.version or ""):
        raise ModelMismatchError(f"model version {wanted} requested, but this service serves version {up.ref.version}")
    return up


def _segmenter(form: FormData):
    """The learned segmenter the form's ``segmenter`` field names (classic, learned or a URI); None for classic."""
    spec = _field(form, "segmenter") or "classic"
    if spec == "classic":
        return None
    # Registry versions only: a client must not make the server open a folder of its choice,
    # and the cache of loaded segmenters stays bounded by the registry's versions.
    if spec != "learned" and not re.fullmatch(r"models:/semqa-segmenter(/\d{1,9}|@[A-Za-z][\w-]{0,63})", spec):
        raise InputError(f"segmenter must be classic, learned or models:/semqa-segmenter/<version>|@<alias>, got {spec[:80]!r}")
    return _service().segmenter(spec)


def _handle_errors(endpoint):
    """Map input errors to 4xx JSON and anything else to a 500 JSON; the worker keeps serving."""

    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except InputError as exc:
            return _json_error(exc.http_status, str(exc).splitlines()[0])
        except (BudgetExceeded, ServiceBusy) as exc:
            return _json_error(exc.http_status, str(exc), {"Retry-After": "60"} if isinstance(exc, ServiceBusy) else None)
        except RecordError as exc:  # the store is down: the result must not leave unrecorded
            logger.error("request to %s: %s", request.url.path, exc)
            return _json_error(exc.http_status, str(exc).splitlines()[0])
        except Exception as exc:  # a bug or a failed dependency: log it, answer, keep serving
            logger.exception("request to %s failed", request.url.path)
            return _json_error(500, f"internal error ({type(exc).__name__}); see the service log")

    return wrapped


@_handle_errors
async def super_resolve(request: Request) -> Response:
    svc = _service()
    budget = RequestBudget(svc.settings.request_budget_s)
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
    up = _check_model_version(form, await svc.upscaler(budget))  # before decoding: a 409 needs no image
    mg = await _micrograph(upload, _image_name(upload, 0), None, svc.settings.max_pixels)
    try:
        # The generator finishes the image it has (bounded by max_pixels); nobody waits for it.
        with anyio.fail_after(max(0.0, budget.remaining())):
            sr = await up.upscale_async(mg.image)
    except TimeoutError:
        raise BudgetExceeded(budget.message()) from None
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
    budget = RequestBudget(svc.settings.request_budget_s)
    form = await _form(request)
    uploads = _files(form, "images")
    if not uploads:
        raise InputError("no images: send one or more files in the form field 'images'")
    config = _region_config(form)
    pixel_size = _pixel_size(form)
    max_pixels = min(config.max_pixels, svc.settings.max_pixels)
    names = [_image_name(u, i) for i, u in enumerate(uploads)]
    fallbacks = _pixel_sizes(form, set(names), "'<image>', the uploaded file names")
    micrographs = [await _micrograph(u, n, pixel_size, max_pixels, fallbacks.get(n), key=n) for u, n in zip(uploads, names)]
    upscaler = await _upscaler(form, budget=budget)
    hook, pngs = _overlay_hook(form)
    segmenter = await anyio.to_thread.run_sync(lambda: _segmenter(form))
    sr_by_default = _field(form, "sr") is None
    result = await run_in_budget(
        lambda: record_result(
            analyze(micrographs, config=config, upscaler=upscaler, hook=hook, segmenter=segmenter, progress=budget.progress)
            .model_copy(update={"sr_by_default": sr_by_default})
        ),
        budget, svc.slots(),
    )
    return _with_overlays(result, pngs)


@_handle_errors
async def compare_route(request: Request) -> Response:
    svc = _service()
    budget = RequestBudget(svc.settings.request_budget_s)
    form = await _form(request)
    config = _region_config(form)
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
        key = f"{field}/{lot}/{name}"
        mg = await _micrograph(upload, name, pixel_size, max_pixels, fallbacks.get(key), key=key)
        products[field].setdefault(lot, []).append(mg)
    products = {field: dict(sorted(lots.items())) for field, lots in products.items()}
    upscaler = await _upscaler(form, budget=budget)
    hook, pngs = _overlay_hook(form)
    segmenter = await anyio.to_thread.run_sync(lambda: _segmenter(form))
    sr_by_default = _field(form, "sr") is None
    report = await run_in_budget(
        lambda: record_result(
            compare(products["reference"], products["test"], config=config, upscaler=upscaler, hook=hook, segmenter=segmenter, progress=budget.progress)
            .model_copy(update={"sr_by_default": sr_by_default})
        ),
        budget, svc.slots(),
    )
    return _with_overlays(report, pngs)


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
    if _BENTO_SEGMENTER_TAG:  # class level, so that ``bentoml build`` packages it (semqa.service.build.import_segmenter)
        bento_segmenter = bentoml.models.BentoModel(_BENTO_SEGMENTER_TAG)

    def __init__(self) -> None:
        self.settings = load_settings()
        self.settings.token()  # refuse to start without a token
        self._info: ModelInfo | None = None
        self._slots: anyio.CapacityLimiter | None = None
        self._segmenters: dict[str, Any] = {}

    def slots(self) -> anyio.CapacityLimiter:
        """The analysis slots (``max_concurrent_analyses``); made in the event loop, on first use."""
        if self._slots is None:
            self._slots = anyio.CapacityLimiter(self.settings.max_concurrent_analyses)
        return self._slots

    async def model_info(self) -> ModelInfo:
        """The served model (asked once from the generator service, then kept)."""
        if self._info is None:
            raw = await self.generator.to_async.model_info()
            self._info = raw if isinstance(raw, ModelInfo) else ModelInfo.model_validate(raw)
        return self._info

    def segmenter(self, spec: str) -> Any:
        """The learned segmenter ``spec`` names, loaded from the registry on first use and kept.

        Runs in this (API) process on its CPU or GPU; kept per spec, so a moved alias is
        seen after a restart. In a Bento built with a segmenter, ``learned`` is the packaged
        one (no registry needed), as the generator is.
        """
        if spec not in self._segmenters:
            if spec == "learned" and _BENTO_SEGMENTER_TAG:
                self._segmenters[spec] = segmenter_from_bento_model(self.bento_segmenter)
            else:
                from semqa.particles.learned import load_segmenter

                self._segmenters[spec] = load_segmenter(spec)
        return self._segmenters[spec]

    async def upscaler(self, budget: RequestBudget | None = None) -> RemoteUpscaler:
        """The generator as an :class:`~semqa.sr.inference.Upscaler` for :mod:`semqa.analysis`.

        With a ``budget``, each generator call first checks it (an abandoned analysis stops).
        """
        return RemoteUpscaler(self.generator, await self.model_info(), budget)


Semqa.add_asgi_middleware(RequestGuard)

