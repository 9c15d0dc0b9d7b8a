"""PSD: D-values against known distributions, weighting, bootstrap CIs, histogram, warnings."""

import numpy as np
import pytest

from semqa.errors import InputError
from semqa.stats.psd import (
    COUNT_GUIDANCE,
    PSD,
    compute_psd,
    count_warnings,
    d_values,
    histogram_edges,
)
from scipy import stats

MU, SIGMA = np.log(8.0), 0.4  # log-normal: number median 8 µm, geometric SD e^0.4 ≈ 1.49


def lognormal(n, seed=0, mu=MU, sigma=SIGMA):
    return np.random.default_rng(seed).lognormal(mu, sigma, size=n)


def test_equal_weights_follow_hazen_rule():
    x = lognormal(501, seed=3)
    q = [0.0, 0.1, 0.25, 0.5, 0.9, 1.0]
    np.testing.assert_allclose(d_values(x, "number", q), np.quantile(x, q, method="hazen"), rtol=1e-12)


def test_small_hand_cases():
    # Midpoints of 1, 2 are at 0.25 and 0.75: 0.5 interpolates halfway, outside is clamped.
    np.testing.assert_allclose(d_values([2.0, 1.0], "number", (0.1, 0.25, 0.5, 0.75, 0.9)), [1, 1, 1.5, 2, 2])
    np.testing.assert_allclose(d_values([3.0], "number"), [3, 3, 3])
    # Volume weights 1 : 8 → midpoints at 1/18 and 10/18; D50 = 1 + (0.5 - 1/18) / (9/18) = 1.888…
    np.testing.assert_allclose(d_values([1.0, 2.0], "volume", (0.5,)), [1 + (0.5 - 1 / 18) / (9 / 18)])


def test_number_d_values_of_large_lognormal_sample():
    x = lognormal(200_000, seed=1)
    z = stats.norm.ppf([0.1, 0.5, 0.9])
    np.testing.assert_allclose(d_values(x, "number"), np.exp(MU + SIGMA * z), rtol=0.01)


def test_volume_d50_follows_hatch_choate():
    # Volume-weighted log-normal has ln-mean μ + 3σ² (Hatch & Choate 1929), same σ.
    x = lognormal(400_000, seed=2)
    z = stats.norm.ppf([0.1, 0.5, 0.9])
    expected = np.exp(MU + 3 * SIGMA**2 + SIGMA * z)
    np.testing.assert_allclose(d_values(x, "volume"), expected, rtol=0.015)
    assert d_values(x, "volume", (0.5,))[0] == pytest.approx(np.exp(MU + 3 * SIGMA**2), rel=0.01)


def test_integer_weights_equal_repeated_particles():
    x = lognormal(2000, seed=4)
    w = np.random.default_rng(5).integers(1, 4, size=x.size)
    # Hazen midpoints of repeated particles differ from a weight's midpoint only within the
    # repeated block, i.e. by less than one particle's share: agreement to ~1e-3 relative.
    np.testing.assert_allclose(d_values(x, "number", weights=w), d_values(np.repeat(x, w), "number"), rtol=2e-3)
    np.testing.assert_allclose(d_values(x, "number", weights=np.full(x.size, 2.5)), d_values(x, "number"))


def test_edge_correction_weights_restore_the_distribution():
    # Large particles under-counted with probability ∝ 1/weight; weighting restores the truth.
    rng = np.random.default_rng(6)
    x = lognormal(300_000, seed=7)
    keep_prob = 1.0 / (1.0 + x / 8.0)
    kept = rng.random(x.size) < keep_prob
    biased, w = x[kept], 1.0 / keep_prob[kept]
    truth = d_values(x, "number")
    assert d_values(biased, "number")[2] < 0.93 * truth[2]
    np.testing.assert_allclose(d_values(biased, "number", weights=w), truth, rtol=0.01)


def test_zero_weight_particles_are_ignored():
    x = np.array([1.0, 5.0, 2.0, 3.0])
    np.testing.assert_allclose(d_values(x, "number", weights=[1, 0, 1, 1]), d_values([1.0, 2.0, 3.0], "number"))


def test_no_particles_is_a_valid_result():
    psd = compute_psd(np.array([]), "volume")
    assert psd.n == 0 and psd.d50_um is None and psd.span is None and psd.d50_ci_um is None
    assert psd.histogram.fraction == [] and any("no particles" in w for w in psd.warnings)
    assert np.isnan(d_values([], "number")).all()
    # Round-trips through JSON as the analysis result does.
    assert PSD.model_validate_json(psd.model_dump_json()) == psd


def test_compute_psd_fields_and_span():
    x = lognormal(3000, seed=8)
    psd = compute_psd(x, "number", n_bootstrap=200)
    d10, d50, d90 = d_values(x, "number")
    assert (psd.d10_um, psd.d50_um, psd.d90_um) == (d10, d50, d90)
    assert psd.span == pytest.approx((d90 - d10) / d50)
    for value, ci in [(psd.d10_um, psd.d10_ci_um), (psd.d50_um, psd.d50_ci_um), (psd.d90_um, psd.d90_ci_um), (psd.span, psd.span_ci)]:
        assert ci[0] < value < ci[1]
    assert psd.n == 3000 and psd.weighting == "number" and psd.warnings == []


def test_bootstrap_is_deterministic_by_seed():
    x = lognormal(800, seed=9)
    a = compute_psd(x, "volume", n_bootstrap=300, seed=11)
    b = compute_psd(x, "volume", n_bootstrap=300, seed=11)
    c = compute_psd(x, "volume", n_bootstrap=300, seed=12)
    assert a == b
    assert a.d90_ci_um != c.d90_ci_um


def test_bootstrap_chunking_does_not_change_results(monkeypatch):
    import semqa.stats.psd as psd_module

    x = lognormal(500, seed=10)
    whole = compute_psd(x, "number", n_bootstrap=100, seed=1)
    monkeypatch.setattr(psd_module, "_BOOTSTRAP_CHUNK_ELEMENTS", 500 * 7)  # 7 resamples per chunk
    assert compute_psd(x, "number", n_bootstrap=100, seed=1) == whole


def test_bootstrap_ci_coverage_is_close_to_nominal():
    # 300 samples of 400 particles: the 95 % intervals should hold the true D50 and D90
    # about 95 % of the time (binomial SD ≈ 1.3 %; the percentile bootstrap of a quantile
    # under-covers slightly at this n).
    z = stats.norm.ppf([0.5, 0.9])
    true_d50, true_d90 = np.exp(MU + SIGMA * z)
    hits50 = hits90 = 0
    runs = 300
    for i in range(runs):
        psd = compute_psd(lognormal(400, seed=1000 + i), "number", n_bootstrap=400, seed=i)
        hits50 += psd.d50_ci_um[0] <= true_d50 <= psd.d50_ci_um[1]
        hits90 += psd.d90_ci_um[0] <= true_d90 <= psd.d90_ci_um[1]
    assert 0.89 <= hits50 / runs <= 0.99
    assert 0.89 <= hits90 / runs <= 0.99


def test_histogram_log_edges_fractions_and_cumulative():
    x = lognormal(5000, seed=13)
    psd = compute_psd(x, "number", n_bootstrap=0)
    edges = np.array(psd.histogram.edges_um)
    ratios = edges[1:] / edges[:-1]
    np.testing.assert_allclose(ratios, 10 ** 0.1)
    assert edges[0] <= x.min() and edges[-1] >= x.max()
    assert sum(psd.histogram.fraction) == pytest.approx(1.0)
    assert psd.histogram.cumulative[-1] == pytest.approx(1.0)
    # The cumulative curve crosses 0.5 in the bin that holds D50.
    i = int(np.searchsorted(psd.histogram.cumulative, 0.5))
    assert edges[i] <= psd.d50_um <= edges[i + 1]
    vol = compute_psd(x, "volume", n_bootstrap=0)
    assert np.argmax(vol.histogram.fraction) > np.argmax(psd.histogram.fraction)


def test_histogram_edges_are_shared_across_samples():
    small, large = lognormal(500, seed=14), lognormal(500, seed=15) * 1.3
    edges = histogram_edges(min(small.min(), large.min()), max(small.max(), large.max()), bins_per_decade=8)
    a = compute_psd(small, bins=edges, n_bootstrap=0)
    b = compute_psd(large, bins=edges, n_bootstrap=0)
    assert a.histogram.edges_um == b.histogram.edges_um == edges.tolist()
    # Default edges lie on one grid: 10^(k/bpd).
    k = np.log10(histogram_edges(3.3, 47.0, bins_per_decade=5)) * 5
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)
    outside = compute_psd(large, bins=[1.0, 2.0, 4.0], n_bootstrap=0)
    assert any("outside" in w for w in outside.warnings)


def test_iso_count_warnings_without_refusing():
    few = compute_psd(lognormal(120, seed=16), "number", n_bootstrap=50)
    assert few.d50_um is not None and any("120 particles" in w for w in few.warnings)
    enough = compute_psd(lognormal(COUNT_GUIDANCE.number_percentiles, seed=17), "number", n_bootstrap=0)
    assert enough.warnings == []
    assert "61000" in count_warnings(20_000, "volume")[0]
    assert "volume-mean" in count_warnings(1000, "volume")[0]
    assert count_warnings(70_000, "volume") == []


@pytest.mark.parametrize(
    "bad",
    [[1.0, np.nan], [1.0, -2.0], [0.0, 1.0], [[1.0, 2.0]], [1.0, np.inf]],
)
def test_bad_sizes_are_input_errors(bad):
    with pytest.raises(InputError):
        compute_psd(bad)


def test_bad_arguments_are_input_errors():
    x = lognormal(50)
    with pytest.raises(InputError):
        d_values(x, "mass")
    with pytest.raises(InputError):
        d_values(x, quantiles=(0.5, 1.5))
    with pytest.raises(InputError):
        compute_psd(x, weights=np.ones(3))
    with pytest.raises(InputError):
        compute_psd(x, weights=-np.ones(x.size))
    with pytest.raises(InputError):
        compute_psd(x, weights=np.zeros(x.size))
    with pytest.raises(InputError):
        compute_psd(x, ci_level=1.0)
    with pytest.raises(InputError):
        histogram_edges(0.0, 10.0)
