"""Fixing what the registration check finds: a registered, cropped copy of a pair set.

Real pairs come from two scans of one field and are rarely aligned. ``semqa
register-pairs DIR OUT`` (this module) writes every pair of ``DIR`` registered and cropped
to its aligned overlap (:func:`validation.register.register_pair`) into ``OUT``, with a new
``manifest.csv`` recording each pair's measured shift and the digests of its source files.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import BaseModel, Field

from semqa.errors import InputError
from semqa.io.images import read_image, write_image
from validation.config import ValidationConfig
from validation.dataset import DEFAULT_SCALE, declared_from_manifest, pair_members
from validation.register import register_pair


class RegistrationResult(BaseModel):
    """What :func:`register_pair_set` did, pair by pair."""

    out_dir: Path
    scale: int
    registered: dict[str, tuple[float, float]] = Field(description="pair → measured (dy, dx) shift in LR px")
    skipped: dict[str, str] = Field(description="pair → why it could not be registered")


def _out_name(name: str) -> str:
    """Same name where the format can be written (TIFF, PNG), else the stem as TIFF."""
    return name if Path(name).suffix.lower() in (".tif", ".tiff", ".png") else Path(name).stem + ".tif"


def register_pair_set(
    pair_dir: str | Path, out_dir: str | Path, *, scale: int | None = None, config: ValidationConfig | None = None
) -> RegistrationResult:
    """Register and crop every pair of ``pair_dir``, writing the new set to ``out_dir``.

    Pairs that cannot be registered (a missing partner, an unreadable file, sizes that do
    not match the scale, no overlap) are left out and listed in ``skipped``. Pixel sizes
    and bit depths (8 or 16; float images as 16) are kept.

    Raises
    ------
    InputError
        ``pair_dir`` is not a pair set, or ``out_dir`` exists and is not empty.
    """
    config = config or ValidationConfig()
    members = pair_members(pair_dir)
    scale = scale or config.scale or declared_from_manifest(pair_dir).get("scale", DEFAULT_SCALE)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not an empty folder; choose a new output folder")
    registered: dict[str, tuple[float, float]] = {}
    skipped: dict[str, str] = {}
    manifest = []
    for name, (hr_path, lr_path) in members.items():
        if hr_path is None or lr_path is None:
            skipped[name] = f"no {'HR' if hr_path is None else 'LR'} partner"
            continue
        try:
            hr, lr = read_image(hr_path), read_image(lr_path)
            size_error = max(abs(lr.shape[i] - hr.shape[i] / scale) for i in (0, 1))
            if size_error > config.size_tolerance_lr_px:
                raise InputError(f"HR {hr.shape[1]}×{hr.shape[0]} is not ×{scale} of LR {lr.shape[1]}×{lr.shape[0]}")
            hr_c, lr_c, shift = register_pair(hr.image, lr.image, scale, upsample_factor=config.upsample_factor)
        except InputError as exc:
            skipped[name] = str(exc)
            continue
        out_name = _out_name(name)
        for sub, mg, img in (("hr", hr, hr_c), ("lr", lr, lr_c)):
            write_image(out / sub / out_name, img, pixel_size_um=mg.pixel_size_um, bit_depth=8 if mg.bit_depth == 8 else 16)
        registered[name] = shift
        manifest.append(
            {
                "name": out_name,
                "hr_path": f"hr/{out_name}",
                "lr_path": f"lr/{out_name}",
                "hr_pixel_size_um": hr.pixel_size_um,
                "lr_pixel_size_um": lr.pixel_size_um,
                "scale": scale,
                "shift_dy_lr_px": shift[0],
                "shift_dx_lr_px": shift[1],
                "source_hr_sha256": hr.digest,
                "source_lr_sha256": lr.digest,
            }
        )
    if manifest:
        pd.DataFrame(manifest).to_csv(out / "manifest.csv", index=False)
    return RegistrationResult(out_dir=out, scale=scale, registered=registered, skipped=skipped)
