"""What a pair set or a lot folder holds: its files, its declared properties, its digest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from semqa.errors import InputError
from semqa.io.images import list_images

#: Scale assumed when neither the caller nor ``manifest.csv`` declares one (the fast-scan factor of docs/architecture.md: ×4).
DEFAULT_SCALE: int = 4

#: Bit depths an image file can declare (32: floating-point TIFF).
BIT_DEPTHS: tuple[int, ...] = (8, 16, 32)


def _member_files(folder: Path) -> dict[str, Path]:
    """Every file in ``folder`` that belongs to the set, by name.

    Hidden files are skipped, and so are ``<stem>.json`` pixel-size sidecars of an image
    beside them; anything else counts, so a stray non-image file is reported rather than
    silently ignored.
    """
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    stems = {p.stem for p in files if p.suffix.lower() != ".json"}
    return {p.name: p for p in sorted(files) if not (p.suffix.lower() == ".json" and p.stem in stems)}


def pair_members(pair_dir: str | Path) -> dict[str, tuple[Path | None, Path | None]]:
    """``{file name: (HR path or None, LR path or None)}`` of ``DIR/hr`` and ``DIR/lr``, sorted."""
    pair_dir = Path(pair_dir)
    if not pair_dir.is_dir():
        raise InputError(f"not a folder: {pair_dir}")
    missing = [sub for sub in ("hr", "lr") if not (pair_dir / sub).is_dir()]
    if missing:
        raise InputError(f"{pair_dir} is not a pair set: no {' or '.join(missing)}/ folder (expected DIR/hr/*, DIR/lr/*)")
    hr, lr = _member_files(pair_dir / "hr"), _member_files(pair_dir / "lr")
    names = sorted(set(hr) | set(lr))
    if not names:
        raise InputError(f"{pair_dir}/hr and {pair_dir}/lr hold no files")
    return {name: (hr.get(name), lr.get(name)) for name in names}


def lot_members(folder: str | Path) -> dict[str, list[Path]]:
    """Images to analyze by lot: ``DIR/<lot>/<image>``, or a folder of images as one lot.

    Only image files are listed (:func:`semqa.io.images.list_images`), as the analysis reads.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    lots = {d.name: list_images(d) for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    lots = {name: files for name, files in lots.items() if files}
    if not lots:
        lots = {folder.name: list_images(folder)} if list_images(folder) else {}
    if not lots:
        raise InputError(f"{folder} holds no images: expected {folder}/<lot>/<images> or a folder of images")
    return lots


def _single_value(manifest: pd.DataFrame, column: str, path: Path) -> int | None:
    if column not in manifest.columns:
        return None
    values = manifest[column].dropna().unique()
    if len(values) != 1:
        raise InputError(f"{path}: column {column!r} must hold one value for the whole set, found {sorted(values)}")
    value = float(values[0])
    if not value.is_integer():
        raise InputError(f"{path}: {column} must be a whole number, got {value:g}")
    return int(value)


def declared_from_manifest(pair_dir: str | Path) -> dict[str, int]:
    """``scale`` and ``bit_depth`` declared in ``DIR/manifest.csv`` (those present; empty without one)."""
    path = Path(pair_dir) / "manifest.csv"
    if not path.is_file():
        return {}
    try:
        manifest = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable manifest {path}: {exc}") from None
    found = {col: _single_value(manifest, col, path) for col in ("scale", "bit_depth")}
    return {k: v for k, v in found.items() if v is not None}
