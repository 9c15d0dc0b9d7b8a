"""Synthetic instrument data bars, and micrographs written as an SEM writes them.

SEMs put an information strip into every image they save: Zeiss SmartSEM, JEOL and Hitachi
append it below the scanned field (the file is taller than the scan); Thermo Fisher/FEI
(Helios, Quanta, Apreo, Phenom) draw it over the bottom rows; some setups put it at the top.
It has a uniform background (black on most instruments, white or grey on others), lines of
text (beam voltage, working distance, magnification, detector, date), a logo and a scale bar
with its length. :func:`add_databar` draws such a strip in any of these layouts with real
glyphs (Pillow's bundled font, rendered with or without anti-aliasing), so detection is tested
on text, not on a pattern made for the detector. :func:`write_instrument_tiff` writes a frame
with a vendor's TIFF metadata (Zeiss ``CZ_SEM``, FEI ``FEI_HELIOS`` ``[Scan] PixelWidth``) and
no semqa metadata; :func:`rewrite_as_instrument` turns a folder of semqa TIFFs into such files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile
from PIL import Image, ImageDraw, ImageFont

from semqa.errors import InputError
from semqa.io.images import read_image, to_uint

Layout = Literal[
    "bottom-appended", "bottom-overlay", "top-overlay", "right-appended", "right-overlay", "left-overlay"
]
Vendor = Literal["zeiss", "fei"]

#: Layouts of :func:`add_databar`.
LAYOUTS: tuple[str, ...] = (
    "bottom-appended", "bottom-overlay", "top-overlay", "right-appended", "right-overlay", "left-overlay"
)

#: The layouts with the strip along a side (a panel of full-height columns).
SIDE_LAYOUTS: tuple[str, ...] = ("right-appended", "right-overlay", "left-overlay")

#: TIFF tags of the vendors' metadata (tifffile's TIFF.TAGS): Zeiss SmartSEM, FEI Helios.
CZ_SEM_TAG, FEI_HELIOS_TAG = 34118, 34682


def scale_bar_length_um(field_um: float) -> float:
    """A 1-2-5 scale-bar length near a fifth of the field, as instruments choose it."""
    target = field_um / 5
    decade = 10 ** np.floor(np.log10(target))
    return float(max(m * decade for m in (1, 2, 5) if m * decade <= target))


def render_databar(
    width: int,
    rows: int,
    rng: np.random.Generator,
    *,
    pixel_size_um: float = 0.1,
    dark: bool = True,
    antialias: bool = False,
) -> np.ndarray:
    """An information strip ``rows × width`` in [0, 1]: text lines, a logo and a scale bar.

    Parameters
    ----------
    width, rows : int
        Size of the strip in pixels; ``rows`` ≥ 12 for a legible line of text.
    rng : numpy.random.Generator
        Chooses the instrument settings shown and the grey level of the background.
    pixel_size_um : float
        Pixel size of the micrograph, for the scale bar's length and label.
    dark : bool
        Black background with white text (most instruments), else light with black text.
    antialias : bool
        Anti-aliased glyphs (grey edge pixels) instead of two-level ones.
    """
    if rows < 12 or width < 64:
        raise InputError(f"a data bar needs at least 64 × 12 pixels, got {width} × {rows}")
    background = int(rng.integers(0, 24)) if dark else int(rng.integers(200, 256))
    ink = 255 - background if dark else int(rng.integers(0, 40))
    strip = Image.new("L", (width, rows), background)
    draw = ImageDraw.Draw(strip)
    draw.fontmode = "L" if antialias else "1"
    n_lines = max(1, min(3, (rows - 4) // 12))
    font = ImageFont.load_default(size=max(8, min(14, (rows - 4) // n_lines - 2)))
    fields = [
        f"EHT = {rng.choice([1.0, 2.0, 3.0, 5.0, 10.0, 15.0]):.2f} kV",
        f"WD = {rng.uniform(3, 12):.1f} mm",
        f"Mag = {rng.uniform(0.5, 20):.2f} K X",
        f"Signal A = {rng.choice(['SE2', 'InLens', 'BSD', 'ETD'])}",
        f"Date: {int(rng.integers(1, 29))} Dec 2026",
        f"HFW = {width * pixel_size_um:.1f} um",
    ]
    line_h = (rows - 4) // n_lines
    x0 = int(0.03 * width)
    for i in range(n_lines):
        draw.text((x0, 2 + i * line_h), "   ".join(fields[i * 2 : i * 2 + 2]), fill=ink, font=font)
    # Scale bar: a filled bar of a round length with its label, right of the text.
    length_um = scale_bar_length_um(width * pixel_size_um)
    bar_px = max(4, int(round(length_um / pixel_size_um)))
    bx = int(0.55 * width)
    if bx + bar_px < width - 2:
        # PIL's rectangle includes both end coordinates: the bar spans exactly bar_px columns.
        draw.rectangle([bx, rows // 2, bx + bar_px - 1, rows // 2 + max(2, rows // 10)], fill=ink)
        draw.text((bx, 2), f"{length_um:g} um", fill=ink, font=font)
    # Logo: a filled box with letters in the background colour, at the right end.
    lw = min(int(0.08 * width), rows * 3)
    if lw > 16:
        draw.rectangle([width - lw - 4, 2, width - 4, rows - 3], fill=ink)
        draw.text((width - lw, 3), "SEM", fill=background, font=font)
    return np.asarray(strip, dtype=np.float32) / 255.0


def render_side_panel(
    rows: int,
    cols: int,
    rng: np.random.Generator,
    *,
    pixel_size_um: float = 0.1,
    dark: bool = True,
    antialias: bool = False,
) -> np.ndarray:
    """An information panel ``rows × cols`` in [0, 1] for a side of the frame: one field per line.

    Some exports (image-archiving software, lab macros) put the instrument's data beside the
    micrograph instead of under it: a full-height panel of text lines, a scale bar and a logo.
    Same conventions as :func:`render_databar`; ``cols`` ≥ 24 and ``rows`` ≥ 64.
    """
    if cols < 24 or rows < 64:
        raise InputError(f"a side panel needs at least 24 × 64 pixels, got {cols} × {rows}")
    background = int(rng.integers(0, 24)) if dark else int(rng.integers(200, 256))
    ink = 255 - background if dark else int(rng.integers(0, 40))
    strip = Image.new("L", (cols, rows), background)
    draw = ImageDraw.Draw(strip)
    draw.fontmode = "L" if antialias else "1"
    font = ImageFont.load_default(size=max(8, min(12, cols // 6)))
    fields = [
        f"EHT {rng.choice([1.0, 2.0, 3.0, 5.0, 10.0, 15.0]):.1f} kV",
        f"WD {rng.uniform(3, 12):.1f} mm",
        f"Mag {rng.uniform(0.5, 20):.1f} kX",
        str(rng.choice(["SE2", "InLens", "BSD", "ETD"])),
        f"{int(rng.integers(1, 29))} Dec 2026",
    ]
    x0, y = 3, 4
    line_h = max(10, font.size + 3)
    for text in fields:
        if y + line_h > rows - 24:
            break
        draw.text((x0, y), text, fill=ink, font=font)
        y += line_h
    # Scale bar near the panel's foot, at most its width less the margins.
    length_um = scale_bar_length_um(5 * (cols - 8) * pixel_size_um)
    bar_px = max(4, int(round(length_um / pixel_size_um)))
    if bar_px <= cols - 8:
        draw.text((x0, rows - 22), f"{length_um:g} um", fill=ink, font=font)
        draw.rectangle([x0, rows - 8, x0 + bar_px - 1, rows - 6], fill=ink)
    return np.asarray(strip, dtype=np.float32) / 255.0


def add_databar(
    image: np.ndarray,
    layout: str,
    rng: np.random.Generator,
    *,
    rows: int | None = None,
    pixel_size_um: float = 0.1,
    dark: bool = True,
    antialias: bool = False,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A frame with a data bar in ``layout``, and the micrograph's true region in it.

    Parameters
    ----------
    image : numpy.ndarray
        The scanned frame, 2-D in [0, 1].
    layout : str
        ``"bottom-appended"`` (strip below the scan; the frame grows), ``"bottom-overlay"`` or
        ``"top-overlay"`` (strip drawn over the scan's rows).
        ``"right-appended"`` (a side panel right of the scan; the frame widens), ``"right-overlay"``
        or ``"left-overlay"`` (panel drawn over the scan's columns; :func:`render_side_panel`).
    rows : int, optional
        Height of the strip; default 9 % of the frame's height (at least 16 rows), within the
        7–15 % instruments use. For the side layouts: width of the panel, default 12 % of the
        frame's width (at least 32 columns).

    Returns
    -------
    frame : numpy.ndarray
        ``float32`` frame with the bar.
    region : tuple of int
        ``(x, y, width, height)`` of the micrograph pixels in ``frame`` (what an analysis
        should keep).
    """
    if layout not in LAYOUTS:
        raise InputError(f"unknown data bar layout {layout!r}; one of {', '.join(LAYOUTS)}")
    h, w = image.shape
    image = np.asarray(image, dtype=np.float32)
    if layout in SIDE_LAYOUTS:
        cols = rows or max(32, int(round(0.12 * w)))
        panel = render_side_panel(h, cols, rng, pixel_size_um=pixel_size_um, dark=dark, antialias=antialias)
        if layout == "right-appended":
            return np.hstack([image, panel]), (0, 0, w, h)
        frame = image.copy()
        if layout == "right-overlay":
            frame[:, w - cols :] = panel
            return frame, (0, 0, w - cols, h)
        frame[:, :cols] = panel
        return frame, (cols, 0, w - cols, h)
    rows = rows or max(16, int(round(0.09 * h)))
    bar = render_databar(w, rows, rng, pixel_size_um=pixel_size_um, dark=dark, antialias=antialias)
    if layout == "bottom-appended":
        return np.vstack([image, bar]), (0, 0, w, h)
    frame = image.copy()
    if layout == "bottom-overlay":
        frame[h - rows :] = bar
        return frame, (0, 0, w, h - rows)
    frame[:rows] = bar
    return frame, (0, rows, w, h - rows)


def _vendor_tag(vendor: str, pixel_size_um: float, shape: tuple[int, int]) -> tuple[int, str]:
    """The metadata tag a vendor writes, as (tag code, ASCII text)."""
    if vendor == "zeiss":
        # SmartSEM: upper-case parameter names, each followed by "Label = value unit".
        text = "\r\n".join(
            [
                "0", "AP_PIXEL_SIZE", f"Image Pixel Size = {pixel_size_um * 1e3:.6g} nm",
                "AP_WIDTH", f"Width = {shape[1] * pixel_size_um:.6g} µm",
                "AP_ACTUALKV", "EHT = 5.00 kV", "AP_WD", "WD = 6.2 mm",
                "DP_DETECTOR_CHANNEL", "Signal A = SE2",
            ]
        )
        return CZ_SEM_TAG, text
    if vendor == "fei":
        # Helios/Quanta/Apreo/Phenom: INI sections, lengths in metres.
        text = "\r\n".join(
            [
                "[User]", "Date=12/01/2026", "[Beam]", "HV=5000",
                "[Scan]", f"PixelWidth={pixel_size_um * 1e-6:.6e}", f"PixelHeight={pixel_size_um * 1e-6:.6e}",
                "[Image]", f"ResolutionX={shape[1]}", f"ResolutionY={shape[0]}",
            ]
        )
        return FEI_HELIOS_TAG, text
    raise InputError(f"unknown vendor {vendor!r}; one of zeiss, fei")


def write_instrument_tiff(
    path: str | Path, image: np.ndarray, pixel_size_um: float, vendor: Vendor = "zeiss", bit_depth: int = 8
) -> Path:
    """Write ``image`` as the vendor's SEM would: its metadata tag, no semqa metadata.

    The pixel size is stored only in the vendor's own units and tag (Zeiss ``CZ_SEM``
    ``AP_PIXEL_SIZE`` in nm, FEI ``[Scan] PixelWidth`` in m), as :attr:`tifffile.TiffFile.sem_metadata`
    and :attr:`tifffile.TiffFile.fei_metadata` parse them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    code, text = _vendor_tag(vendor, pixel_size_um, image.shape)
    tifffile.imwrite(
        path, to_uint(image, bit_depth), photometric="minisblack", metadata=None,
        extratags=[(code, "s", 0, text.encode("latin-1"), True)],  # SmartSEM writes µ as Latin-1
    )
    return path


def _rewrite_tiff(job: tuple[Path, Path, int, Vendor, str, int]) -> None:
    """One frame of :func:`rewrite_as_instrument`: ``(source, target, index, vendor, layout, seed)``."""
    path, target, i, vendor, layout, seed = job
    mg = read_image(path)
    if mg.pixel_size_um is None:
        raise InputError(f"{path}: no pixel size to write into the instrument metadata")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
    frame, _ = add_databar(mg.image, layout, rng, pixel_size_um=mg.pixel_size_um)
    write_instrument_tiff(target, frame, mg.pixel_size_um, vendor, bit_depth=8 if mg.bit_depth == 8 else 16)


def rewrite_as_instrument(
    src: str | Path,
    dst: str | Path,
    *,
    vendor: Vendor = "zeiss",
    layout: str = "bottom-appended",
    seed: int = 0,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Copy every TIFF under ``src`` to ``dst`` (same relative paths) as an instrument writes it.

    Each frame gets a data bar in ``layout`` and the vendor's metadata with its pixel size
    (:func:`write_instrument_tiff`); semqa's own metadata and sidecars are not carried, so an
    analysis of ``dst`` must find both the pixel size and the region by itself. Other files
    (ground-truth CSVs, manifests) are copied unchanged. Frames are written in ``workers``
    processes; each frame's data bar is drawn from a stream fixed by its place in the sorted
    file list, so the files do not depend on ``workers``. ``progress(done, total)`` is called
    after each TIFF.

    Returns
    -------
    pathlib.Path
        ``dst``.
    """
    import shutil

    from semqa.pool import map_ordered, resolve_workers

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise InputError(f"not a folder: {src}")
    jobs = []
    for i, path in enumerate(sorted(p for p in src.rglob("*") if p.is_file())):
        target = dst / path.relative_to(src)
        if path.suffix.lower() in (".tif", ".tiff"):
            jobs.append((path, target, i, vendor, layout, seed))
        elif path.suffix.lower() != ".json":  # semqa's pixel-size sidecars are what we leave out
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    for done, _ in enumerate(map_ordered(_rewrite_tiff, jobs, resolve_workers(workers, len(jobs))), 1):
        if progress is not None:
            progress(done, len(jobs))
    return dst
