"""The GX expectation suites for pair sets and lots.

Every expectation carries ``meta["check"]``, the name of the check it belongs to; a check
can be made of several expectations (e.g. ``duplicate`` on the HR and the LR hashes),
and reports list failures by check. Column-map expectations skip empty values (see
:mod:`validation.rows`), so each fault is reported by the one check about it.
"""

from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe

from validation.config import ValidationConfig

PAIR_SUITE_NAME = "semqa_pairs"
LOT_SUITE_NAME = "semqa_lots"

#: What each check means, shown in reports and the Data Docs.
CHECKS: dict[str, str] = {
    "partner": "every HR has an LR of the same name and vice versa",
    "readable": "every file opens as an image",
    "duplicate": "no image's pixels repeat another's",
    "scale": "LR side = HR side / declared scale (± tolerance, LR px)",
    "grayscale": "grayscale, or colour with equal channels (converts to luminance without loss)",
    "bit_depth": "bits per sample as declared",
    "pixel_size": "pixel size known (TIFF metadata or sidecar)",
    "pixel_size_scale": "HR and LR cover the same field: lr_px × lr_side ≈ hr_px × hr_side",
    "saturated": "share of saturated pixels beyond what shot noise explains (Poisson tail above the top code) below the limit",
    "black": "share of black (code 0) pixels beyond what shot noise explains (Poisson P(0) = e^-λ) below the limit",
    "dynamic_range": "0.5–99.5 percentile spread above the minimum",
    "focus": "in focus: an HR's blur (Gaussian sigma fitted to its power spectrum and noise floor) within what a "
    "sharp scan allows; a lot image refused only when the lower confidence bound of that blur exceeds it (where the noise "
    "leaves it undetermined the row says focus_undetermined)",
    "registration_shift": "residual HR↔LR shift below the limit (LR px)",
    "registration_correlation": "once aligned, downscaled HR and LR correlate at least the minimum share of what their noise allows",
}


def _tag(expectation: gxe.Expectation, check: str) -> gxe.Expectation:
    expectation.meta = {"check": check}
    expectation.description = f"{check}: {CHECKS[check]}"
    return expectation


def _per_image(prefixes: tuple[str, ...], column: str) -> list[str]:
    return [f"{p}_{column}" if p else column for p in prefixes]


def _image_expectations(config: ValidationConfig, prefixes: tuple[str, ...]) -> list[gxe.Expectation]:
    """Checks that apply to each image on its own (columns ``<prefix>_<measure>``)."""
    out: list[gxe.Expectation] = []
    for col in _per_image(prefixes, "content_hash"):
        out.append(_tag(gxe.ExpectColumnValuesToBeUnique(column=col), "duplicate"))
    for col in _per_image(prefixes, "colour_spread"):
        out.append(_tag(gxe.ExpectColumnValuesToBeBetween(column=col, max_value=config.max_colour_spread), "grayscale"))
    for col in _per_image(prefixes, "has_pixel_size"):
        out.append(_tag(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=[True]), "pixel_size"))
    for col in _per_image(prefixes, "saturated_excess"):
        out.append(_tag(gxe.ExpectColumnValuesToBeBetween(column=col, max_value=config.max_saturated_fraction), "saturated"))
    for col in _per_image(prefixes, "black_excess"):
        out.append(_tag(gxe.ExpectColumnValuesToBeBetween(column=col, max_value=config.max_black_fraction), "black"))
    for col in _per_image(prefixes, "dynamic_range"):
        out.append(_tag(gxe.ExpectColumnValuesToBeBetween(column=col, min_value=config.min_dynamic_range), "dynamic_range"))
    return out


def pair_suite(config: ValidationConfig, bit_depth: int | None) -> gx.ExpectationSuite:
    """Expectations on the pair table (:data:`validation.rows.PAIR_COLUMNS`).

    Parameters
    ----------
    config : ValidationConfig
        The limits.
    bit_depth : int or None
        The declared bit depth; None (no image could be read) leaves the check out.
    """
    expectations = [
        _tag(gxe.ExpectColumnValuesToBeInSet(column="has_partner", value_set=[True]), "partner"),
        _tag(gxe.ExpectColumnValuesToBeInSet(column="readable", value_set=[True]), "readable"),
        _tag(gxe.ExpectColumnValuesToBeBetween(column="size_error_lr_px", max_value=config.size_tolerance_lr_px), "scale"),
        *_image_expectations(config, ("hr", "lr")),
        _tag(gxe.ExpectColumnValuesToBeBetween(column="fov_mismatch", max_value=config.max_fov_mismatch), "pixel_size_scale"),
        _tag(gxe.ExpectColumnValuesToBeBetween(column="hr_blur_sigma_px", max_value=config.max_blur_sigma_hr_px), "focus"),
        _tag(gxe.ExpectColumnValuesToBeBetween(column="shift_lr_px", max_value=config.max_shift_lr_px), "registration_shift"),
        _tag(
            gxe.ExpectColumnValuesToBeBetween(column="correlation_ratio", min_value=config.min_correlation_ratio),
            "registration_correlation",
        ),
    ]
    if bit_depth is not None:
        for col in ("hr_bit_depth", "lr_bit_depth"):
            expectations.append(_tag(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=[bit_depth]), "bit_depth"))
    return gx.ExpectationSuite(name=PAIR_SUITE_NAME, expectations=expectations, meta={"config": config.model_dump()})


def lot_suite(config: ValidationConfig) -> gx.ExpectationSuite:
    """Expectations on the lot-image table (:data:`validation.rows.LOT_COLUMNS`)."""
    expectations = [
        _tag(gxe.ExpectColumnValuesToBeInSet(column="readable", value_set=[True]), "readable"),
        *_image_expectations(config, ("",)),
        _tag(
            gxe.ExpectColumnValuesToBeBetween(column="blur_sigma_lower_px", max_value=config.max_blur_sigma_lot_px),
            "focus",
        ),
    ]
    return gx.ExpectationSuite(name=LOT_SUITE_NAME, expectations=expectations, meta={"config": config.model_dump()})
