"""The detection limit (semqa.particles.completeness) against the detector it describes, and its
place in the sizing limit: a noisy scan's truncated PSD is censored, never a confident number."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from semqa.analysis import AnalysisConfig, compare
from semqa.io.images import Micrograph
from semqa.particles.completeness import detection_limit, detection_probability, disc_response, pooled_limit
from semqa.particles.detection import dog_responses, significance_from
from semqa.particles.noise import NoiseModel
from semqa.particles.segmentation import detect
from semqa.stats.censoring import assess_censoring, sizing_limit
from semqa.stats.equivalence import CompareConfig
from semqa.synth.families import FamilyConfig, render_family, scan_family

PROBE_SIGMA_PX = 0.4247  # FWHM 1 px, SegmentationConfig's default probe


def _discs(diameters: list[float], side: int, pitch: int, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """Labels of discs on a grid (diameters cycled), centres jittered within a pixel; their diameters."""
    yy, xx = np.mgrid[:side, :side]
    labels = np.zeros((side, side), np.int32)
    sizes = []
    for i, cy in enumerate(range(pitch // 2, side - pitch // 2 + 1, pitch)):
        for j, cx in enumerate(range(pitch // 2, side - pitch // 2 + 1, pitch)):
            d = diameters[(i + j) % len(diameters)]
            oy, ox = rng.uniform(-0.5, 0.5, 2)
            sizes.append(d)
            labels[(yy - cy - oy) ** 2 + (xx - cx - ox) ** 2 <= (d / 2) ** 2] = len(sizes)
    return labels, sizes


@pytest.mark.parametrize("ecd", [3.0, 4.0, 6.0, 8.0, 12.0, 20.0])
def test_disc_response_is_the_detectors_own(ecd):
    """The closed form matches the DoG significance the detector computes on a noiseless blurred disc."""
    rng = np.random.default_rng(int(ecd))
    labels, _ = _discs([ecd], 256, 64, rng)
    image = ndimage.gaussian_filter((labels > 0).astype(float), PROBE_SIGMA_PX).astype(np.float32)
    model = NoiseModel(gain=0.0, read_variance=1.0, stabilized_sd=1.0, sum_inflation=1.0, source="unit white noise")
    sig = significance_from(dog_responses(image), model, 0.05)
    centres = ndimage.center_of_mass(labels > 0, labels, np.arange(1, labels.max() + 1))
    peaks = [float(sig.bright[int(round(y)) - 2 : int(round(y)) + 3, int(round(x)) - 2 : int(round(x)) + 3].max()) for y, x in centres]
    expected = disc_response(ecd, 1.0, 1.0, sig.scales, PROBE_SIGMA_PX)
    # A pixel disc's area differs from π d²/4 by its staircase: a few % at 3 px.
    assert np.median(peaks) == pytest.approx(expected, rel=0.08)


def test_limit_grows_with_noise_and_falls_with_contrast():
    scales = (1.0, 2.0, 4.0, 8.0, 16.0)
    base = detection_limit(1.3, 1.0, 5.25, scales, PROBE_SIGMA_PX)
    noisier = detection_limit(1.3, 1.5, 5.25, scales, PROBE_SIGMA_PX)
    stronger = detection_limit(2.6, 1.0, 5.25, scales, PROBE_SIGMA_PX)
    assert base.d50_px < base.d95_px
    assert noisier.d50_px > base.d50_px and stronger.d50_px < base.d50_px
    assert detection_probability(base.d50_px, 1.3, 1.0, 5.25, scales, PROBE_SIGMA_PX) == pytest.approx(0.5, abs=1e-3)
    assert detection_probability(base.d95_px, 1.3, 1.0, 5.25, scales, PROBE_SIGMA_PX) == pytest.approx(0.95, abs=1e-3)


@pytest.mark.parametrize("dark", [False, True])
def test_predicted_completeness_matches_the_detector(dark):
    """Isolated uniform discs at 10 e⁻/px (BSE-like 0.25 / 0.5 yields, or dark on bright): the share
    of each small size detected is that the frame's own limit predicts, within 0.15 (128 discs a size: binomial sd ≤ 0.045); the 16-px discs
    beside them, which the contrast is read from, are all found."""
    rng = np.random.default_rng(11 + dark)
    sub, part = (0.5, 0.25) if dark else (0.25, 0.5)
    for small in (5.0, 6.0, 7.0):
        labels, sizes = _discs([16.0, small], 512, 32, rng)
        yield_ = ndimage.gaussian_filter(np.where(labels > 0, part, sub), PROBE_SIGMA_PX)
        image = (rng.poisson(yield_ * 10.0) / 10.0).astype(np.float32)
        det = detect(image)
        assert det.polarity == (-1 if dark else 1) and det.limit is not None
        hit = ndimage.maximum((det.labels > 0).astype(int), labels, np.arange(1, labels.max() + 1)) > 0
        sizes = np.array(sizes)
        assert hit[sizes == 16.0].all()
        predicted = det.limit.probability(small)
        assert abs(hit[sizes == small].mean() - predicted) <= 0.15, (small, hit[sizes == small].mean(), predicted)


def test_sizing_limit_takes_the_detection_limit_only_above_the_pixel_band():
    pixel = sizing_limit(0.4, 10)
    assert pixel.binding == "pixels" and pixel.d_min_um == pytest.approx(2 * math.sqrt(10 / math.pi) * 0.4)
    below = sizing_limit(0.4, 10, (1.0, 1.5))
    assert below.binding == "pixels" and below.band_upper_um == pytest.approx(pixel.band_upper_um)
    above = sizing_limit(0.4, 10, (2.2, 3.1))
    assert above.binding == "detection"
    assert (above.d_min_um, above.band_upper_um) == (2.2, 3.1)
    assert "detection limit" in above.source


def test_pooled_limit_weighs_each_image_by_its_area():
    """One noisy frame among nine clean ones of the same area thins the pool by its share only: the
    pool is 95 % complete where that tenth is 50 % complete; the pool of identical images is each image's limit."""
    clean, noisy = (1.0, 1.5), (4.0, 6.0)
    assert pooled_limit([clean] * 3, [1.0, 1.0, 1.0]) == pytest.approx(clean)
    d50, d95 = pooled_limit([clean] * 9 + [noisy], [1.0] * 10)
    assert clean[0] < d50 < 1.1 * clean[0] and d95 == pytest.approx(noisy[0], rel=1e-3)
    # The pool's probability at its stated sizes is the area-weighted mean of the images'.
    z95 = 1.6448536269514722
    p = lambda x, lim: 0.5 * math.erfc(-z95 * math.log(x / lim[0]) / math.log(lim[1] / lim[0]) / math.sqrt(2))
    assert 0.9 * p(d95, clean) + 0.1 * p(d95, noisy) == pytest.approx(0.95, abs=1e-6)


def test_a_truncated_psd_is_censored_with_the_noise_as_reason():
    """Log-normal ECDs (D50 2 µm) of which only those the detection keeps are measured: censored,
    and the message names the noise, not the pixel size."""
    rng = np.random.default_rng(3)
    true = np.exp(rng.normal(math.log(2.0), 0.3, 3000))
    keep = rng.random(true.size) < np.clip((true - 1.6) / 0.8, 0, 1)  # thinned from 1.6 to 2.4 µm
    limit = sizing_limit(0.1, 10, (2.0, 2.4))
    result = assess_censoring(true[keep], limit)
    assert "D50" in result.censored and "D10" in result.censored
    assert result.message.startswith("scan too noisy for its particles")


def _lots(dose: float, d50_px: float, seed: int) -> dict[str, list[Micrograph]]:
    """Three lots of three BSE-like frames (semqa.synth.families) at ``dose`` e⁻/px."""
    rng = np.random.default_rng(seed)
    lots: dict[str, list[Micrograph]] = {}
    for lot in ("lot1", "lot2", "lot3"):
        lots[lot] = []
        for i in range(3):
            config = FamilyConfig(family="bse", size_px=256, pixel_size_um=0.25, d50_px=d50_px, dose=dose)
            image, _ = scan_family(render_family(config, rng), config, rng)
            span = float(image.max() - image.min())
            lots[lot].append(Micrograph(
                name=f"{lot}-{i}.tif", image=((image - image.min()) / span).astype(np.float32), pixel_size_um=0.25,
                bit_depth=16, digest=f"sha256:{seed}{lot}{i}",
            ))
    return lots


def test_a_noisy_scans_comparison_is_inconclusive_for_its_noise():
    """Fast scans (10 e⁻/px) of 6-px particles lose their small ones to the noise: the comparison is
    inconclusive and says why, with the limit in µm; at 300 e⁻/px the pixel count binds."""
    design = CompareConfig(min_units_per_lot=3, n_bootstrap=0)
    noisy = compare(_lots(10.0, 6.0, 1), _lots(10.0, 6.0, 2), AnalysisConfig(n_bootstrap=0), compare_config=design)
    assert noisy.verdict == "inconclusive" and "scan too noisy for its particles" in noisy.reason, noisy.reason
    limit = noisy.statistics.sizing_limit
    assert limit.binding == "detection" and limit.band_upper_um > limit.d_min_um > sizing_limit(0.25, 10).d_min_um
    images = [i for product in (noisy.reference, noisy.test) for lot in product.values() for i in lot.images]
    assert all(i.detection_d50_um < i.detection_d95_um for i in images)
    # The pooled limit lies among the images' own (equal areas: their curves averaged).
    assert min(i.detection_d95_um for i in images) <= limit.band_upper_um <= max(i.detection_d95_um for i in images)
    clean = compare(_lots(300.0, 6.0, 1), _lots(300.0, 6.0, 2), AnalysisConfig(n_bootstrap=0), compare_config=design)
    assert clean.statistics.sizing_limit.binding == "pixels"
    assert "too noisy" not in clean.reason
