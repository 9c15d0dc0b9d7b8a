"""The focus measure (validation.blur): the fast profile against the implementation it replaced, the
vectorised Gamma GLM against a general optimiser, calibration on frames that follow the model, and
defocus on the textured families."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from semqa.sr.degradation import DegradationConfig
from validation import blur
from validation.blur import SHARP_SIGMA_LIMIT_PX, blur_estimate
from validation.exposure import Z_BOUND
from validation.gamma_fit import deviance, fit_rows


def _reference_fit_at(sigma, f, y, nu, start=None):
    """The per-σ fit this module replaced (commit edf77e3), kept here only to test against:
    Fisher scoring of the identity-link Gamma GLM ``A·f^−3·exp(−4π²σ²f²) + N``, warm-started."""
    g = f ** (-3.0) * np.exp(-4.0 * math.pi**2 * sigma**2 * f * f)
    design = np.column_stack([g, np.ones_like(f)])
    mu = np.full_like(y, y.mean()) if start is None else start
    for _ in range(30):
        wts = np.sqrt(nu) / mu
        coef, _ = optimize.nnls(design * wts[:, None], y * wts)
        new = np.maximum(design @ coef, 1e-30)
        if bool(np.all(np.abs(new - mu) <= 1e-8 + 1e-6 * np.abs(mu))):
            mu = new
            break
        mu = new
    dev = 2.0 * float(np.sum(nu * ((y - mu) / mu - np.log(np.maximum(y, 1e-300) / mu))))
    return dev, float(np.sum(nu * ((y - mu) / mu) ** 2)), mu


def _reference_estimate(image):
    """(σ, lower, upper, dispersion) of the replaced implementation: every point of the 0.02-px grid, in order."""
    f, y, nu = blur._radial_spectrum(image)
    end = min(image.shape) / 8.0
    grid = np.arange(0.0, min(end, 5.0) + 0.01, 0.02)
    if end > 5.0:
        grid = np.concatenate([grid, np.geomspace(5.0, end, 41)[1:]])
    fits, mu = [], None
    for s in grid:
        dev, pearson, mu = _reference_fit_at(float(s), f, y, nu, mu)
        fits.append((dev, pearson))
    fits = np.array(fits)
    best = int(np.argmin(fits[:, 0]))
    dispersion = fits[best, 1] / max(1, f.size - 3)
    within = np.flatnonzero((fits[:, 0] - fits[best, 0]) / max(1.0, dispersion) <= Z_BOUND**2)
    upper = math.inf if within[-1] == grid.size - 1 else float(grid[within[-1]])
    sigma = math.inf if best == grid.size - 1 else float(grid[best])
    return sigma, float(grid[within[0]]), upper, dispersion


def _lr_frame(family: str, hr_size: int, dose: float, defocus_lr_px: float, seed) -> np.ndarray:
    """An LR frame (×4) of ``family`` scanned at ``dose`` e⁻/px with its probe widened by ``defocus_lr_px``
    in quadrature before the pixel integration and the shot noise (a defocused scan)."""
    rng = np.random.default_rng(seed)
    if family == "synth":
        from semqa.synth.scenes import SynthConfig, render_scene, scan_scene

        scan = DegradationConfig(dose=dose)
        scan = scan.model_copy(update={"psf_sigma_hr_px": math.hypot(scan.psf_sigma, 4 * defocus_lr_px)})
        config = SynthConfig(size_px=hr_size, degradation=scan)
        lr = scan_scene(render_scene(config, rng), config, rng)[1]
    else:
        from semqa.synth.families import FamilyConfig, render_family, scan_family

        config = FamilyConfig(family=family, size_px=hr_size, lr_dose=dose)
        config = config.model_copy(update={"psf_sigma_px": math.hypot(config.psf_sigma_px, 4 * defocus_lr_px)})
        lr = scan_family(render_family(config, rng), config, rng)[1]
    return np.clip(lr, 0, 1).astype(np.float64)


FRAMES = [
    ("synth", 100.0, 0.0), ("synth", 1000.0, 2.0), ("dome", 10.0, 0.0), ("dome", 300.0, 3.0),
    ("bse", 100.0, 2.0), ("bse", 1000.0, 0.0), ("dark", 30.0, 3.0), ("dark", 300.0, 0.0),
]


@pytest.mark.parametrize(("family", "dose", "defocus"), FRAMES)
def test_fast_profile_equals_the_replaced_implementation(family: str, dose: float, defocus: float) -> None:
    # With the scene fixed at the bare f^−3 (ξ = ∞) the model is the replaced one: the coarse-to-fine
    # profile of Newton fits gives the same grid points for σ and both bounds (tolerance 1e-3 px,
    # a twentieth of the grid step) and the same dispersion (1e-6 relative), on 64-px frames of
    # four renderers, sharp and defocused, 10–1000 e⁻/px.
    frame = _lr_frame(family, 256, dose, defocus, [5, int(dose), int(defocus)])
    fast = blur_estimate(frame, correlation_lengths=[math.inf])
    sigma, lower, upper, dispersion = _reference_estimate(frame)
    for new, old in ((fast.sigma_px, sigma), (fast.lower_px, lower), (fast.upper_px, upper)):
        assert (math.isinf(new) and math.isinf(old)) or abs(new - old) <= 1e-3, (fast, sigma, lower, upper)
    assert fast.dispersion == pytest.approx(dispersion, rel=1e-6)


def test_coarse_to_fine_profile_equals_the_full_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    # The default model (ξ profiled): refining around the minimum and the bound crossings of a
    # 0.1-px scan lands on the same grid points as evaluating every 0.02-px point.
    frames = [_lr_frame(fam, 256, dose, dz, [6, i]) for i, (fam, dose, dz) in enumerate(FRAMES[::2])]
    fast = [blur_estimate(x) for x in frames]
    monkeypatch.setattr(blur, "COARSE_STRIDE", 1)
    full = [blur_estimate(x) for x in frames]
    assert fast == full


def test_gamma_fit_reaches_the_optimum_of_a_general_optimiser() -> None:
    # Each row's deviance is the minimum over a, n ≥ 0: L-BFGS-B from three starts finds nothing
    # lower (to 1e-6), on rows with interior and boundary optima. (The Gamma deviance is not convex:
    # a column far too blurred, σ = 6 px, has a second minimum with μ ~100× the data on its few
    # bins, which the log-scale start does not lead to; such rows lie far above any bound.)
    rng = np.random.default_rng(3)
    f = np.linspace(0.02, 0.5, 60)
    nu = np.full(f.size, 8.0)
    truth = 50.0 * f**-3 * np.exp(-4 * math.pi**2 * 1.2**2 * f**2) + 2.0
    y = truth * rng.gamma(8.0, 1 / 8.0, f.size)
    g = np.array([f**-3 * np.exp(-4 * math.pi**2 * s**2 * f**2) for s in (0.0, 0.6, 1.2, 2.5)])
    dev, pearson = fit_rows(g, y, nu)
    for row, d in zip(g, dev):
        def objective(p, row=row):
            with np.errstate(over="ignore"):  # the optimiser's trial points may overflow: +inf, rejected
                return float(deviance(np.maximum(p[0] * row + p[1], 1e-300), y, nu))
        best = min(
            (optimize.minimize(objective, x0, method="L-BFGS-B", bounds=[(0, None), (0, None)], options={"ftol": 1e-15, "gtol": 1e-12})
             for x0 in ([y[0] / row[0], y[-1]], [0.0, y.mean()], [y[0] / row[0], 0.0])),
            key=lambda r: r.fun,
        )
        assert d <= best.fun + 1e-6, (d, best.fun)
    assert np.all(pearson > 0)


def _model_frame(side: int, sigma: float, xi: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    """A Gaussian field whose spectrum is the model: ``(1 + (2πξf)²)^(−3/2)·exp(−4π²σ²f²)`` plus white noise."""
    fy, fx = np.fft.fftfreq(side)[:, None], np.fft.fftfreq(side)[None, :]
    f2 = fy**2 + fx**2
    spectrum = (1 + 4 * math.pi**2 * xi**2 * f2) ** -1.5 * np.exp(-4 * math.pi**2 * sigma**2 * f2)
    field = np.fft.ifft2(np.fft.fft2(rng.normal(size=(side, side))) * np.sqrt(spectrum)).real
    return field / field.std() + noise * rng.normal(size=(side, side))


def test_bounds_cover_the_true_blur_on_frames_that_follow_the_model() -> None:
    # On frames drawn from the model (σ 0.8 and 2 px, ξ 3 px, noise at 5 % of the signal's
    # variance), each one-sided bound misses at the false-rejection rate (0.1 %): all 20 cover σ,
    # and the fitted ξ is finite. The dispersion stays below 1.5 (no misfit); it is ~0.7 here, not 1:
    # the Hann inflation of ν counts correlations with neighbours that lie in the next annulus,
    # so the shapes ν are conservative and the bounds, which divide by max(1, dispersion), wide.
    rng = np.random.default_rng(11)
    for sigma in (0.8, 2.0):
        for _ in range(10):
            est = blur_estimate(_model_frame(128, sigma, 3.0, math.sqrt(0.05), rng))
            assert est.lower_px <= sigma <= est.upper_px, (sigma, est)
            assert math.isfinite(est.correlation_length_px), est
            assert 0.2 < est.dispersion < 1.5, est


@pytest.mark.parametrize("family", ["bse", "dark"])
def test_three_pixel_defocus_on_a_textured_substrate_is_refused(family: str) -> None:
    # 256-px LR frames at 100 e⁻/px of the textured families, whose spectrum is flat below the
    # particles' size (the f^−3 scene alone measured 1.5–1.9 px here and left the focus undetermined):
    # a 3-px defocus has its lower bound above the sharp limit, the sharp scan its lower bound below.
    sharp = blur_estimate(_lr_frame(family, 1024, 100.0, 0.0, [12, 0]))
    defocused = blur_estimate(_lr_frame(family, 1024, 100.0, 3.0, [12, 1]))
    assert sharp.lower_px <= SHARP_SIGMA_LIMIT_PX, sharp
    assert defocused.lower_px > SHARP_SIGMA_LIMIT_PX, defocused
    assert defocused.lower_px <= 3.0 <= defocused.upper_px, defocused
