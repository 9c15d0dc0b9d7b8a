"""The distribution functions semqa computes with scipy.special instead of scipy.stats (issue 15).

scipy.stats costs ~0.6 s CPU to import, a third of a one-image analysis, so the analysis path
computes the few normal, log-normal and Poisson values it needs from scipy.special, the way
scipy.stats itself does. Each is checked here against the scipy.stats function it stands for.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from semqa.particles import detection
from semqa.stats import censoring


@pytest.mark.parametrize(("mu", "sigma"), [(0.0, 1.0), (1.1, 0.35), (-2.0, 3.0)])
def test_normal_and_lognormal_match_scipy_stats(mu: float, sigma: float) -> None:
    x = np.linspace(mu - 8 * sigma, mu + 8 * sigma, 101)
    np.testing.assert_allclose(censoring.norm_logpdf(x, mu, sigma), stats.norm.logpdf(x, mu, sigma), rtol=1e-13, atol=0)
    for v in x[::10]:
        assert censoring.norm_logsf(v, mu, sigma) == pytest.approx(stats.norm.logsf(v, mu, sigma), rel=1e-13)
        assert censoring.norm_cdf(v, mu, sigma) == pytest.approx(stats.norm.cdf(v, mu, sigma), rel=1e-13, abs=1e-300)
    for q in (1e-12, 0.1, 0.5, 0.9, 0.975, 1 - 1e-9):
        assert censoring.norm_ppf(q, mu, sigma) == pytest.approx(stats.norm.ppf(q, mu, sigma), rel=1e-13, abs=1e-15)
    for v in (1e-3, 0.5, 1.0, 3.0, 40.0):
        expected = stats.lognorm.pdf(v, sigma, scale=np.exp(mu))
        assert censoring.lognorm_pdf(v, sigma, np.exp(mu)) == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_detection_threshold_and_poisson_skew_match_scipy_stats() -> None:
    for n, budget in ((1, 0.05), (768 * 768 * 7, 0.05), (10**9, 1e-3)):
        assert detection.threshold_for(n, budget) == stats.norm.isf(budget / n)
    for lam in (0.3, 10.0, 250.0):
        n = np.arange(0, int(np.ceil(lam + 12 * np.sqrt(lam) + 20)))
        p = stats.poisson.pmf(n, lam)
        f = 2.0 * np.sqrt(n + 0.375)
        mean = (p * f).sum()
        var = (p * (f - mean) ** 2).sum()
        assert detection._stabilized_poisson_skew(lam) == pytest.approx((p * (f - mean) ** 3).sum() / var**1.5, rel=1e-12)
