"""The sizing limit and censored D-values: a truncated comparison is never called equivalent."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from semqa.analysis import AnalysisConfig, compare, load_lots
from semqa.io.images import read_image
from semqa.stats.censoring import assess_censoring, sizing_limit
from semqa.stats.equivalence import CompareConfig, compare_products
from semqa.synth.scenes import SynthConfig, make_lots

LR_PX, SR_PX, MIN_PIXELS = 0.4, 0.1, 10


def _population(d50: float, n: int, rng: np.random.Generator, gsd: float = 1.5) -> np.ndarray:
    return np.exp(rng.normal(math.log(d50), math.log(gsd), n))


def _measured(d50: float, n: int, px: float, rng: np.random.Generator) -> np.ndarray:
    """What an analysis at ``px`` keeps of a log-normal population: nothing below its limit."""
    x = _population(d50, n, rng)
    return x[x >= sizing_limit(px, MIN_PIXELS).d_min_um]


def _product(d50: float, px: float, seed: int, lots: int = 3, units: int = 10, n: int = 300) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {f"lot{i + 1}": [_measured(d50, n, px, rng) for _ in range(units)] for i in range(lots)}


def test_sizing_limit_from_pixel_size_and_pixel_count() -> None:
    limit = sizing_limit(LR_PX, MIN_PIXELS)
    assert limit.d_min_um == pytest.approx(2 * math.sqrt(10 / math.pi) * 0.4)  # 1.427 µm
    assert limit.band_upper_um == pytest.approx(limit.d_min_um + LR_PX)
    assert "ISO 13322-1" in limit.source and "0.4 µm/px" in limit.source


def test_d_values_near_the_limit_are_flagged_and_far_ones_are_not() -> None:
    rng = np.random.default_rng(1)
    coarse = assess_censoring(_measured(3.0, 3000, LR_PX, rng), sizing_limit(LR_PX, MIN_PIXELS))
    assert "D10" in coarse.censored
    assert coarse.fitted_share_below == pytest.approx(0.11, abs=0.04)  # Φ(ln(1.83/3)/ln 1.5) = 0.11
    assert coarse.message.startswith("resolution too coarse:") and "1.43 µm sizing limit" in coarse.message
    assert "`--sr` or a finer scan" in coarse.message
    # The same population sized at the SR pixel, or larger particles at the LR pixel: nothing censored.
    for d50, px in ((3.0, SR_PX), (12.0, LR_PX)):
        fine = assess_censoring(_measured(d50, 3000, px, rng), sizing_limit(px, MIN_PIXELS))
        assert fine.censored == [] and fine.message is None
        assert fine.fitted_share_below < 1e-3


def _nelder_mead_fit(ln_x: np.ndarray, ln_b: float) -> tuple[float, float, float]:
    """The fit as semqa made it before issue 15: Nelder–Mead on the truncated-normal likelihood; and its nll."""
    from scipy import optimize, stats

    def nll(theta: np.ndarray) -> float:
        return -float(np.sum(stats.norm.logpdf(ln_x, theta[0], math.exp(theta[1]))) - ln_x.size * stats.norm.logsf(ln_b, theta[0], math.exp(theta[1])))

    start = np.array([float(ln_x.mean()), math.log(max(float(ln_x.std()), 1e-3))])
    fit = optimize.minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-8, "maxiter": 2000})
    return float(fit.x[0]), math.exp(fit.x[1]), nll


@pytest.mark.parametrize("family", ["lognormal", "gamma", "weibull", "bimodal"])
def test_truncated_fit_is_the_likelihood_optimum_nelder_mead_found(family: str) -> None:
    """Cohen's moment equation gives the MLE Nelder–Mead approached (its xatol 1e-6), never a worse one."""
    from semqa.stats.censoring import _fit_truncated_lognormal

    rng = np.random.default_rng(len(family))
    draw = {
        "lognormal": lambda n: _population(rng.uniform(0.5, 10), n, rng, gsd=rng.uniform(1.1, 2.5)),
        "gamma": lambda n: rng.gamma(rng.uniform(1.5, 8), rng.uniform(0.2, 2), n),
        "weibull": lambda n: rng.uniform(0.5, 5) * rng.weibull(rng.uniform(1.2, 4), n),
        "bimodal": lambda n: np.concatenate([_population(1.0, n, rng, 1.35), _population(4.5, n // 2, rng, 1.35)]),
    }[family]
    for _ in range(8):
        x = draw(int(rng.integers(40, 3000)))
        ln_b = math.log(float(np.quantile(x, rng.uniform(0.0, 0.6))))
        ln_x = np.log(x[np.log(x) > ln_b])
        mu, sigma = _fit_truncated_lognormal(ln_x, ln_b)
        mu_nm, sigma_nm, nll = _nelder_mead_fit(ln_x, ln_b)
        assert mu == pytest.approx(mu_nm, abs=1e-5 * (abs(mu_nm) + sigma_nm))
        assert sigma == pytest.approx(sigma_nm, rel=1e-5)
        assert nll([mu, math.log(sigma)]) <= nll([mu_nm, math.log(sigma_nm)]) + 1e-9


def test_a_sample_far_above_the_band_fits_its_own_mean_and_spread() -> None:
    """A nearly constant sample (θ(ξ) → 0 as ξ → −∞) gives the untruncated fit, no overflow."""
    from semqa.stats.censoring import _fit_truncated_lognormal

    ln_x = np.log(np.array([3.0] * 49 + [3.0000001]))
    mu, sigma = _fit_truncated_lognormal(ln_x, math.log(1.0))
    assert mu == pytest.approx(float(ln_x.mean())) and sigma == pytest.approx(float(ln_x.std()))


def test_a_sample_wider_than_any_truncated_lognormal_is_censored() -> None:
    """No interior optimum (spread of an exponential or wider above the band): all D-values censored, finite."""
    limit = sizing_limit(LR_PX, MIN_PIXELS)
    rng = np.random.default_rng(9)
    wide = limit.band_upper_um * np.exp(rng.pareto(3.0, 400) * 0.5)
    out = assess_censoring(wide, limit)
    assert out.censored == ["D10", "D50", "D90"]
    assert out.fitted_share_below > 0.999
    assert all(math.isfinite(v) for v in [*out.bias_um.values(), *out.half_width_um.values()])


def test_censored_comparison_is_inconclusive_never_equivalent() -> None:
    limit = sizing_limit(LR_PX, MIN_PIXELS)
    ref = _product(3.0, LR_PX, seed=2)
    for test_d50 in (3.0, 3.75):  # the same population, and one with D50 + 25 %
        test = _product(test_d50, LR_PX, seed=3)
        result = compare_products(ref, test, CompareConfig(n_bootstrap=0), sizing_limit=limit)
        assert result.verdict == "inconclusive", result.reason
        assert "resolution too coarse" in result.reason and "reference 'lot1'" in result.reason
        assert result.sizing_limit == limit
        assert all(lot.censoring is not None and "D10" in lot.censoring.censored for lot in result.reference_lots)


@pytest.mark.parametrize("test_d50, verdict", [(3.0, "equivalent"), (3.75, "not_equivalent")])
def test_uncensored_comparison_keeps_its_verdict(test_d50: float, verdict: str) -> None:
    ref, test = _product(3.0, SR_PX, seed=4), _product(test_d50, SR_PX, seed=5)
    plain = compare_products(ref, test, CompareConfig(n_bootstrap=0))
    limited = compare_products(ref, test, CompareConfig(n_bootstrap=0), sizing_limit=sizing_limit(SR_PX, MIN_PIXELS))
    assert plain.verdict == limited.verdict == verdict, limited.reason
    assert all(lot.censoring.censored == [] for lot in limited.reference_lots + limited.test_lots)


@pytest.fixture(scope="module")
def demo_lots(tmp_path_factory) -> Path:
    """The demo's products (semqa.synth.scenes.default_products) at the default frame, 3 lots × 3 images."""
    return make_lots(tmp_path_factory.mktemp("demo") / "lots", lots=3, images_per_lot=3, config=SynthConfig(), seed=0, workers=2)


def _read(lots: Path, product: str) -> dict:
    return {lot: [read_image(f) for f in files] for lot, files in load_lots(lots / product / "lr").items()}


@pytest.mark.slow
@pytest.mark.parametrize("generic", ["generic-equivalent", "generic-shifted"])
def test_demo_lr_lots_without_sr_are_never_called_equivalent(demo_lots: Path, generic: str) -> None:
    # LR direct (0.4 µm/px, no SR), as `semqa compare` without --sr: the 10-pixel floor cuts
    # the small side of the D50 = 3 µm distribution, so the verdict says so instead of judging.
    design = CompareConfig(min_units_per_lot=3, n_bootstrap=0)
    report = compare(_read(demo_lots, "rld"), _read(demo_lots, generic), AnalysisConfig(n_bootstrap=0), compare_config=design)
    assert report.verdict != "equivalent"
    assert report.verdict == "inconclusive" and "resolution too coarse" in report.reason, report.reason
    assert report.statistics.sizing_limit.d_min_um == pytest.approx(1.427, abs=1e-3)
    analysis = report.reference["lot1"]
    # The lot's own limit is over its images, the comparison's over every image of both products:
    # the pixel count binds both (the detection limit lies below it), so they are the same band.
    lot_limit, limit = analysis.sizing_limit, report.statistics.sizing_limit
    assert lot_limit.binding == limit.binding == "pixels"
    assert (lot_limit.d_min_um, lot_limit.band_upper_um) == (limit.d_min_um, limit.band_upper_um)
    assert limit.detection_d95_um is not None and lot_limit.detection_d95_um is not None
    assert "D10" in analysis.censoring.censored
    assert any(w.startswith("resolution too coarse") for w in analysis.psd.warnings)


@pytest.mark.slow
def test_cli_states_the_sizing_limit_and_who_chose_sr(demo_lots: Path, tmp_path: Path, capsys) -> None:
    import json

    from semqa.cli import main

    images = demo_lots / "rld" / "lr" / "lot1"
    assert main(["analyze", str(images), "--json", str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr().out
    assert "sizing limit: 1.43 µm" in out and "super-resolution off (default)" in out
    assert "warning: resolution too coarse" in out
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["sr"] is False and result["sr_by_default"] is True
    assert result["sizing_limit"]["pixel_size_um"] == pytest.approx(0.4)
    assert main(["analyze", str(images), "--no-sr", "--json", str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["sr_by_default"] is False
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    assert "default: off, as in the service and the dashboard" in " ".join(capsys.readouterr().out.split())
