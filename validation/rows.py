"""The tables the expectation suites validate: one row per pair, or per lot image.

A value that cannot be computed (a missing partner, an unreadable file, a pair whose
sizes do not match the scale) is left empty (NaN/None). GX's column-map expectations
skip empty values, so a fault is reported by the one check that is about it and not
again by every check downstream of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from semqa.errors import InputError
from semqa.io.digests import file_digest
from semqa.io.images import Micrograph, read_image
from validation.config import ValidationConfig
from validation.dataset import lot_members, pair_members
from validation.exposure import exposure
from validation.blur import blur_estimate
from validation.measures import colour_spread, content_hash, intensity_range
from validation.register import registration_quality


def _file_digest(path: Path) -> str | None:
    try:
        return file_digest(path)
    except OSError:
        return None


def _image_fields(
    path: Path, config: ValidationConfig, *, with_focus: bool = False, with_blur: bool = False,
    pixel_size_um: float | None = None,
) -> tuple[dict, Micrograph | None]:
    """Measures of one image file (``readable`` False and the reason where it cannot be read)."""
    try:
        mg = read_image(path, pixel_size_um=pixel_size_um)
    except InputError as exc:
        return {"readable": False, "error": str(exc), "digest": _file_digest(path)}, None
    intensity = intensity_range(mg.image)
    fields: dict = {
        "readable": True,
        "error": "",
        "digest": mg.digest,
        "content_hash": content_hash(mg.image),
        "height": mg.image.shape[0],
        "width": mg.image.shape[1],
        "bit_depth": mg.bit_depth,
        "pixel_size_um": mg.pixel_size_um,
        "has_pixel_size": mg.pixel_size_um is not None,
        "colour_spread": colour_spread(path),
        **exposure(mg.image, intensity),
    }
    if with_focus:
        blur = blur_estimate(mg.image)
        limit = config.max_blur_sigma_lot_px
        fields.update(
            blur_sigma_px=blur.sigma_px,
            blur_sigma_lower_px=blur.lower_px,
            blur_sigma_upper_px=blur.upper_px,
            # The noise allows both a sharp and a blurred scan: reported, not refused.
            focus_undetermined=blur.lower_px <= limit < blur.upper_px,
        )
    if with_blur:
        fields["blur_sigma_px"] = blur_estimate(mg.image).sigma_px
    return fields, mg


def _prefixed(prefix: str, fields: dict) -> dict:
    return {f"{prefix}_{k}": v for k, v in fields.items()}


def _size_error(hr: Micrograph, lr: Micrograph, scale: int) -> float:
    """Largest |LR side − HR side / scale| in LR pixels."""
    return max(abs(lr.shape[i] - hr.shape[i] / scale) for i in (0, 1))


def _fov_mismatch(hr: Micrograph, lr: Micrograph) -> float:
    """Largest relative difference of the fields of view (pixel size × pixels) over both axes.

    Compared with the *actual* size ratio, not the declared scale, so a wrong scale is
    reported once (by the scale check) and lying pixel sizes once (by this one); together
    they give ``lr_px ≈ hr_px × scale``.
    """
    return max(
        abs(lr.pixel_size_um * lr.shape[i] / (hr.pixel_size_um * hr.shape[i]) - 1.0) for i in (0, 1)  # type: ignore[operator]
    )


def pair_row(name: str, hr_path: Path | None, lr_path: Path | None, config: ValidationConfig, scale: int) -> dict:
    """One pair's row: what both files are and how well they agree."""
    row: dict = {"pair": name, "has_partner": hr_path is not None and lr_path is not None}
    images: dict[str, Micrograph | None] = {}
    errors = []
    for prefix, path in (("hr", hr_path), ("lr", lr_path)):
        if path is None:
            images[prefix] = None
            continue
        declared = config.hr_pixel_size_um if prefix == "hr" else config.lr_pixel_size_um
        fields, images[prefix] = _image_fields(path, config, with_blur=prefix == "hr", pixel_size_um=declared)
        if fields["error"]:
            errors.append(f"{prefix}: {fields['error']}")
        row.update(_prefixed(prefix, {k: v for k, v in fields.items() if k not in ("readable", "error")}))
    row["readable"] = not errors
    row["error"] = "; ".join(errors)
    hr, lr = images["hr"], images["lr"]
    if hr is not None and lr is not None:
        row["size_error_lr_px"] = _size_error(hr, lr, scale)
        if hr.pixel_size_um is not None and lr.pixel_size_um is not None:
            row["fov_mismatch"] = _fov_mismatch(hr, lr)
        if row["size_error_lr_px"] <= config.size_tolerance_lr_px:
            q = registration_quality(hr.image, lr.image, scale, config.upsample_factor)
            row.update(correlation=q.correlation, correlation_max=q.correlation_max, correlation_ratio=q.correlation_ratio)
            # A shift between two different fields means nothing: a partner that does not
            # correlate is reported by the correlation check alone.
            if q.correlation_ratio >= config.min_correlation_ratio:
                dy, dx = q.shift
                row.update(shift_dy_lr_px=dy, shift_dx_lr_px=dx, shift_lr_px=math.hypot(dy, dx))
    return row


#: Columns of the pair table, in order; every pair row has all of them (empty where unknown).
PAIR_COLUMNS: tuple[str, ...] = (
    "pair", "has_partner", "readable", "error",
    *(f"{p}_{k}" for p in ("hr", "lr") for k in (
        "digest", "content_hash", "height", "width", "bit_depth", "pixel_size_um", "has_pixel_size",
        "colour_spread", "saturated_fraction", "saturated_expected", "saturated_excess", "black_fraction",
        "black_expected", "black_excess", "dynamic_range", "saturated_flat_fraction", "saturated_flat_expected",
        "black_flat_fraction", "black_flat_expected", "electrons_per_unit",
    )),
    "hr_blur_sigma_px", "size_error_lr_px", "fov_mismatch", "shift_dy_lr_px", "shift_dx_lr_px", "shift_lr_px", "correlation",
    "correlation_max", "correlation_ratio",
)  # fmt: skip

#: Columns of the lot-image table.
LOT_COLUMNS: tuple[str, ...] = (
    "image", "lot", "name", "readable", "error", "digest", "content_hash", "height", "width", "bit_depth",
    "pixel_size_um", "has_pixel_size", "colour_spread", "saturated_fraction", "saturated_expected",
    "saturated_excess", "black_fraction", "black_expected", "black_excess", "dynamic_range", "blur_sigma_px",
    "blur_sigma_lower_px", "blur_sigma_upper_px", "focus_undetermined", "saturated_flat_fraction", "saturated_flat_expected", "black_flat_fraction", "black_flat_expected",
    "electrons_per_unit",
)  # fmt: skip


def _table(rows: list[dict], columns: tuple[str, ...]) -> pd.DataFrame:
    df = pd.DataFrame(rows).reindex(columns=list(columns))
    # A column that is empty in every row comes back as object dtype; make numbers numeric.
    for col in df.columns:
        if df[col].dtype == object and df[col].isna().all():
            df[col] = df[col].astype("float64")
    return df


def pair_table(
    pair_dir: str | Path, config: ValidationConfig, scale: int, progress: Callable[[int, int], None] | None = None
) -> pd.DataFrame:
    """The pair table of ``DIR/hr``, ``DIR/lr``, rows computed on ``config.workers`` threads;
    ``progress(done, total)`` is called as each row is done, in order."""
    members = pair_members(pair_dir)
    rows = []
    with ThreadPoolExecutor(max_workers=config.workers) as pool:
        for row in pool.map(lambda item: pair_row(item[0], *item[1], config, scale), members.items()):
            rows.append(row)
            if progress is not None:
                progress(len(rows), len(members))
    return _table(rows, PAIR_COLUMNS)


def lot_row(lot: str, path: Path, config: ValidationConfig, pixel_size_um: float | None) -> dict:
    """One lot image's row."""
    fields, _ = _image_fields(path, config, with_focus=True, pixel_size_um=pixel_size_um)
    return {"image": f"{lot}/{path.name}", "lot": lot, "name": path.name, **fields}


def lot_table(folder: str | Path, config: ValidationConfig, pixel_size_um: float | None = None) -> pd.DataFrame:
    """The image table of ``DIR/<lot>/*`` (or one folder of images)."""
    items = [(lot, p) for lot, files in lot_members(folder).items() for p in files]
    with ThreadPoolExecutor(max_workers=config.workers) as pool:
        rows = list(pool.map(lambda item: lot_row(*item, config, pixel_size_um), items))
    return _table(rows, LOT_COLUMNS)


def file_digests_of_pairs(table: pd.DataFrame) -> dict[str, str]:
    """``{"hr/<name>" | "lr/<name>": digest}`` of every file in a pair table."""
    out: dict[str, str] = {}
    for prefix in ("hr", "lr"):
        col = table[f"{prefix}_digest"]
        out.update({f"{prefix}/{name}": d for name, d in zip(table["pair"], col, strict=True) if isinstance(d, str)})
    return out


def most_common_bit_depth(table: pd.DataFrame, columns: list[str]) -> int | None:
    """The bit depth most files in ``columns`` have (the smallest on a tie); None if no file was read."""
    values = pd.concat([table[c] for c in columns]).dropna()
    if values.empty:
        return None
    return int(np.min(values.mode()))
