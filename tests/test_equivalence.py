"""Equivalence of lots: FDA PBE on a hand-computed case, both scaling branches, verdicts."""

import math

import numpy as np
import pytest
from scipy import stats

from semqa.stats.equivalence import CompareConfig, ComparisonResult, compare_products, pbe, theta_p
from semqa.errors import InputError


def as_raw(ln_lots):
    """Lots of ln values → lots of raw values (pbe ln-transforms them back)."""
    return {lot: [math.exp(v) for v in values] for lot, values in ln_lots.items()}


# 3 lots × 3 units per product, given on the ln scale so the arithmetic below stays exact.
TEST_LN = {"A": [0.00, 0.10, 0.20], "B": [0.10, 0.20, 0.30], "C": [0.20, 0.30, 0.40]}
REF_WIDE_LN = {"A": [-0.05, 0.15, 0.35], "B": [0.05, 0.25, 0.45], "C": [-0.15, 0.05, 0.25]}
REF_NARROW_LN = {"A": [0.10, 0.15, 0.20], "B": [0.15, 0.20, 0.25], "C": [0.05, 0.10, 0.15]}

# Quantiles used below, checked against printed tables.
T_95_16 = stats.t.ppf(0.95, 16)  # 1.7459
CHI2_05_8 = stats.chi2.ppf(0.05, 8)  # 2.7326
CHI2_95_8 = stats.chi2.ppf(0.95, 8)  # 15.5073


def test_quantiles_match_tables():
    assert T_95_16 == pytest.approx(1.7459, abs=1e-4)
    assert CHI2_05_8 == pytest.approx(2.7326, abs=1e-4)
    assert CHI2_95_8 == pytest.approx(15.5073, abs=1e-4)


def test_theta_p_is_the_regulatory_constant():
    assert theta_p() == pytest.approx(2.0891, abs=5e-5)
    assert theta_p() == pytest.approx((math.log(1.11) ** 2 + 0.01) / 0.1**2)


def test_hand_computed_reference_scaled_case():
    # Test: mean 1.8/9 = 0.2; squared deviations .04 .01 0 .01 0 .01 0 .01 .04 → SS 0.12
    #   MSB_T = 0.12 / (9 − 1) = 0.015 (m = 1: σT² = MSB_T).
    # Reference: mean 1.35/9 = 0.15; deviations −.2 0 .2 −.1 .1 .3 −.3 −.1 .1 → SS 0.30
    #   MSB_R = 0.30 / 8 = 0.0375, σR = 0.1936 > σT0 = 0.1 → reference-scaled.
    msb_t, msb_r, delta, th = 0.015, 0.0375, 0.05, 2.0891012798476196
    ed = delta**2  # 0.0025
    hd = (delta + T_95_16 * math.sqrt(msb_t / 9 + msb_r / 9)) ** 2  # (0.05 + 1.7459·0.076376)² = 0.033615
    e1 = msb_t  # MSB_T / m
    h1 = 8 * e1 / CHI2_05_8  # 0.12 / 2.7326 = 0.043913
    e3 = -(1 + th) * msb_r  # −0.115841
    h3 = 8 * e3 / CHI2_95_8  # −0.059762
    eq = ed + e1 + e3  # −0.098341
    uq = (hd - ed) ** 2 + (h1 - e1) ** 2 + (h3 - e3) ** 2  # 0.004949
    bound = eq + math.sqrt(uq)  # −0.02799
    assert bound == pytest.approx(-0.02799, abs=5e-5)

    r = pbe(as_raw(TEST_LN), as_raw(REF_WIDE_LN), metric="D50")
    assert r.scaling == "reference"
    assert (r.lots_test, r.units_test, r.replicates_test) == (3, 9, 1)
    assert r.msb_test == pytest.approx(msb_t) and r.msb_reference == pytest.approx(msb_r)
    assert r.msw_test is None and r.msw_reference is None
    assert r.delta == pytest.approx(delta)
    assert r.sigma_t == pytest.approx(math.sqrt(0.015)) and r.sigma_r == pytest.approx(math.sqrt(0.0375))
    assert r.components["Hd"] == pytest.approx(hd) and r.components["H1"] == pytest.approx(h1)
    assert r.components["H3"] == pytest.approx(h3)
    assert r.criterion == pytest.approx(eq)
    assert r.upper_bound == pytest.approx(bound)
    assert r.passes
    assert r.geometric_mean_ratio == pytest.approx(math.exp(0.05))


def test_hand_computed_constant_scaled_case():
    # Reference: mean 1.35/9 = 0.15; deviations −.05 0 .05 0 .05 .1 −.1 −.05 0 → SS 0.03
    #   MSB_R = 0.00375, σR = 0.0612 ≤ σT0 → constant-scaled: Eq includes −θp σT0².
    msb_t, msb_r, delta, th = 0.015, 0.00375, 0.05, 2.0891012798476196
    ed, hd = delta**2, (delta + T_95_16 * math.sqrt(msb_t / 9 + msb_r / 9)) ** 2  # Hd = 0.016819
    e1, h1 = msb_t, 8 * msb_t / CHI2_05_8
    e3, h3 = -msb_r, 8 * -msb_r / CHI2_95_8  # −0.00375, −0.0019346
    eq = ed + e1 + e3 - th * 0.1**2  # −0.007141
    bound = eq + math.sqrt((hd - ed) ** 2 + (h1 - e1) ** 2 + (h3 - e3) ** 2)  # +0.02517
    assert bound == pytest.approx(0.02517, abs=5e-5)

    r = pbe(as_raw(TEST_LN), as_raw(REF_NARROW_LN))
    assert r.scaling == "constant"
    assert r.criterion == pytest.approx(eq)
    assert r.upper_bound == pytest.approx(bound)
    assert not r.passes


def test_hand_computed_case_with_replicates_per_unit():
    # Appendix with m = 2 measurements per unit (life stages): within-unit terms E2, E4 appear.
    t = {"A": [[1.0, 1.2], [1.1, 1.0]], "B": [[0.9, 1.0], [1.3, 1.2]]}
    r_ = {"A": [[1.0, 1.1], [1.2, 1.4]], "B": [[0.8, 1.0], [1.1, 1.0]]}
    yt, yr = np.log(np.array([u for us in t.values() for u in us])), np.log(np.array([u for us in r_.values() for u in us]))
    n, m = 4, 2
    msb = lambda y: m * np.sum((y.mean(1) - y.mean()) ** 2) / (n - 1)  # noqa: E731
    msw = lambda y: np.sum((y - y.mean(1, keepdims=True)) ** 2) / (n * (m - 1))  # noqa: E731
    var_r = msb(yr) / m + (m - 1) * msw(yr) / m
    assert math.sqrt(var_r) > 0.1  # reference-scaled
    th, delta = theta_p(), yt.mean() - yr.mean()
    c = 1 + th
    terms = {
        "d": (delta**2, (abs(delta) + stats.t.ppf(0.95, 6) * math.sqrt(msb(yt) / 8 + msb(yr) / 8)) ** 2),
        "1": (msb(yt) / 2, 3 * (msb(yt) / 2) / stats.chi2.ppf(0.05, 3)),
        "2": (msw(yt) / 2, 4 * (msw(yt) / 2) / stats.chi2.ppf(0.05, 4)),
        "3": (-c * msb(yr) / 2, 3 * (-c * msb(yr) / 2) / stats.chi2.ppf(0.95, 3)),
        "4": (-c * msw(yr) / 2, 4 * (-c * msw(yr) / 2) / stats.chi2.ppf(0.95, 4)),
    }
    eq = sum(e for e, _ in terms.values())
    bound = eq + math.sqrt(sum((h - e) ** 2 for e, h in terms.values()))

    res = pbe(t, r_)
    assert res.replicates_test == 2 and res.msw_test == pytest.approx(msw(yt))
    assert res.sigma_r == pytest.approx(math.sqrt(var_r))
    for k, (e, h) in terms.items():
        assert res.components[f"E{k}"] == pytest.approx(e) and res.components[f"H{k}"] == pytest.approx(h)
    assert res.criterion == pytest.approx(eq) and res.upper_bound == pytest.approx(bound)


def test_lot_partition_does_not_change_the_appendix_estimates():
    # The appendix's MSB runs over all units of a product (N = l·n): unequal lots are fine.
    rng = np.random.default_rng(0)
    t, r = rng.lognormal(2, 0.05, 30), rng.lognormal(2, 0.05, 30)
    balanced = pbe({"a": t[:10], "b": t[10:20], "c": t[20:]}, {"a": r[:10], "b": r[10:20], "c": r[20:]})
    unequal = pbe({"a": t[:7], "b": t[7:25], "c": t[25:]}, {"a": r[:12], "b": r[12:20], "c": r[20:]})
    assert balanced.upper_bound == pytest.approx(unequal.upper_bound)
    assert unequal.lots_test == 3 and unequal.units_test == 30


def test_pbe_operating_characteristics():
    # Identical products (σ = 0.05 on ln, 3 × 10 units) pass nearly always; a 25 % shift never.
    rng = np.random.default_rng(1)

    def lots(shift):
        return {f"L{i}": np.exp(rng.normal(np.log(8) + shift, 0.05, 10)) for i in range(3)}

    same = np.mean([pbe(lots(0.0), lots(0.0)).passes for _ in range(200)])
    shifted = np.mean([pbe(lots(np.log(1.25)), lots(0.0)).passes for _ in range(200)])
    assert same >= 0.95
    assert shifted == 0.0


# Example data of the PBE appendix of FDA's Draft Guidance on Budesonide (inhalation suspension,
# Sep 2012): ln values, batch → canisters → (beginning, middle, end) life stages; test batches
# 4–6, reference batches 1–3 (as transcribed in github.com/eamonn2014/
# Three-level-nested-variance-components-analysis2, file "fda").
FDA_TEST_LN = {
    "4": [
        (6.894594, 6.913011, 6.895764), (5.832334, 5.846562, 5.832269), (6.235755, 6.26231, 6.245095),
        (5.646185, 5.635887, 5.63034), (5.960711, 5.962902, 5.961959), (5.500354, 5.508444, 5.513115),
        (6.663099, 6.64733, 6.651215), (5.724774, 5.72086, 5.71411), (6.183375, 6.186433, 6.182109),
        (5.64053, 5.648589, 5.626395),
    ],
    "5": [
        (6.69764, 6.71128, 6.699829), (6.555609, 6.549935, 6.551611), (5.009683, 5.013969, 5.010928),
        (5.440976, 5.42057, 5.447687), (6.477609, 6.456082, 6.448981), (6.442601, 6.426217, 6.436262),
        (5.640496, 5.63846, 5.640755), (6.597718, 6.599232, 6.609437), (6.007241, 5.990695, 5.984292),
        (6.781806, 6.774386, 6.784001),
    ],
    "6": [
        (5.993852, 5.994287, 5.993541), (6.012322, 6.006182, 6.017961), (5.965969, 5.97125, 5.967839),
        (5.592609, 5.581154, 5.588877), (6.002182, 6.011583, 6.018746), (5.267014, 5.272291, 5.265213),
        (5.766104, 5.786727, 5.773194), (6.054975, 6.05232, 6.061088), (5.838689, 5.837566, 5.842508),
        (5.784255, 5.789891, 5.788662),
    ],
}
FDA_REF_LN = {
    "1": [
        (5.957211, 5.961802, 5.967178), (6.010251, 6.004711, 6.004797), (5.884161, 5.894085, 5.895977),
        (5.624705, 5.632991, 5.614428), (5.957329, 5.966059, 5.968143), (5.074298, 5.063063, 5.058519),
        (5.418587, 5.420591, 5.418178), (6.325178, 6.321954, 6.303148), (5.656286, 5.68025, 5.675036),
        (5.792299, 5.775161, 5.793083),
    ],
    "2": [
        (5.601033, 5.611223, 5.601142), (5.61553, 5.587412, 5.591004), (5.682466, 5.676472, 5.671434),
        (5.844336, 5.855172, 5.862329), (5.898151, 5.883657, 5.878956), (6.100662, 6.105463, 6.108098),
        (6.294753, 6.28534, 6.302333), (5.638072, 5.627372, 5.623516), (5.113562, 5.122454, 5.109271),
        (5.932752, 5.913438, 5.912427),
    ],
    "3": [
        (5.961947, 5.955332, 5.943721), (6.2334, 6.250689, 6.219668), (6.041431, 6.038234, 6.080464),
        (6.049713, 6.039759, 6.054218), (6.834563, 6.85264, 6.857395), (4.864966, 4.907521, 4.891049),
        (5.895176, 5.885851, 5.874895), (6.45826, 6.443113, 6.435882), (6.090533, 6.102835, 6.077606),
        (5.886724, 5.920949, 5.915749),
    ],
}


def fda_raw(ln_lots, stages=slice(None)):
    """The appendix's ln values → raw values per canister (pbe ln-transforms them back)."""
    return {b: [[math.exp(v) for v in can[stages]] for can in cans] for b, cans in ln_lots.items()}


def test_fda_budesonide_example_three_life_stages():
    # The appendix's one-way ANOVA per product (canister as factor, the 3 batches pooled):
    # N = 30 canisters, m = 3; df: between 29, within 60; Hd's t has df 29 + 29 = 58.
    # Expected values below were computed from the appendix's formulas on these data by a
    # separate pandas groupby ANOVA: MSB_T 0.659229, MSW_T 5.8662e-5, MSB_R 0.490934,
    # MSW_R 1.2463e-4, δ 0.148641, σT 0.468809, σR 0.404633 > 0.1 → reference-scaled.
    th = 2.0891012798476196
    t58, c05_29, c95_29 = stats.t.ppf(0.95, 58), stats.chi2.ppf(0.05, 29), stats.chi2.ppf(0.95, 29)
    c05_60, c95_60 = stats.chi2.ppf(0.05, 60), stats.chi2.ppf(0.95, 60)
    assert (t58, c05_29, c95_29) == pytest.approx((1.6716, 17.7084, 42.5570), abs=1e-4)  # printed tables
    assert (c05_60, c95_60) == pytest.approx((43.1880, 79.0819), abs=1e-4)
    msb_t, msw_t, msb_r, msw_r = 0.6592287408556667, 5.866237530000027e-05, 0.49093433569672645, 1.2463290452222202e-04
    delta = 6.006791655555556 - 5.8581508
    terms = {
        "d": (delta**2, (delta + t58 * math.sqrt(msb_t / 90 + msb_r / 90)) ** 2),
        "1": (msb_t / 3, 29 * (msb_t / 3) / c05_29),
        "2": (2 * msw_t / 3, 60 * (2 * msw_t / 3) / c05_60),
        "3": (-(1 + th) * msb_r / 3, 29 * (-(1 + th) * msb_r / 3) / c95_29),
        "4": (-(1 + th) * 2 * msw_r / 3, 60 * (-(1 + th) * 2 * msw_r / 3) / c95_60),
    }
    eq = sum(e for e, _ in terms.values())  # −0.263896
    bound = eq + math.sqrt(sum((h - e) ** 2 for e, h in terms.values()))  # −0.031499
    assert eq == pytest.approx(-0.263896, abs=5e-6) and bound == pytest.approx(-0.031499, abs=5e-6)

    r = pbe(fda_raw(FDA_TEST_LN), fda_raw(FDA_REF_LN), metric="example")
    assert (r.lots_test, r.units_test, r.replicates_test) == (3, 30, 3)
    assert (r.lots_reference, r.units_reference, r.replicates_reference) == (3, 30, 3)
    assert r.msb_test == pytest.approx(msb_t) and r.msw_test == pytest.approx(msw_t)
    assert r.msb_reference == pytest.approx(msb_r) and r.msw_reference == pytest.approx(msw_r)
    assert r.delta == pytest.approx(delta)
    assert r.sigma_t == pytest.approx(0.468809, abs=5e-7) and r.sigma_r == pytest.approx(0.404633, abs=5e-7)
    assert r.geometric_mean_ratio == pytest.approx(1.160256, abs=5e-7)
    assert r.scaling == "reference"
    for k, (e, h) in terms.items():
        assert r.components[f"E{k}"] == pytest.approx(e) and r.components[f"H{k}"] == pytest.approx(h)
        assert r.components[f"U{k}"] == pytest.approx((h - e) ** 2)
    assert r.criterion == pytest.approx(eq) and r.upper_bound == pytest.approx(bound)
    assert r.passes


def test_fda_budesonide_example_one_life_stage():
    # Beginning-of-life values only (m = 1): the appendix drops E2, E4 and their H, U terms;
    # MSB is then the sample variance of the 30 canister values (df 29).
    # Separate computation (pandas var(ddof=1)): σT 0.469133, σR 0.405236, δ 0.149091.
    r = pbe(fda_raw(FDA_TEST_LN, slice(0, 1)), fda_raw(FDA_REF_LN, slice(0, 1)))
    assert r.replicates_test == r.replicates_reference == 1
    assert r.msw_test is None and r.msw_reference is None
    assert set(r.components) == {f"{x}{k}" for x in "EHU" for k in "d13"}
    assert r.sigma_t == pytest.approx(0.469133, abs=5e-7) and r.sigma_r == pytest.approx(0.405236, abs=5e-7)
    assert r.delta == pytest.approx(0.149091, abs=5e-7)
    assert r.scaling == "reference"
    assert r.components["Hd"] == pytest.approx(0.114433, abs=5e-7)
    assert r.components["H1"] == pytest.approx(0.360422, abs=5e-7)
    assert r.components["H3"] == pytest.approx(-0.345681, abs=5e-7)
    assert r.criterion == pytest.approx(-0.264966, abs=5e-7)
    assert r.upper_bound == pytest.approx(-0.031920, abs=5e-7)


@pytest.mark.parametrize(
    "test, reference",
    [
        ({}, {"A": [1.0, 2.0]}),
        ({"A": []}, {"A": [1.0, 2.0]}),
        ({"A": [1.0, -2.0]}, {"A": [1.0, 2.0]}),
        ({"A": [1.0, float("nan")]}, {"A": [1.0, 2.0]}),
        ({"A": [1.0]}, {"A": [1.0, 2.0]}),
        ({"A": [[1.0, 2.0], [1.0]]}, {"A": [1.0, 2.0]}),
    ],
)
def test_pbe_bad_input(test, reference):
    with pytest.raises(InputError):
        pbe(test, reference)


# ---- compare_products on per-unit ECD arrays ----------------------------------------------


def product(seed, d50=8.0, lots=3, units=10, particles=200, lot_sd=0.03, gsd=0.45):
    """Lots of units (images); each unit a log-normal sample around its lot's median."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(lots):
        mu = np.log(d50) + rng.normal(0, lot_sd)
        out[f"lot{i + 1}"] = [rng.lognormal(mu, gsd, particles) for _ in range(units)]
    return out


FAST = CompareConfig(n_bootstrap=50)


def test_identical_products_are_equivalent():
    res = compare_products(product(1), product(2), FAST)
    assert res.verdict == "equivalent", res.reason
    assert res.pbe_d50.passes and res.pbe_span.passes
    assert res.pbe_d50.units_test == res.pbe_d50.units_reference == 30
    assert 0.97 < res.pbe_d50.geometric_mean_ratio < 1.03
    assert res.ks_pvalue > 0.01
    assert res.wasserstein_um < 0.3
    assert res.n_particles_reference == res.n_particles_test == 3 * 10 * 200
    assert "D50" in res.reason and "span" in res.reason
    # Per-lot summaries carry counts and D-values from the one percentile rule.
    lot = res.reference_lots[0]
    assert lot.n_units == 10 and lot.n_particles == 2000 and lot.psd.n == 2000
    assert lot.units[0].n == 200 and lot.units[0].usable
    assert ComparisonResult.model_validate_json(res.model_dump_json()) == res


def test_25_percent_d50_shift_is_not_equivalent():
    res = compare_products(product(1), product(3, d50=8.0 * 1.25), FAST)
    assert res.verdict == "not_equivalent"
    assert not res.pbe_d50.passes and "D50" in res.reason
    assert res.pbe_d50.geometric_mean_ratio == pytest.approx(1.25, rel=0.03)
    assert res.wasserstein_ln == pytest.approx(math.log(1.25), rel=0.1)
    assert res.ks_pvalue < 1e-6


def test_wider_distribution_fails_on_span():
    res = compare_products(product(1), product(4, gsd=0.62), FAST)
    assert res.verdict == "not_equivalent"
    assert not res.pbe_span.passes and "span" in res.reason


def test_reference_scaled_branch_when_lots_vary_widely():
    ref, test = product(5, lot_sd=0.2, lots=4), product(6, lot_sd=0.2, lots=4)
    res = compare_products(ref, test, FAST)
    assert res.pbe_d50.sigma_r > 0.1 and res.pbe_d50.scaling == "reference"
    assert res.verdict in ("equivalent", "not_equivalent")


def test_too_few_lots_is_inconclusive():
    res = compare_products(product(1, lots=2), product(2), FAST)
    assert res.verdict == "inconclusive"
    assert "reference product has 2 lots" in res.reason
    assert res.pbe_d50 is not None  # still reported, for information
    assert any("for information" in w for w in res.warnings)


def test_too_few_units_is_inconclusive():
    res = compare_products(product(1), product(2, units=6), FAST)
    assert res.verdict == "inconclusive"
    assert "test lot 'lot1' has 6 units" in res.reason


def test_unit_with_too_few_particles_is_inconclusive_and_named():
    test = product(2)
    test["lot2"][3] = test["lot2"][3][:20]
    test["lot3"][0] = np.array([])  # an image without particles is valid data, but unusable
    res = compare_products(product(1), test, FAST)
    assert res.verdict == "inconclusive"
    assert "test lot 'lot2' unit(s) 4 (20)" in res.reason
    assert "test lot 'lot3' unit(s) 1 (0)" in res.reason
    assert res.pbe_d50.units_test == 28  # usable units only
    empty = res.test_lots[2].units[0]
    assert empty.n == 0 and empty.d50_um is None and not empty.usable


def test_iso_count_warnings_per_lot():
    res = compare_products(product(1, particles=60), product(2, particles=60), FAST)
    assert res.verdict in ("equivalent", "not_equivalent")
    assert not any("ISO 13322-1" in w for w in res.warnings)  # 600 particles per lot
    vol = compare_products(product(1), product(2), CompareConfig(n_bootstrap=0, weighting="volume"))
    assert vol.weighting == "volume" and vol.pbe_d50.metric.startswith("volume")
    assert any("reference lot 'lot1'" in w and "61000" in w for w in vol.warnings)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.clear(),
        lambda p: p.__setitem__("lot1", []),
        lambda p: p["lot1"].__setitem__(0, np.array([1.0, np.nan])),
        lambda p: p["lot1"].__setitem__(0, np.array([1.0, 0.0])),
        lambda p: p["lot1"].__setitem__(0, np.array([1.0, -3.0])),
    ],
)
def test_compare_bad_input(mutate):
    bad = product(1, units=3, particles=20)
    mutate(bad)
    with pytest.raises(InputError):
        compare_products(product(2, units=3, particles=20), bad, FAST)
