"""Reading and writing micrographs with their pixel size.

Every image semqa measures carries a pixel size in µm per pixel. It comes, in this order,
from the caller (``--pixel-size``), from the file's own metadata, or from a JSON sidecar
``<stem>.json`` beside the file with a ``pixel_size_um`` key. Where none is known,
:func:`require_pixel_size` raises; there is never a silent default.

Metadata that is trusted for the pixel size:

* the JSON ``ImageDescription`` semqa writes (``{"pixel_size_um": ...}``);
* ImageJ TIFF metadata with a length unit (``unit=micron``/``um``/``nm``) and X resolution;
* TIFF X resolution with ResolutionUnit = centimeter.

A TIFF resolution in dots per inch is ignored on purpose: 72 or 96 dpi is a print setting
that many writers add by default, not a physical pixel size.

Images are returned as 2-D ``float32`` arrays scaled to [0, 1] by their bit depth; colour
images are converted to luminance (ITU-R BT.709 weights, :func:`skimage.color.rgb2gray`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import struct
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError
from skimage.color import rgb2gray

from semqa.errors import InputError, TooLargeError, UnsupportedMediaError
from semqa.io.digests import bytes_digest

#: File suffixes listed as images when a folder is given.
IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")

#: Default pixel-count limit: 1e8 pixels (10 000 × 10 000) is well above any SEM frame
#: (typically ≤ 6144 × 4096) and guards against decompression bombs.
DEFAULT_MAX_PIXELS: int = 100_000_000

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_UM_PER_UNIT = {"micron": 1.0, "microns": 1.0, "um": 1.0, "µm": 1.0, "\\u00b5m": 1.0, "nm": 1e-3, "mm": 1e3}


@dataclasses.dataclass(frozen=True)
class Micrograph:
    """A grayscale micrograph as read from a file or upload.

    Attributes
    ----------
    name : str
        File name (no directories) or the upload's name.
    image : numpy.ndarray
        2-D ``float32`` array in [0, 1].
    pixel_size_um : float or None
        Pixel size in µm per pixel, ``None`` where the input did not say.
    bit_depth : int
        Bits per sample of the stored image (8 or 16; 32 for float TIFFs).
    digest : str
        ``sha256:<hex>`` of the file's bytes, for lineage.
    path : str or None
        Absolute path it was read from; ``None`` for uploads.
    """

    name: str
    image: np.ndarray
    pixel_size_um: float | None
    bit_depth: int
    digest: str
    path: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape  # type: ignore[return-value]


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def expand_image_paths(paths: list[str | Path]) -> list[Path]:
    """Files as given plus the images inside any folder given; raises on a missing path."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(list_images(p))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"no such file or folder: {p}")
    if not out:
        raise InputError("no images found in " + ", ".join(map(str, paths)))
    return out


def check_pixel_size(value: float, where: str) -> float:
    """``value`` as a float if it is a positive finite pixel size in µm, else an :class:`InputError` naming ``where``."""
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"pixel size must be a positive number of µm per pixel, got {value} ({where})")
    return value


def _sidecar_pixel_size(path: Path) -> float | None:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable pixel-size sidecar {sidecar}: {exc}") from None
    if not isinstance(meta, dict) or "pixel_size_um" not in meta:
        return None
    return check_pixel_size(meta["pixel_size_um"], str(sidecar))


def _tiff_pixel_size(tif: tifffile.TiffFile) -> float | None:
    page = tif.pages[0]
    desc = page.tags.get("ImageDescription")
    if desc is not None and isinstance(desc.value, str) and desc.value.lstrip().startswith("{"):
        try:
            meta = json.loads(desc.value)
        except ValueError:
            meta = {}
        if isinstance(meta, dict) and "pixel_size_um" in meta:
            return check_pixel_size(meta["pixel_size_um"], "TIFF description")
    xres = page.tags.get("XResolution")
    if xres is None:
        return None
    num, den = xres.value
    if num == 0 or den == 0:
        return None
    pixels_per_unit = num / den
    ij = tif.imagej_metadata or {}
    unit = str(ij.get("unit", "")).strip().lower()
    if unit in _UM_PER_UNIT:
        return check_pixel_size(_UM_PER_UNIT[unit] / pixels_per_unit, "ImageJ metadata")
    res_unit = page.tags.get("ResolutionUnit")
    if res_unit is not None and int(res_unit.value) == 3:  # centimeter
        return check_pixel_size(1e4 / pixels_per_unit, "TIFF resolution")
    return None


def _to_unit_float(arr: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """Scale a decoded image to float32 [0, 1] grayscale; returns (image, bit depth)."""
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        if arr.shape[-1] == 4:
            arr = arr[..., :3]
        arr_f, depth = _scale_to_unit(arr, name, arr.dtype)
        return rgb2gray(arr_f).astype(np.float32), depth
    if arr.ndim == 3 and arr.shape[-1] in (1, 2):
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise InputError(f"{name}: expected a 2-D grayscale or RGB image, got shape {arr.shape}")
    return _scale_to_unit(arr, name, arr.dtype)


def _scale_to_unit(arr: np.ndarray, name: str, dtype: np.dtype) -> tuple[np.ndarray, int]:
    if dtype == np.bool_:
        return arr.astype(np.float32), 1
    if np.issubdtype(dtype, np.unsignedinteger) or np.issubdtype(dtype, np.signedinteger):
        bits = np.iinfo(dtype).bits
        if np.issubdtype(dtype, np.signedinteger) and arr.min(initial=0) < 0:
            raise InputError(f"{name}: signed integer images with negative values are not supported")
        return (arr.astype(np.float64) / (2**bits - 1)).astype(np.float32), bits
    if np.issubdtype(dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{name}: image contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 1:
            raise InputError(f"{name}: floating-point image values must lie in [0, 1], got [{lo:g}, {hi:g}]")
        return arr.astype(np.float32), 32
    raise InputError(f"{name}: unsupported pixel type {dtype}")


def _decode(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, int, float | None]:
    if len(data) == 0:
        raise InputError(f"{name}: empty file")
    if data[:4] in _TIFF_MAGIC:
        try:
            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                if not tif.pages:
                    raise InputError(f"{name}: TIFF holds no image")
                page = tif.pages[0]
                _check_size(page.shape[:2] if len(page.shape) >= 2 else (0, 0), name, max_pixels)
                arr = page.asarray()
                pixel_size = _tiff_pixel_size(tif)
        except InputError:
            raise
        except Exception as exc:  # tifffile raises many types on corrupt input
            raise InputError(f"{name}: corrupt or unreadable TIFF ({exc})") from None
        image, depth = _to_unit_float(np.asarray(arr), name)
        return image, depth, pixel_size
    try:
        with Image.open(io.BytesIO(data)) as img:
            _check_size((img.height, img.width), name, max_pixels)
            img.load()
            if img.mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif img.mode in ("LA", "PA"):
                img = img.convert("L")
            elif img.mode == "CMYK":
                img = img.convert("RGB")
            arr = np.asarray(img)
    except Image.DecompressionBombError as exc:
        raise TooLargeError(f"{name}: pixel count exceeds the limit of the decoder ({exc})") from None
    except UnidentifiedImageError:
        if data[:8] == _PNG_MAGIC and len(data) >= 24:
            width, height = struct.unpack(">II", data[16:24])
            _check_size((height, width), name, max_pixels)
            raise InputError(f"{name}: corrupt PNG") from None
        raise UnsupportedMediaError(f"{name}: not an image (TIFF, PNG, JPEG or BMP expected)") from None
    except InputError:
        raise
    except Exception as exc:  # truncated or corrupt data
        raise InputError(f"{name}: corrupt or truncated image ({exc})") from None
    image, depth = _to_unit_float(arr, name)
    return image, depth, None


def _check_size(shape: tuple[int, ...], name: str, max_pixels: int) -> None:
    h, w = int(shape[0]), int(shape[1])
    if h == 0 or w == 0:
        raise InputError(f"{name}: zero-size image ({w}×{h})")
    if h * w > max_pixels:
        raise TooLargeError(f"{name}: {w}×{h} = {h * w} pixels exceeds the limit of {max_pixels}")


def read_image_bytes(
    data: bytes,
    name: str,
    *,
    pixel_size_um: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Micrograph:
    """Decode an uploaded image; the type is taken from its content, not its name.

    Parameters
    ----------
    data : bytes
        The file's bytes.
    name : str
        A display name (never opened as a path).
    pixel_size_um : float, optional
        Overrides any pixel size in the metadata.
    max_pixels : int
        Larger images raise :class:`~semqa.errors.TooLargeError` before decoding.
    """
    if max_pixels < 1:  # 0 would refuse every image, a negative limit means nothing
        raise InputError(f"the pixel limit must be at least 1, got {max_pixels}")
    image, depth, meta_px = _decode(data, name, max_pixels)
    px = check_pixel_size(pixel_size_um, "given") if pixel_size_um is not None else meta_px
    return Micrograph(name=name, image=image, pixel_size_um=px, bit_depth=depth, digest=bytes_digest(data))


def read_image(
    path: str | Path,
    *,
    pixel_size_um: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Micrograph:
    """Read a micrograph file, with its pixel size from the argument, metadata or sidecar.

    Raises :class:`~semqa.errors.InputError` (one line, naming the file) for anything that
    is not a readable image.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not an image") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    mg = read_image_bytes(data, path.name, pixel_size_um=pixel_size_um, max_pixels=max_pixels)
    pixel_size = mg.pixel_size_um if mg.pixel_size_um is not None else _sidecar_pixel_size(path)
    return dataclasses.replace(mg, pixel_size_um=pixel_size, path=str(path.resolve()))


def require_pixel_size(mg: Micrograph) -> float:
    """The micrograph's pixel size, or a clear :class:`InputError` naming where to give one."""
    if mg.pixel_size_um is None:
        raise InputError(
            f"{mg.name}: pixel size unknown; pass --pixel-size UM, or store it in the TIFF "
            f"metadata or a sidecar {Path(mg.name).stem}.json with \"pixel_size_um\""
        )
    return mg.pixel_size_um


def to_uint(image: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """A [0, 1] float image as ``uint8`` or ``uint16`` (rounded, clipped)."""
    if bit_depth not in (8, 16):
        raise ValueError("bit_depth must be 8 or 16")
    top = 2**bit_depth - 1
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.clip(np.rint(np.asarray(image, dtype=np.float64) * top), 0, top).astype(dtype)


def encode_image(image: np.ndarray, fmt: str = "png", *, bit_depth: int = 8, pixel_size_um: float | None = None) -> bytes:
    """Encode a [0, 1] float image as PNG or TIFF bytes (TIFF keeps the pixel size)."""
    arr = to_uint(image, bit_depth)
    buf = io.BytesIO()
    if fmt.lower() in ("tif", "tiff"):
        kwargs: dict = {}
        if pixel_size_um is not None:
            ppcm = 1e4 / pixel_size_um
            kwargs = {
                "resolution": (ppcm, ppcm),
                "resolutionunit": "CENTIMETER",
                "description": json.dumps({"pixel_size_um": pixel_size_um}),
            }
        tifffile.imwrite(buf, arr, photometric="minisblack", metadata=None, **kwargs)
    elif fmt.lower() == "png":
        Image.fromarray(arr).save(buf, format="PNG")
    else:
        raise InputError(f"unsupported output format {fmt!r} (png or tiff)")
    return buf.getvalue()


def write_image(
    path: str | Path,
    image: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    bit_depth: int = 8,
) -> Path:
    """Write a [0, 1] float image; TIFF stores the pixel size inside, PNG in a sidecar.

    The format follows the suffix (``.tif``/``.tiff`` or ``.png``).
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_image(image, fmt, bit_depth=bit_depth, pixel_size_um=pixel_size_um))
    if fmt == "png" and pixel_size_um is not None:
        path.with_suffix(".json").write_text(json.dumps({"pixel_size_um": pixel_size_um}) + "\n")
    return path
