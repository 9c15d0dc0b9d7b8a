"""Reading and writing micrographs with their pixel size.

Every image semqa measures carries a pixel size in µm per pixel and the place it came from
(:attr:`Micrograph.pixel_size_source`). It comes from the caller (``--pixel-size``, source
``flag``), which overrides the file and says so in :attr:`Micrograph.pixel_size_note`; else
from the instrument's own metadata or a sidecar beside the file, read by
:mod:`semqa.io.metadata` (Zeiss, Thermo Fisher/FEI, TESCAN, JEOL, Hitachi, OME, ImageJ,
semqa's ``<stem>.json``). Where none is known, :func:`require_pixel_size` raises; there is
never a silent default.

A multi-page TIFF is refused: its pages may be several detectors of one field of view (SE
and BSE), which are not independent units, or a stack; silently taking page 1 would hide
the rest. Reduced-resolution pages (thumbnails, NewSubfileType bit 0) are not images of
their own and are skipped.

Images are returned as 2-D ``float32`` arrays scaled to [0, 1] by their bit depth (a 16-bit
image keeps all 65 536 levels); colour images are converted to luminance (ITU-R BT.709
weights, :func:`skimage.color.rgb2gray`).

Hidden entries (names starting with ``.``, such as ``.ipynb_checkpoints/`` or macOS's
``._x.tif``; ``__MACOSX/``; ``Thumbs.db``) are never listed as images or lots.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
from pathlib import Path

import numpy as np
import tifffile

from semqa.errors import InputError, TooLargeError, UnsupportedMediaError
from semqa.io.digests import bytes_digest
from semqa.io.metadata import PixelSize, check_pixel_size, resolve, sidecar_pixel_sizes, tiff_pixel_sizes
from semqa.io.limits import DEFAULT_MAX_PIXELS

#: File suffixes listed as images when a folder is given.
IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


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
    pixel_size_source : str or None
        Where ``pixel_size_um`` came from: ``flag`` (given by the caller), a tag such as
        ``tiff:CZ_SEM:ap_image_pixel_size`` or a sidecar such as ``sidecar:x.txt:...``.
    pixel_size_note : str or None
        The file's own value where a given one overrode it.
    pixel_size_warning : str or None
        Why the pixel size is less sure than instrument metadata (read from the scale bar:
        :func:`with_scale_bar_pixel_size`).
    """

    name: str
    image: np.ndarray
    pixel_size_um: float | None
    bit_depth: int
    digest: str
    path: str | None = None
    pixel_size_source: str | None = None
    pixel_size_note: str | None = None
    pixel_size_warning: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape  # type: ignore[return-value]


def is_hidden(path: str | Path) -> bool:
    """Whether ``path`` names an entry no user means as data.

    Dot-files and dot-folders (``.ipynb_checkpoints``, ``.DS_Store``, macOS's AppleDouble
    ``._x.tif`` beside every copied ``x.tif``), ``__MACOSX`` of unpacked archives and
    Windows' ``Thumbs.db`` / ``desktop.ini``.
    """
    name = Path(path).name
    return name.startswith(".") or name in {"__MACOSX", "Thumbs.db", "desktop.ini"}


@dataclasses.dataclass(frozen=True)
class ImagePath:
    """A micrograph file to be read where it is analysed, so a lot is never held in memory at once.

    :func:`semqa.analysis.analyze` and :func:`semqa.analysis.compare` take these in place of
    :class:`Micrograph` objects; each is read (with :func:`read_image`) by the process that
    analyses it.
    """

    path: Path
    pixel_size_um: float | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    force_pixel_size: bool = False
    scale_bar_um: float | None = None  # printed length of the data bar's scale bar: the opt-in fallback

    @property
    def name(self) -> str:
        return Path(self.path).name

    def read(self) -> Micrograph:
        mg = read_image(
            self.path, pixel_size_um=self.pixel_size_um, max_pixels=self.max_pixels, force_pixel_size=self.force_pixel_size
        )
        return mg if self.scale_bar_um is None else with_scale_bar_pixel_size(mg, self.scale_bar_um, self.force_pixel_size)


def with_scale_bar_pixel_size(mg: Micrograph, length_um: float, force: bool = False) -> Micrograph:
    """``mg`` with its pixel size read from its data bar's scale bar of printed length ``length_um``.

    The opt-in fallback (:mod:`semqa.io.scalebar`) for files that state no pixel size: where
    metadata, a sidecar or a flag gives one, that one is kept. The value read is checked like
    any other (:func:`semqa.io.metadata.check_pixel_size`) and carries a warning.
    """
    if mg.pixel_size_um is not None:
        return mg
    # Imported where used: the scale-bar fallback is opt-in (--scale-bar).
    from semqa.io.scalebar import pixel_size_from_scale_bar

    um, source, warning = pixel_size_from_scale_bar(mg.image, length_um, mg.name)
    um = check_pixel_size(um, f"{mg.name}: {source}", force=force)
    return dataclasses.replace(mg, pixel_size_um=um, pixel_size_source=source, pixel_size_warning=warning)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; hidden files are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not is_hidden(p) and p.suffix.lower() in IMAGE_SUFFIXES
    )


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


def _to_unit_float(arr: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """Scale a decoded image to float32 [0, 1] grayscale; returns (image, bit depth)."""
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        from skimage.color import rgb2gray  # imported here: it loads scipy.linalg, costly for grayscale-only runs

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


def _single_page(tif: tifffile.TiffFile, name: str) -> tifffile.TiffPage:
    """The one full-resolution page of a TIFF; several are refused (module docstring)."""
    pages = [page for page in tif.pages if not page.is_reduced]
    if not pages:
        raise InputError(f"{name}: TIFF holds no image")
    if len(pages) > 1:
        raise InputError(
            f"{name}: TIFF holds {len(pages)} images (pages); semqa analyses one image per file — "
            f"save each page as its own file (pages of several detectors of one field are not independent units)"
        )
    return pages[0]


def _decode(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, int, list[PixelSize] | InputError]:
    """Image, bit depth and the pixel sizes its metadata state (or the error reading them)."""
    if len(data) == 0:
        raise InputError(f"{name}: empty file")
    if data[:4] in _TIFF_MAGIC:
        try:
            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                page = _single_page(tif, name)
                _check_size(page.shape[:2] if len(page.shape) >= 2 else (0, 0), name, max_pixels)
                arr = page.asarray()
                try:
                    found: list[PixelSize] | InputError = tiff_pixel_sizes(tif, page)
                except InputError as exc:
                    # Kept, not raised: a pixel size given by the user may make it irrelevant.
                    found = InputError(f"{name}: {exc}")
        except InputError:
            raise
        except Exception as exc:  # tifffile raises many types on corrupt input
            raise InputError(f"{name}: corrupt or unreadable TIFF ({exc})") from None
        image, depth = _to_unit_float(np.asarray(arr), name)
        return image, depth, found
    # Imported here: TIFF, what SEMs write, is read by tifffile; Pillow (~25 ms of start-up) only
    # decodes the other formats.
    from PIL import Image, UnidentifiedImageError

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
    return image, depth, []


def _check_size(shape: tuple[int, ...], name: str, max_pixels: int) -> None:
    h, w = int(shape[0]), int(shape[1])
    if h == 0 or w == 0:
        raise InputError(f"{name}: zero-size image ({w}×{h})")
    if h * w > max_pixels:
        raise TooLargeError(f"{name}: {w}×{h} = {h * w} pixels exceeds the limit of {max_pixels}")


def _read(
    data: bytes,
    name: str,
    *,
    path: Path | None,
    pixel_size_um: float | None,
    pixel_size_source: str,
    force_pixel_size: bool,
    max_pixels: int,
) -> Micrograph:
    image, depth, found = _decode(data, name, max_pixels)
    sidecars: list[PixelSize] | InputError = []
    if path is not None:
        try:
            sidecars = sidecar_pixel_sizes(path, image.shape[1])
        except InputError as exc:
            sidecars = InputError(f"{name}: {exc}")
    px = resolve(
        found, name, given=pixel_size_um, given_source=pixel_size_source, force=force_pixel_size, sidecars=sidecars
    )
    return Micrograph(
        name=name,
        image=image,
        pixel_size_um=px.um,
        bit_depth=depth,
        digest=bytes_digest(data),
        path=str(path.resolve()) if path is not None else None,
        pixel_size_source=px.source,
        pixel_size_note=px.note,
    )


def read_image_bytes(
    data: bytes,
    name: str,
    *,
    pixel_size_um: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    force_pixel_size: bool = False,
    pixel_size_source: str = "flag",
) -> Micrograph:
    """Decode an uploaded image; the type is taken from its content, not its name.

    Parameters
    ----------
    data : bytes
        The file's bytes.
    name : str
        A display name (never opened as a path, so no sidecar is read).
    pixel_size_um : float, optional
        Overrides any pixel size in the metadata.
    max_pixels : int
        Larger images raise :class:`~semqa.errors.TooLargeError` before decoding.
    force_pixel_size : bool
        Accept a pixel size outside :data:`semqa.io.metadata.PLAUSIBLE_RANGE_UM`.
    pixel_size_source : str
        Source recorded for ``pixel_size_um`` (``flag``; the service names its form field).
    """
    if max_pixels < 1:  # 0 would refuse every image, a negative limit means nothing
        raise InputError(f"the pixel limit must be at least 1, got {max_pixels}")
    return _read(
        data, name, path=None, pixel_size_um=pixel_size_um, pixel_size_source=pixel_size_source,
        force_pixel_size=force_pixel_size, max_pixels=max_pixels,
    )


def read_image(
    path: str | Path,
    *,
    pixel_size_um: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    force_pixel_size: bool = False,
) -> Micrograph:
    """Read a micrograph file, with its pixel size from the argument, metadata or sidecars.

    Raises :class:`~semqa.errors.InputError` (one line, naming the file) for anything that
    is not a readable image, and for metadata that are malformed, disagree or are implausible
    (see :mod:`semqa.io.metadata`).
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
    return _read(
        data, path.name, path=path, pixel_size_um=pixel_size_um, pixel_size_source="flag",
        force_pixel_size=force_pixel_size, max_pixels=max_pixels,
    )


def require_pixel_size(mg: Micrograph) -> float:
    """The micrograph's pixel size, or a clear :class:`InputError` naming where to give one."""
    if mg.pixel_size_um is None:
        raise InputError(
            f"{mg.name}: pixel size unknown (no instrument metadata or sidecar states one); pass "
            f"--pixel-size UM, or store it in the TIFF metadata or a sidecar {Path(mg.name).stem}.json "
            f"with \"pixel_size_um\" (or, where the data bar shows a scale bar, give its label as --scale-bar, e.g. 10um)"
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
        from PIL import Image  # imported where used (start-up; see _decode)

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
