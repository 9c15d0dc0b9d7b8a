"""The pixel size an SEM file records about itself, and where it came from.

Every candidate is a :class:`PixelSize`: µm per pixel plus a ``source`` naming the tag or
sidecar and key it was read from, so a result can say where each size came from.

==================  ==========================================================  ==========================================
instrument          where (what semqa reads)                                    source recorded
==================  ==========================================================  ==========================================
Zeiss SmartSEM      TIFF tag 34118 ``CZ_SEM``, ``AP_IMAGE_PIXEL_SIZE``           ``tiff:CZ_SEM:ap_image_pixel_size``
                    "Image Pixel Size = 7.34375 nm" (tifffile ``sem_metadata``)
Thermo Fisher/FEI   TIFF tag 34682 ``FEI_HELIOS`` or 34680 ``FEI_SFEG`` (INI     ``tiff:FEI_HELIOS:[Scan]PixelWidth``
(Helios, Quanta,    text, parsed by tifffile): ``[Scan] PixelWidth`` /
Apreo, Prisma,      ``PixelHeight`` in m; ``[Image] ResolutionX`` when present
Scios, Phenom)      must equal the stored width
Thermo Fisher XML   TIFF tag 34683 (``FEI_TITAN`` in tifffile, no parser there):     ``tiff:FEI_TITAN:Metadata/BinaryResult/``
                    ``<Metadata>`` … ``BinaryResult/PixelSize/X unit="m"``        ``PixelSize/X``
                    (Bio-Formats' FEITiffReader, pynxtools-em)
TESCAN              TIFF tag 50431 (INI text after a binary prefix; tifffile     ``tiff:TESCAN:PixelSizeX``,
                    has no parser for it) or sidecar ``<stem>.hdr`` /            ``sidecar:x.hdr:[MAIN]PixelSizeX``
                    ``<stem>-tif.hdr`` ``[MAIN]``: ``PixelSizeX/Y`` in m
JEOL                sidecar ``<stem>.txt``: ``$$SM_MICRON_MARKER`` (bar length,  ``sidecar:x.txt:$$SM_MICRON_MARKER/``
                    e.g. ``1um``) / ``$$SM_MICRON_BAR`` (bar length in px);      ``$$SM_MICRON_BAR``
                    ``$CM_FULL_SIZE`` must match the stored width
Hitachi             sidecar ``<stem>.txt`` ``[SemImageFile]``: ``PixelSize``     ``sidecar:x.txt:[SemImageFile]PixelSize``
                    in nm; ``DataSize=WxH`` must match the stored width
OME-TIFF            ``Pixels`` ``PhysicalSizeX/Y`` with ``PhysicalSizeXUnit``    ``tiff:OME:PhysicalSizeX``
                    (default µm, as the OME schema says)
ImageJ              description ``unit=micron|um|nm|...`` + X/YResolution        ``tiff:ImageJ:unit+XResolution``
semqa               JSON ``ImageDescription`` ``{"pixel_size_um": ...}``,         ``tiff:ImageDescription:pixel_size_um``,
                    sidecar ``<stem>.json`` ``pixel_size_um``                    ``sidecar:x.json:pixel_size_um``
baseline TIFF       X/YResolution with ResolutionUnit = centimeter               ``tiff:XResolution(cm)``
==================  ==========================================================  ==========================================

Formats as described by tifffile's parsers (``read_cz_sem``, ``read_fei_metadata``) and
by the public readers of the vendors' files (HyperSpy/RosettaSciIO, Gwyddion's ``tescan.c``,
pynxtools-em's JEOL, Hitachi and TESCAN parsers, NexusLIMS's TESCAN extractor).

Rules (each refuses with a one-line :class:`~semqa.errors.InputError` rather than guess):

* a resolution in dots per inch is a print setting, never a pixel size;
* values must be numbers: ``true``, ``null``, lists, ``"1_0"`` (which Python's ``float``
  reads as 10) or ``nan`` are errors;
* pixels must be square within :data:`SQUARE_TOLERANCE`: every measurement semqa makes
  (areas, Feret diameters) assumes one scale for both axes, so X ≠ Y is refused;
* the tags inside one file must agree within :data:`AGREEMENT_TOLERANCE`; a disagreement
  usually means the image was resized after acquisition, which vendor tags do not follow;
* sidecars serve where the file itself states nothing; where both do, the file wins (its
  tags travel with its pixels) and a sidecar that disagrees is kept in the note;
* a value outside :data:`PLAUSIBLE_RANGE_UM` is refused unless forced — it is almost always
  a unit mistake. The bounds: an SEM's highest magnification (~10⁶× on a 10 cm, 1024 px
  frame) gives ~0.1 nm per pixel, below its ~0.5 nm resolution; its lowest (~5×, a 2 cm
  field) over as few as 256 px gives ~80 µm per pixel;
* a metadata value recording an image size other than the stored one is refused, as the
  calibration then describes other pixels.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tifffile

from semqa.errors import InputError

if TYPE_CHECKING:  # for annotations: the parsers are imported where a vendor's metadata needs them
    import configparser
    import xml.etree.ElementTree as ET

#: Smallest and largest pixel size accepted without forcing, µm per pixel.
PLAUSIBLE_RANGE_UM: tuple[float, float] = (1e-4, 100.0)

#: Largest relative X/Y difference taken as square pixels. Vendors print sizes with ≥ 4
#: significant digits, so honest rounding stays far below 1 %.
SQUARE_TOLERANCE: float = 0.01

#: Largest relative difference between two sources of one file taken as agreement (same
#: reasoning: rounding of printed values is ≪ 1 %, a resize changes the size by far more).
AGREEMENT_TOLERANCE: float = 0.01

#: µm per unit for the length units the formats use (lower case; ImageJ escapes µ as \\u00b5).
UM_PER_UNIT: dict[str, float] = {
    "pm": 1e-6,
    "å": 1e-4,
    "angstrom": 1e-4,
    "nm": 1e-3,
    "um": 1.0,
    "µm": 1.0,  # U+00B5 micro sign
    "μm": 1.0,  # U+03BC Greek mu
    "\\u00b5m": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
}

# A plain decimal number: no "1_0", "nan", "inf", "0x10", which float() would accept.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_LENGTH = re.compile(rf"\s*({_NUMBER.pattern})\s*([^\s\d.+-][^\s]*)?\s*")
_KEY_VALUE = re.compile(r"^\s*([A-Za-z][\w.]*)\s*=\s*(.*?)\s*$")

_TAG_CZ_SEM, _TAG_FEI_SFEG, _TAG_FEI_HELIOS, _TAG_TESCAN = 34118, 34680, 34682, 50431
#: Thermo Fisher's XML metadata tag (tifffile names it FEI_TITAN; tifffile has no parser for it).
_TAG_FEI_XML = 34683


@dataclasses.dataclass(frozen=True)
class PixelSize:
    """One pixel size a file states about itself.

    Attributes
    ----------
    um : float
        µm per pixel.
    source : str
        Where it was read, e.g. ``tiff:CZ_SEM:ap_image_pixel_size`` or
        ``sidecar:x.txt:[SemImageFile]PixelSize``.
    """

    um: float
    source: str


def number(value: Any, where: str) -> float:
    """A finite number from a metadata value, refusing anything that is not plainly one.

    ``bool`` is refused although Python counts it as an ``int``; strings must be plain
    decimals (``"1_0"``, ``"nan"``, ``"1e"`` are refused).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{where}: expected a number, got {json.dumps(value, default=str)[:40]}")
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value.strip()):
            raise InputError(f"{where}: expected a number, got {value.strip()[:40]!r}")
        value = float(value)
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{where}: expected a finite number, got {value}")
    return value


def to_um(value: Any, unit: str, where: str) -> float:
    """``value`` in ``unit`` (a key of :data:`UM_PER_UNIT`, any case) converted to µm."""
    factor = UM_PER_UNIT.get(str(unit).strip().lower())
    if factor is None:
        raise InputError(f"{where}: unknown length unit {unit!r}")
    return number(value, where) * factor


def length_um(text: Any, where: str, default_unit: str | None = None) -> float:
    """A length written as ``"5um"``, ``"7.34 nm"`` or (with ``default_unit``) ``"24.8"``, in µm."""
    match = _LENGTH.fullmatch(text) if isinstance(text, str) else None
    if match is None or (match.group(2) is None and default_unit is None):
        raise InputError(f"{where}: expected a length with a unit such as '5um', got {str(text)[:40]!r}")
    return to_um(match.group(1), match.group(2) or default_unit, where)


def check_pixel_size(value: Any, where: str, *, force: bool = False) -> float:
    """A pixel size in µm, refused if not a positive number or (unless ``force``) implausible."""
    value = number(value, where) if not isinstance(value, float) else value
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"pixel size must be a positive number of µm per pixel, got {value} ({where})")
    lo, hi = PLAUSIBLE_RANGE_UM
    if not force and not lo <= value <= hi:
        raise InputError(
            f"pixel size {value:g} µm per pixel ({where}) is outside the plausible SEM range "
            f"{lo:g}–{hi:g} µm (a unit mistake?); pass --force-pixel-size to use it anyway"
        )
    return value


def _square(x_um: float, y_um: float | None, source: str) -> PixelSize:
    if y_um is not None and abs(x_um - y_um) > SQUARE_TOLERANCE * max(x_um, y_um):
        raise InputError(
            f"{source}: pixels are not square (X {x_um:.6g} µm, Y {y_um:.6g} µm); semqa measures with one "
            f"scale for both axes — resample the image to square pixels first"
        )
    return PixelSize(x_um, source)


def _check_width(recorded: Any, width: int, where: str) -> None:
    if number(recorded, where) != width:
        raise InputError(
            f"{where} records an image {number(recorded, where):g} px wide but the file holds {width} px: "
            f"the calibration describes other pixels (resized after acquisition?); pass --pixel-size UM"
        )


# --- inside the TIFF ------------------------------------------------------------------


def _json_number(value: Any, where: str) -> float:
    """semqa writes its own JSON: a pixel size there is a JSON number, never a string."""
    if isinstance(value, str):
        raise InputError(f"{where}: expected a JSON number, got the string {value[:40]!r}")
    return number(value, where)


def _semqa_description(page: tifffile.TiffPage) -> PixelSize | None:
    desc = page.description
    if not desc.lstrip().startswith("{"):
        return None
    try:
        meta = json.loads(desc)
    except ValueError:
        return None
    if not isinstance(meta, dict) or "pixel_size_um" not in meta:
        return None
    source = "tiff:ImageDescription:pixel_size_um"
    return PixelSize(_json_number(meta["pixel_size_um"], source), source)


def _zeiss(tif: tifffile.TiffFile) -> PixelSize | None:
    meta = tif.sem_metadata
    if not meta:
        return None
    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        if key in meta:
            source = f"tiff:CZ_SEM:{key}"
            entry = meta[key]  # (label, value, unit) when tifffile split a number and a unit
            if len(entry) == 3:
                return PixelSize(to_um(entry[1], entry[2], source), source)
            return PixelSize(length_um(entry[1], source), source)
    return None


def _fei(page: tifffile.TiffPage) -> PixelSize | None:
    for code in (_TAG_FEI_HELIOS, _TAG_FEI_SFEG):
        tag = page.tags.get(code)
        if tag is None or not isinstance(tag.value, dict):
            continue
        scan = tag.value.get("Scan", {})
        if "PixelWidth" not in scan:
            continue
        source = f"tiff:{tag.name}:[Scan]PixelWidth"
        if "ResolutionX" in tag.value.get("Image", {}):
            _check_width(tag.value["Image"]["ResolutionX"], page.imagewidth, f"tiff:{tag.name}:[Image]ResolutionX")
        y = to_um(scan["PixelHeight"], "m", source) if "PixelHeight" in scan else None
        return _square(to_um(scan["PixelWidth"], "m", source), y, source)
    return None


def _local(tag: str) -> str:
    """An XML element's name without its namespace."""
    return tag.rsplit("}", 1)[-1]


def _fei_xml(page: tifffile.TiffPage) -> PixelSize | None:
    """Thermo Fisher's XML ``<Metadata>`` block (tag 34683): ``BinaryResult/PixelSize/X`` with its ``unit``.

    The layout read by Bio-Formats' FEITiffReader (tag 34683, ``PixelSize`` ``X``/``Y``) and
    pynxtools-em's FEI legacy parser (``Metadata.BinaryResult.PixelSize.X`` with ``@unit``).
    A value without a unit is refused: the readers disagree on the default (µm, m).
    """
    tag = page.tags.get(_TAG_FEI_XML)
    if tag is None:
        return None
    text = tag.value.decode("utf-8", "replace") if isinstance(tag.value, bytes) else str(tag.value)
    text = text.strip().strip("\x00").strip()
    if not text.startswith("<"):
        return None
    import xml.etree.ElementTree as ET  # imported where used: only some vendors write XML

    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputError(f"tiff:FEI_TITAN: unreadable XML metadata ({exc})") from None
    size = next((el for el in root.iter() if _local(el.tag) == "PixelSize"), None)
    if size is None:
        return None
    axes = {_local(el.tag): el for el in size}
    if "X" not in axes:
        return None
    source = "tiff:FEI_TITAN:Metadata/BinaryResult/PixelSize/X"

    def axis(el: ET.Element) -> float:
        unit = el.attrib.get("unit")
        if not unit:
            raise InputError(f"{source}: PixelSize {_local(el.tag)} has no unit attribute; the pixel size cannot be read")
        return to_um((el.text or "").strip(), unit, source)

    return _square(axis(axes["X"]), axis(axes["Y"]) if "Y" in axes else None, source)


def _tescan_pairs(text: str) -> dict[str, str]:
    """``key=value`` lines of TESCAN's header text (first occurrence of each key wins)."""
    pairs: dict[str, str] = {}
    for line in text.replace("\x00", "\n").splitlines():
        match = _KEY_VALUE.match(line)
        if match:
            pairs.setdefault(match.group(1), match.group(2))
    return pairs


def _tescan_from_pairs(pairs: dict[str, str], source_prefix: str) -> PixelSize | None:
    if "PixelSizeX" not in pairs:
        return None
    source = f"{source_prefix}PixelSizeX"
    y = to_um(pairs["PixelSizeY"], "m", source) if "PixelSizeY" in pairs else None
    return _square(to_um(pairs["PixelSizeX"], "m", source), y, source)


def _tescan(page: tifffile.TiffPage) -> PixelSize | None:
    tag = page.tags.get(_TAG_TESCAN)
    if tag is None:
        return None
    raw = tag.value if isinstance(tag.value, bytes) else str(tag.value).encode("utf-8", "replace")
    # The tag starts with binary blocks (a thumbnail) before the INI text: keep the text lines.
    return _tescan_from_pairs(_tescan_pairs(raw.decode("utf-8", "replace")), "tiff:TESCAN:")


def _ome(tif: tifffile.TiffFile) -> PixelSize | None:
    xml = tif.ome_metadata
    if not xml:
        return None
    import xml.etree.ElementTree as ET  # imported where used (see _fei_xml)

    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise InputError(f"tiff:OME: unreadable OME-XML ({exc})") from None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None or "PhysicalSizeX" not in pixels.attrib:
        return None
    source = "tiff:OME:PhysicalSizeX"
    # The OME schema's default unit for PhysicalSize* is µm.
    x = to_um(pixels.attrib["PhysicalSizeX"], pixels.attrib.get("PhysicalSizeXUnit", "µm"), source)
    y = None
    if "PhysicalSizeY" in pixels.attrib:
        y = to_um(pixels.attrib["PhysicalSizeY"], pixels.attrib.get("PhysicalSizeYUnit", "µm"), source)
    return _square(x, y, source)


def _per_pixel(page: tifffile.TiffPage, unit_um: float, source: str) -> PixelSize | None:
    """Pixel size from X/YResolution (pixels per unit) with ``unit_um`` µm per unit."""
    sizes = []
    for name in ("XResolution", "YResolution"):
        tag = page.tags.get(name)
        if tag is None:
            sizes.append(None)
            continue
        num, den = tag.value
        sizes.append(unit_um * den / num if num and den else None)
    if sizes[0] is None:
        return None
    return _square(sizes[0], sizes[1], source)


def _imagej(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> PixelSize | None:
    ij = tif.imagej_metadata or {}
    unit = str(ij.get("unit", "")).strip().lower()
    if unit not in UM_PER_UNIT:  # "pixel", "inch" (a print setting) or none: no calibration
        return None
    return _per_pixel(page, UM_PER_UNIT[unit], "tiff:ImageJ:unit+XResolution")


def _centimeter_resolution(page: tifffile.TiffPage) -> PixelSize | None:
    res_unit = page.tags.get("ResolutionUnit")
    if res_unit is None or int(res_unit.value) != 3:  # 2 = inch: a print setting, ignored on purpose
        return None
    return _per_pixel(page, 1e4, "tiff:XResolution(cm)")


def tiff_pixel_sizes(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> list[PixelSize]:
    """Every pixel size the TIFF's tags state for ``page``, instrument tags first.

    Raises :class:`~semqa.errors.InputError` for a tag that holds a malformed value.
    """
    readers = (
        lambda: _zeiss(tif),
        lambda: _fei(page),
        lambda: _fei_xml(page),
        lambda: _tescan(page),
        lambda: _ome(tif),
        lambda: _imagej(tif, page),
        lambda: _semqa_description(page),
        lambda: _centimeter_resolution(page),
    )
    return [found for found in (read() for read in readers) if found is not None]


# --- beside the file ------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read sidecar {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Instrument PCs write their local Windows code page (JEOL's "1µm" as byte 0xB5), as
        # tifffile's bytes2str also assumes.
        return data.decode("cp1252", "replace")


def _semqa_sidecar(path: Path) -> PixelSize | None:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        meta = json.loads(_read_text(sidecar))
    except ValueError as exc:
        raise InputError(f"unreadable pixel-size sidecar {sidecar}: {exc}") from None
    if not isinstance(meta, dict) or "pixel_size_um" not in meta:
        return None
    source = f"sidecar:{sidecar.name}:pixel_size_um"
    return PixelSize(_json_number(meta["pixel_size_um"], source), source)


def _ini(text: str, where: str) -> configparser.ConfigParser:
    import configparser  # imported where used: only INI metadata (FEI/Thermo Fisher, sidecars) needs it

    parser = configparser.ConfigParser(interpolation=None, strict=False, allow_no_value=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    try:
        parser.read_string(text, source=where)
    except configparser.Error as exc:
        raise InputError(f"{where}: unreadable INI sidecar ({str(exc).splitlines()[0]})") from None
    return parser


def _tescan_sidecar(path: Path) -> PixelSize | None:
    for hdr in (path.with_suffix(".hdr"), path.with_name(f"{path.stem}-{path.suffix.lstrip('.')}.hdr")):
        if not hdr.is_file():
            continue
        text = _read_text(hdr)
        if "[MAIN]" not in text:  # another program's .hdr (ENVI, Analyze): not TESCAN's
            continue
        main = _ini(text, str(hdr))["MAIN"]
        return _tescan_from_pairs(dict(main), f"sidecar:{hdr.name}:[MAIN]")
    return None


def _jeol(text: str, sidecar: Path, width: int) -> PixelSize | None:
    keys: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if parts and parts[0].startswith("$"):
            keys.setdefault(parts[0].lstrip("$"), parts[1].strip() if len(parts) > 1 else "")
    if "SM_MICRON_BAR" not in keys or "SM_MICRON_MARKER" not in keys:
        return None
    source = f"sidecar:{sidecar.name}:$$SM_MICRON_MARKER/$$SM_MICRON_BAR"
    if "CM_FULL_SIZE" in keys:
        _check_width(keys["CM_FULL_SIZE"].split()[0], width, f"sidecar:{sidecar.name}:$CM_FULL_SIZE")
    bar_px = number(keys["SM_MICRON_BAR"], f"{source} (bar length in px)")
    if bar_px <= 0:
        raise InputError(f"{source}: bar length must be positive, got {bar_px:g} px")
    # The bar length is a whole number of pixels: the size is known to ±0.5 px / bar length.
    return PixelSize(length_um(keys["SM_MICRON_MARKER"], source) / bar_px, source)


def _hitachi(text: str, sidecar: Path, width: int) -> PixelSize | None:
    if "[SemImageFile]" not in text:
        return None
    section = _ini(text, str(sidecar))["SemImageFile"]
    if "PixelSize" not in section:
        return None
    source = f"sidecar:{sidecar.name}:[SemImageFile]PixelSize"
    if section.get("DataSize"):
        _check_width(section["DataSize"].lower().split("x")[0], width, f"sidecar:{sidecar.name}:[SemImageFile]DataSize")
    return PixelSize(length_um(section["PixelSize"], source, default_unit="nm"), source)


def _txt_sidecar(path: Path, width: int) -> PixelSize | None:
    sidecar = path.with_suffix(".txt")
    if not sidecar.is_file():
        return None
    text = _read_text(sidecar)
    return _jeol(text, sidecar, width) or _hitachi(text, sidecar, width)


def sidecar_pixel_sizes(path: Path, width: int) -> list[PixelSize]:
    """Pixel sizes stated by sidecar files beside ``path`` (semqa, TESCAN, JEOL, Hitachi).

    ``width`` is the stored image width, checked against the sizes sidecars record.
    """
    readers = (lambda: _tescan_sidecar(path), lambda: _txt_sidecar(path, width), lambda: _semqa_sidecar(path))
    return [found for found in (read() for read in readers) if found is not None]


# --- one answer -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ResolvedPixelSize:
    """The pixel size used for an image, where it came from, and what else the file said.

    Attributes
    ----------
    um : float or None
        µm per pixel, ``None`` where nothing stated one.
    source : str or None
        :attr:`PixelSize.source` of the value used, or the caller's label (``flag``).
    note : str or None
        What the file said where a given value overrode it, else ``None``.
    """

    um: float | None
    source: str | None
    note: str | None = None


def _agreed(found: list[PixelSize], name: str) -> PixelSize:
    first = found[0]
    for other in found[1:]:
        if abs(other.um - first.um) > AGREEMENT_TOLERANCE * max(other.um, first.um):
            raise InputError(
                f"{name}: its metadata disagree on the pixel size: {first.um:.6g} µm ({first.source}) vs "
                f"{other.um:.6g} µm ({other.source}); resized after acquisition? pass --pixel-size UM"
            )
    return first


def _differs(a: float, b: float) -> bool:
    return abs(a - b) > AGREEMENT_TOLERANCE * max(a, b)


def resolve(
    found: list[PixelSize] | InputError,
    name: str,
    *,
    given: float | None = None,
    given_source: str = "flag",
    force: bool = False,
    sidecars: list[PixelSize] | InputError | None = None,
) -> ResolvedPixelSize:
    """Choose the pixel size of one image: the given value, else the file's, else a sidecar's.

    Parameters
    ----------
    found : list of PixelSize, or InputError
        What the file's own metadata state (first = most trusted; all must agree), or the
        error reading them raised.
    name : str
        The image's name, for messages.
    sidecars : list of PixelSize, or InputError, optional
        What sidecars beside the file state (or the error reading them). They serve where
        the file states nothing; where it does, the file wins (its metadata travel with its
        pixels) and a sidecar that disagrees, or cannot be read, is recorded in the note.
    given : float, optional
        A value given by the user; it overrides the file, and the file's own value is
        kept in the note where it differs (or could not be read).
    given_source : str
        Source recorded for ``given``.
    force : bool
        Accept values outside :data:`PLAUSIBLE_RANGE_UM`.
    """
    sidecars = sidecars if sidecars is not None else []
    if not isinstance(found, InputError) and not found:
        found, sidecars = sidecars, []
    if given is not None:
        um = check_pixel_size(given, f"{name}, {given_source}", force=force)
        note = None
        if isinstance(found, InputError):
            note = f"the file's own pixel-size metadata was not used: {found}"
        elif found and _differs(found[0].um, um):
            note = f"overrides the file's own {found[0].um:.6g} µm per pixel ({found[0].source})"
        return ResolvedPixelSize(um, given_source, note)
    if isinstance(found, InputError):
        raise found
    if not found:
        return ResolvedPixelSize(None, None)
    chosen = _agreed(found, name)
    um = check_pixel_size(chosen.um, f"{name}, {chosen.source}", force=force)
    note = None
    if isinstance(sidecars, InputError):
        note = f"a sidecar was not used: {sidecars}"
    else:
        disagreeing = [f"{side.um:.6g} µm per pixel ({side.source})" for side in sidecars if _differs(side.um, um)]
        if disagreeing:
            note = "the file's own metadata used; a sidecar disagrees: " + ", ".join(disagreeing)
    return ResolvedPixelSize(um, chosen.source, note)
