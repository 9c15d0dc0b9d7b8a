"""Every threshold of data validation, in one configuration with documented defaults.

Exposure is judged against the shot noise of each image's own gain (:mod:`validation.exposure`,
with stated false-rejection rates) and the HR and lot focus against the blur a sharp scan allows
(the lot check at a confidence bound of the fitted blur; all derived, see the fields); the
dynamic range default was set on :mod:`semqa.synth.scenes` pairs (HR 0.1 µm/px, LR ×4, 8-bit),
with the measured value beside it (``benchmarks/bench_validation_physics.py``). Registration
is judged against what each pair's own noise allows (``min_correlation_ratio``) and by a
shift tolerance in LR pixels, neither of which depends on the scenes.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from validation.blur import SHARP_SIGMA_LIMIT_PX


class ValidationConfig(BaseModel):
    """Declared properties of a data set and the limits its images are checked against.

    ``scale`` and ``bit_depth`` are *declared* values: when left ``None`` they come from the
    pair set's ``manifest.csv`` (columns ``scale`` / ``bit_depth``), else scale 4 and the
    bit depth most files of the set share.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scale: int | None = Field(None, ge=1, le=16, description="declared HR/LR scale; None: manifest.csv, else 4")
    bit_depth: int | None = Field(None, description="declared bits per sample (8, 16 or 32 for float); None: manifest.csv, else the set's most common")
    hr_pixel_size_um: float | None = Field(
        None, gt=0, description="µm per HR pixel for every HR file, overriding metadata (PNG pair sets carry none)"
    )
    lr_pixel_size_um: float | None = Field(
        None, gt=0, description="µm per LR pixel for every LR file, overriding metadata"
    )
    size_tolerance_lr_px: float = Field(
        1.0, ge=0, description="largest |LR side − HR side / scale| in LR pixels (rounding of odd HR sides)"
    )
    max_fov_mismatch: float = Field(
        0.02,
        ge=0,
        description="largest relative difference between the HR and LR fields of view (pixel size × pixels), per axis",
    )
    max_saturated_fraction: float = Field(
        0.005,
        ge=0,
        le=1,
        description="largest share of pixels at the top code beyond the upper bound of those shot noise explains at "
        "the frame's own gain (validation.exposure: photon-transfer gain fit, its upper confidence bound and a "
        "Poisson-binomial count bound, each one-sided at 0.1 %): detector gain set too high, not Poisson tails. The "
        "0.5 % is the material share: the statistical bounds alone set the false-rejection rate",
    )
    max_black_fraction: float = Field(
        0.005,
        ge=0,
        le=1,
        description="largest share of pixels at code 0 beyond the upper bound of those shot noise explains at the "
        "frame's own gain (validation.exposure: mean of e^-max(λ, ln 2)): a black level below code 0 or a level too "
        "dark to measure, not Poisson zeros",
    )
    min_dynamic_range: float = Field(
        0.2,
        ge=0,
        le=1,
        description="smallest 0.5–99.5 percentile spread as a share of full scale (clean synthetic: ≈ 0.6)",
    )
    max_blur_sigma_hr_px: float = Field(
        SHARP_SIGMA_LIMIT_PX,
        gt=0,
        description="largest Gaussian blur sigma of an HR image, px (validation.blur.blur_estimate's maximum-"
        "likelihood sigma, fitted to its power spectrum): validation.blur.SHARP_SIGMA_LIMIT_PX, the sigma at which "
        "detail of a 4-pixel period keeps 10 % MTF (1.366 px). Checked, not tuned: 256² HR at 40 and 1000 e⁻/px, "
        "semqa.synth.scenes and the bse family, pass; the same blurred by σ = 2 px and rescanned fail "
        "(tests/test_validation.py)",
    )
    max_blur_sigma_lot_px: float = Field(
        SHARP_SIGMA_LIMIT_PX,
        gt=0,
        description="largest Gaussian blur sigma of a lot image in its own pixels, by the same MTF criterion "
        "(validation.blur.SHARP_SIGMA_LIMIT_PX). An image is refused only when the lower "
        "one-sided bound of its blur (validation.blur.blur_estimate, profile likelihood at validation.exposure's "
        "false-rejection rate) exceeds it; where the upper bound does too, the noise leaves the focus undetermined "
        "(column focus_undetermined) and the image is not refused. A sharp fast scan's probe (FWHM one pixel) and "
        "pixel integration give σ ≈ 0.5 px, a defocus of 2 px σ ≈ 2.1",
    )
    max_shift_lr_px: float = Field(
        0.25,
        ge=0,
        description="largest residual HR↔LR shift in LR pixels: one HR pixel at ×4, the most a training pair may be "
        "off before the generator learns the offset (clean synthetic: ≤ 0.1)",
    )
    min_correlation_ratio: float = Field(
        0.5,
        ge=0,
        le=1,
        description="smallest correlation of the aligned pair as a share of what its noise allows "
        "(validation.register.registration_quality: r / sqrt(rel_hr · rel_lr), Spearman's correction for "
        "attenuation). The check decides between 'same field' (signal correlation 1, less what the LR probe blurs) "
        "and 'another field' (0): 0.5 is the midpoint of the two hypotheses, independent of dose and scene. "
        "Checked, not tuned: 256² pairs at 10–300 e⁻/px LR give 0.97–1.02 (semqa.synth.scenes) and 0.87–1.04 "
        "(semqa.synth.families dome, bse, dark), while their raw r falls to 0.49; swapped partners ≤ 0.30",
    )
    upsample_factor: int = Field(20, ge=1, description="sub-pixel precision of phase correlation: 1/upsample_factor LR px")
    max_colour_spread: float = Field(
        0.02,
        ge=0,
        le=1,
        description="largest 99th-percentile difference between colour channels (share of full scale) for a colour "
        "file to count as a gray image stored in colour",
    )
    workers: int = Field(2, ge=1, description="threads computing the per-pair rows (numpy and scipy release the GIL)")
