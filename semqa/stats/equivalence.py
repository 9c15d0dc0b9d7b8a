"""Equivalence of a test (generic) and a reference (RLD) product's particle size distributions.

The decision statistic is FDA's population bioequivalence (PBE) for in-vitro data, applied to
the per-unit D50 and span; Wasserstein (earth mover's) distance, two-sample Kolmogorov–Smirnov
and per-lot D-values are reported beside it.

Sources
-------
* FDA, *Draft Guidance on Budesonide* (inhalation suspension, RLD 020929; product-specific
  guidance recommended Sep 2012, ``Budesonide_Inhalation_Sus_20929_RC_09-12.pdf``), and its
  appendix on the population bioequivalence (PBE) statistical analysis procedure: one-way
  ANOVA of ln values per product with canister (unit) as the factor, the mixed-scaling
  linearized criterion with σT0 = 0.1 and θp = 2.0891, the moment-based 95 % upper bound
  computed below, and example data (3 batches × 10 canisters × 3 life stages per
  product, ln values) on which ``tests/test_equivalence.py`` runs this implementation.
  For one life stage (m = 1) the appendix drops E2, E4s, E4c and their H and U terms.
* FDA, *Statistical Information from the June 1999 Draft Guidance and Statistical
  Information for In Vitro Bioequivalence Data Posted on August 18, 1999* (re-posted
  04/10/2003 with the nasal aerosol/spray BA/BE draft guidance): the origin of that
  appendix. Three batches are too few to estimate a between-batch component, so each
  product's total variance is estimated from the canisters of the three batches pooled
  into one "super-batch"; hence MSB runs over all l·n units (df l·n − 1), and batches
  enter only through that count.
* FDA, guidance for industry *Statistical Approaches to Establishing Bioequivalence*
  (CDER, January 2001), section IV.B "Population Bioequivalence": the reference-/constant-
  scaled criterion, chosen by σ̂R > σT0. Decision rule, in FDA's words (draft guidance
  *Bioavailability and Bioequivalence Studies for Orally Administered Drug Products —
  General Considerations*, July 2002): "If the upper confidence bound for the appropriate
  criterion is negative or zero, conclude population BE" (hence ``passes`` is bound ≤ 0).
* The bound is the modified large-sample method of Hyslop, Hsuan & Holder, "A small sample
  confidence interval approach to assess individual bioequivalence", *Stat. Med.* 19 (2000)
  2885–2897 (Howe 1974 / Graybill & Wang 1980 for sums of variance components).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from semqa.errors import InputError
from semqa.stats.censoring import Censoring, SizingLimit, assess_censoring
from semqa.stats.psd import MAX_BOOTSTRAP, COUNT_GUIDANCE, PSD, CountGuidance, Weighting, as_sizes, compute_psd, d_values, quantity_weights

#: Regulatory constants of the FDA in-vitro PBE criterion.
SIGMA_T0 = 0.1
EPSILON_P = 0.01
#: ln of the 1.11 ratio limit that θp is built from.
_LN_LIMIT = np.log(1.11)


def theta_p(sigma_t0: float = SIGMA_T0, epsilon_p: float = EPSILON_P) -> float:
    """PBE limit θp = ((ln 1.11)² + εp) / σT0² (2.0891 for σT0 = 0.1, εp = 0.01; FDA budesonide PSG, 2012)."""
    return float((_LN_LIMIT**2 + epsilon_p) / sigma_t0**2)


class PBEResult(BaseModel):
    """FDA population bioequivalence of one metric (ln scale), with every intermediate."""

    metric: str
    lots_test: int
    lots_reference: int
    units_test: int = Field(description="units (containers) of the test product in all its lots: FDA's l·n_T")
    units_reference: int = Field(description="units of the reference product in all its lots: FDA's l·n_R")
    replicates_test: int = Field(1, description="measurements per unit (FDA's m; 1 = one value per unit)")
    replicates_reference: int = 1
    mean_ln_test: float
    mean_ln_reference: float
    msb_test: float = Field(description="between-unit mean square of ln values (df = units − 1)")
    msw_test: float | None = Field(None, description="within-unit mean square; None when m = 1")
    msb_reference: float
    msw_reference: float | None = None
    delta: float = Field(description="δ = mean ln(T) − mean ln(R)")
    sigma_t: float = Field(description="total SD of ln values of the test product")
    sigma_r: float = Field(description="total SD of ln values of the reference product")
    scaling: Literal["reference", "constant"] = Field(description="reference-scaled when σR > σT0, else constant-scaled")
    sigma_t0: float
    epsilon_p: float
    theta_p: float
    criterion: float = Field(description="point estimate of the linearized criterion η (Eq)")
    upper_bound: float = Field(description="one-sided upper confidence bound of η (Hη = Eq + √Uq)")
    confidence_level: float
    passes: bool = Field(description="upper bound ≤ 0: population bioequivalent for this metric")
    geometric_mean_ratio: float = Field(description="exp(δ): geometric mean ratio T/R, for context")
    components: dict[str, float] = Field(description="E (estimates), H (bounds), U = (H − E)² of each term")


def _product_values(values: Mapping[str, Sequence], label: str) -> tuple[np.ndarray, int]:
    """ln values as an array (units × replicates) and the number of lots."""
    if not values:
        raise InputError(f"the {label} product has no lots")
    units: list[np.ndarray] = []
    for lot, lot_units in values.items():
        if len(lot_units) == 0:
            raise InputError(f"{label} lot {lot!r} has no units")
        for u in lot_units:
            units.append(np.atleast_1d(np.asarray(u, dtype=float)))
    reps = {u.size for u in units}
    if len(reps) != 1 or 0 in reps or any(u.ndim != 1 for u in units):
        raise InputError(f"every {label} unit needs the same number (≥ 1) of replicate values, got {sorted(reps)}")
    y = np.vstack(units)
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise InputError(f"{label} values must be finite and > 0 (they are ln-transformed)")
    if y.shape[0] < 2:
        raise InputError(f"the {label} product needs at least 2 units for a variance, got {y.shape[0]}")
    return np.log(y), len(values)


def _mean_squares(y: np.ndarray) -> tuple[float, float | None]:
    """MSB (between units) and MSW (within units, None for m = 1) of an N × m array."""
    n, m = y.shape
    unit_means = y.mean(axis=1)
    msb = m * float(np.sum((unit_means - y.mean()) ** 2)) / (n - 1)
    msw = float(np.sum((y - unit_means[:, None]) ** 2)) / (n * (m - 1)) if m > 1 else None
    return msb, msw


def pbe(
    test: Mapping[str, Sequence[float] | Sequence[Sequence[float]]],
    reference: Mapping[str, Sequence[float] | Sequence[Sequence[float]]],
    *,
    metric: str = "value",
    sigma_t0: float = SIGMA_T0,
    epsilon_p: float = EPSILON_P,
    alpha: float = 0.05,
) -> PBEResult:
    """FDA population bioequivalence (PBE) of in-vitro per-unit values.

    Parameters
    ----------
    test, reference : mapping of lot name → sequence of per-unit values
        Raw values (> 0; e.g. a unit's D50 in µm). A unit may instead hold a sequence of
        ``m`` replicate measurements (the appendix's life stages); ``m`` must be the same for
        every unit of a product. Units are nested in lots.
    metric : str
        Name recorded in the result.
    sigma_t0, epsilon_p : float
        Regulatory constants (FDA: 0.1 and 0.01).
    alpha : float
        One-sided level; the bound is the (1 − α) upper confidence bound (FDA: 95 %).

    Returns
    -------
    PBEResult
        ``passes`` when the upper bound of the linearized criterion is ≤ 0.

    Notes
    -----
    Implements the PBE appendix of FDA's *Draft Guidance on Budesonide* (inhalation
    suspension, Sep 2012), after FDA's 1999 *Statistical Information for In Vitro
    Bioequivalence Data* (module docstring). Notation of the appendix: ``l`` batches (lots),
    ``n`` canisters (units) per batch, ``m`` life stages (measurements) per canister; all
    values ln-transformed. Per product (T, R), with ``N = l·n`` units, unit means ``ȳ_u``
    and grand mean ``ȳ`` (one-way ANOVA with the unit as factor, batches pooled):

    * ``MSB = m Σ_u (ȳ_u − ȳ)² / (N − 1)``, ``MSW = Σ_u Σ_k (y_uk − ȳ_u)² / (N (m − 1))``
    * ``σ̂² = MSB / m + (m − 1) MSW / m`` (total variance), ``δ̂ = ȳ_T − ȳ_R``
    * θp = ((ln 1.11)² + εp) / σT0² = 2.0891; reference-scaled if ``σ̂_R > σT0``:
      ``η = δ² + σT² − σR² − θp σR²``; otherwise constant-scaled:
      ``η = δ² + σT² − σR² − θp σT0²``.

    The (1 − α) upper bound ``Hη = Eq + √Uq`` with ``Eq = Σ E``, ``Uq = Σ U``,
    ``U = (H − E)²``, over

    * ``Ed = δ̂²``, ``Hd = (|δ̂| + t_{1−α, N_T+N_R−2} √(MSB_T/(N_T m_T) + MSB_R/(N_R m_R)))²``
      (one-sided t quantile; df = (l_T n_T − 1) + (l_R n_R − 1))
    * ``E1 = MSB_T/m_T``, ``H1 = (N_T − 1) E1 / χ²_{α, N_T−1}``
    * ``E2 = (m_T − 1) MSW_T/m_T``, ``H2 = N_T (m_T − 1) E2 / χ²_{α, N_T(m_T−1)}``
    * ``E3 = −c MSB_R/m_R``, ``H3 = (N_R − 1) E3 / χ²_{1−α, N_R−1}``
    * ``E4 = −c (m_R − 1) MSW_R/m_R``, ``H4 = N_R (m_R − 1) E4 / χ²_{1−α, N_R(m_R−1)}``

    with ``c = 1 + θp`` (reference-scaled: the appendix's E3s, E4s) or ``c = 1``
    (constant-scaled: E3c, E4c, where ``Eq`` also includes ``−θp σT0²``);
    ``χ²_{p, df}`` is the lower p-quantile. With one value per unit (m = 1) the appendix
    drops E2, E4 and their H and U terms, so ``σ̂² = MSB`` is the sample variance of the
    N unit values. Unequal numbers of units per lot need no special handling (``N`` is
    the total).
    """
    if not 0 < alpha < 0.5:
        raise InputError(f"alpha must be in (0, 0.5), got {alpha}")
    if sigma_t0 <= 0 or epsilon_p < 0:
        raise InputError("sigma_t0 must be > 0 and epsilon_p ≥ 0")
    yt, lots_t = _product_values(test, "test")
    yr, lots_r = _product_values(reference, "reference")
    (nt, mt), (nr, mr) = yt.shape, yr.shape
    msb_t, msw_t = _mean_squares(yt)
    msb_r, msw_r = _mean_squares(yr)
    var_t = msb_t / mt + ((mt - 1) * msw_t / mt if msw_t is not None else 0.0)
    var_r = msb_r / mr + ((mr - 1) * msw_r / mr if msw_r is not None else 0.0)
    delta = float(yt.mean() - yr.mean())
    th = theta_p(sigma_t0, epsilon_p)
    reference_scaled = np.sqrt(var_r) > sigma_t0
    c = 1.0 + th if reference_scaled else 1.0

    from scipy import stats  # imported where used: scipy.stats costs ~1 s of start-up for every command

    chi2 = stats.chi2.ppf
    comp: dict[str, float] = {}

    def term(name: str, e: float, h: float) -> None:
        comp[f"E{name}"], comp[f"H{name}"], comp[f"U{name}"] = e, h, (h - e) ** 2

    se = np.sqrt(msb_t / (nt * mt) + msb_r / (nr * mr))
    term("d", delta**2, (abs(delta) + stats.t.ppf(1 - alpha, nt + nr - 2) * se) ** 2)
    e1 = msb_t / mt
    term("1", e1, (nt - 1) * e1 / chi2(alpha, nt - 1))
    if mt > 1:
        e2 = (mt - 1) * msw_t / mt
        term("2", e2, nt * (mt - 1) * e2 / chi2(alpha, nt * (mt - 1)))
    e3 = -c * msb_r / mr
    term("3", e3, (nr - 1) * e3 / chi2(1 - alpha, nr - 1))
    if mr > 1:
        e4 = -c * (mr - 1) * msw_r / mr
        term("4", e4, nr * (mr - 1) * e4 / chi2(1 - alpha, nr * (mr - 1)))

    eq = sum(v for k, v in comp.items() if k.startswith("E"))
    if not reference_scaled:
        eq -= th * sigma_t0**2
    uq = sum(v for k, v in comp.items() if k.startswith("U"))
    upper = eq + np.sqrt(uq)
    return PBEResult(
        metric=metric,
        lots_test=lots_t,
        lots_reference=lots_r,
        units_test=nt,
        units_reference=nr,
        replicates_test=mt,
        replicates_reference=mr,
        mean_ln_test=float(yt.mean()),
        mean_ln_reference=float(yr.mean()),
        msb_test=msb_t,
        msw_test=msw_t,
        msb_reference=msb_r,
        msw_reference=msw_r,
        delta=delta,
        sigma_t=float(np.sqrt(var_t)),
        sigma_r=float(np.sqrt(var_r)),
        scaling="reference" if reference_scaled else "constant",
        sigma_t0=sigma_t0,
        epsilon_p=epsilon_p,
        theta_p=th,
        criterion=float(eq),
        upper_bound=float(upper),
        confidence_level=1 - alpha,
        passes=bool(upper <= 0),
        geometric_mean_ratio=float(np.exp(delta)),
        components={k: float(v) for k, v in comp.items()},
    )


class CompareConfig(BaseModel):
    """Design requirements and settings of a product comparison.

    ``min_lots`` and ``min_units_per_lot``: FDA's product-specific guidances for in-vitro
    PBE (e.g. budesonide inhalation suspension) ask for at least three lots of each product
    and at least ten units per lot. ``min_particles_per_unit``: a unit's D10/D50/D90 are
    per-unit measurements; with the Hazen rule of :func:`semqa.stats.psd.d_values`, 50 particles
    put five particles beyond D10 and D90 and give a counting standard error of ln D50 of
    about 1.25 σ_ln / √50 ≈ 0.18 σ_ln (≈ 8 % at σ_g = 1.6), small against the lot-to-lot
    spread PBE is meant to judge. Fewer particles make the verdict inconclusive.
    """

    min_lots: int = Field(3, ge=2, description="lots per product the design needs (FDA PSGs: ≥ 3)")
    min_units_per_lot: int = Field(10, ge=1, description="units (images) per lot the design needs (FDA PSGs: ≥ 10)")
    min_particles_per_unit: int = Field(50, ge=1, description="particles a unit needs for usable D-values")
    weighting: Weighting = Field("number", description="weighting of the per-unit D-values and the distances")
    sigma_t0: float = Field(SIGMA_T0, gt=0)
    epsilon_p: float = Field(EPSILON_P, ge=0)
    alpha: float = Field(0.05, gt=0, lt=0.5, description="one-sided level of the PBE bound (95 % bound)")
    n_bootstrap: int = Field(1000, ge=0, le=MAX_BOOTSTRAP, description="bootstrap resamples of each lot's D-value CIs")
    seed: int = 0
    guidance: CountGuidance = Field(default_factory=lambda: COUNT_GUIDANCE.model_copy())


class UnitSummary(BaseModel):
    """D-values of one unit (one image), the values PBE works on."""

    index: int = Field(description="1-based position of the unit in its lot")
    n: int
    d10_um: float | None
    d50_um: float | None
    d90_um: float | None
    span: float | None
    usable: bool = Field(description="enough particles (and a non-zero span) for the per-unit D-values")


class LotSummary(BaseModel):
    """One lot: its units and the PSD of its pooled particles."""

    lot: str
    n_units: int
    n_particles: int
    units: list[UnitSummary]
    psd: PSD
    censoring: Censoring | None = Field(None, description="how far the sizing limit truncates the lot (None: no limit given)")


class ComparisonResult(BaseModel):
    """Equivalence of two products' PSDs: verdict, reason and the statistics behind them."""

    verdict: Literal["equivalent", "not_equivalent", "inconclusive"]
    reason: str
    weighting: Weighting
    pbe_d50: PBEResult | None
    pbe_span: PBEResult | None
    wasserstein_um: float | None = Field(description="earth mover's distance between pooled PSDs, µm")
    wasserstein_ln: float | None = Field(description="earth mover's distance between pooled ln(ECD/µm)")
    ks_statistic: float | None = Field(description="two-sample Kolmogorov–Smirnov D of pooled ECDs (number-based)")
    ks_pvalue: float | None
    n_particles_reference: int
    n_particles_test: int
    reference_lots: list[LotSummary]
    test_lots: list[LotSummary]
    warnings: list[str]
    config: CompareConfig
    sizing_limit: SizingLimit | None = Field(None, description="smallest size measured, for the censoring check")


def _validated_units(lots: Mapping[str, Sequence[np.ndarray]], label: str) -> dict[str, list[np.ndarray]]:
    if not lots:
        raise InputError(f"the {label} product has no lots")
    out: dict[str, list[np.ndarray]] = {}
    for lot, units in lots.items():
        if len(units) == 0:
            raise InputError(f"{label} lot {lot!r} has no units")
        out[lot] = [as_sizes(u, what=f"{label} lot {lot!r} unit {i} ECD") for i, u in enumerate(units, 1)]
    return out


def _summarize_lot(lot: str, units: list[np.ndarray], config: CompareConfig) -> LotSummary:
    summaries = []
    for i, u in enumerate(units, 1):
        if u.size:
            d10, d50, d90 = (float(v) for v in d_values(u, config.weighting))
            span = (d90 - d10) / d50
        else:
            d10 = d50 = d90 = span = None
        usable = u.size >= config.min_particles_per_unit and bool(span)
        summaries.append(UnitSummary(index=i, n=int(u.size), d10_um=d10, d50_um=d50, d90_um=d90, span=span, usable=usable))
    pooled = np.concatenate(units)
    psd = compute_psd(
        pooled, config.weighting, n_bootstrap=config.n_bootstrap, seed=config.seed, guidance=config.guidance
    )
    return LotSummary(lot=lot, n_units=len(units), n_particles=int(pooled.size), units=summaries, psd=psd)


def _design_problems(label: str, lots: list[LotSummary], config: CompareConfig) -> list[str]:
    problems = []
    if len(lots) < config.min_lots:
        problems.append(f"the {label} product has {len(lots)} lots, the design needs {config.min_lots}")
    for lot in lots:
        if lot.n_units < config.min_units_per_lot:
            problems.append(f"{label} lot {lot.lot!r} has {lot.n_units} units, the design needs {config.min_units_per_lot}")
        few = [f"{u.index} ({u.n})" for u in lot.units if not u.usable]
        if few:
            problems.append(
                f"{label} lot {lot.lot!r} unit(s) {', '.join(few)} have fewer than "
                f"{config.min_particles_per_unit} particles (or a zero span)"
            )
    return problems


def _usable_values(lots: list[LotSummary], field: str) -> dict[str, list[float]]:
    return {
        lot.lot: [getattr(u, field) for u in lot.units if u.usable] for lot in lots if any(u.usable for u in lot.units)
    }


def _pooled_distances(ref: np.ndarray, test: np.ndarray, weighting: Weighting) -> tuple[float, float, float, float]:
    """Wasserstein (µm and ln) in the given weighting; KS on numbers (scipy has no weighted KS)."""
    from scipy import stats  # imported where used (start-up time; see pbe)

    wr = quantity_weights(ref, np.ones(ref.size), weighting)
    wt = quantity_weights(test, np.ones(test.size), weighting)
    w_um = stats.wasserstein_distance(ref, test, wr, wt)
    w_ln = stats.wasserstein_distance(np.log(ref), np.log(test), wr, wt)
    ks = stats.ks_2samp(ref, test)
    return float(w_um), float(w_ln), float(ks.statistic), float(ks.pvalue)


def _censoring_problems(ref_lots: list[LotSummary], test_lots: list[LotSummary]) -> list[str]:
    """One problem naming the lots whose D-values the sizing limit censors, with the worst lot's reason."""
    hit = [
        (label, lot)
        for label, lots in (("reference", ref_lots), ("test", test_lots))
        for lot in lots
        if lot.censoring is not None and lot.censoring.censored
    ]
    if not hit:
        return []
    label, worst = max(hit, key=lambda item: item[1].censoring.fitted_share_below or item[1].censoring.fraction_near_limit or 0.0)
    names = ", ".join(f"{lab} {lot.lot!r}" for lab, lot in hit)
    n_lots = len(ref_lots) + len(test_lots)
    return [f"{worst.censoring.message} ({len(hit)} of {n_lots} lots: {names}; figures of {label} lot {worst.lot!r})"]


def compare_products(
    reference: Mapping[str, Sequence[np.ndarray]],
    test: Mapping[str, Sequence[np.ndarray]],
    config: CompareConfig | None = None,
    sizing_limit: SizingLimit | None = None,
) -> ComparisonResult:
    """Compare a test product's PSD with the reference's, lot by lot and unit by unit.

    Parameters
    ----------
    reference, test : mapping of lot name → sequence of per-unit ECD arrays (µm)
        A unit is one image (one field of view of one sample preparation); units are
        nested in lots. A unit may have no particles (it is then unusable).
    config : CompareConfig, optional
        Design requirements and statistical settings.
    sizing_limit : SizingLimit, optional
        The smallest size the analysis measured (:func:`semqa.stats.censoring.sizing_limit`);
        each lot's pooled PSD is checked against it (:func:`semqa.stats.censoring.assess_censoring`).

    Returns
    -------
    ComparisonResult
        ``inconclusive`` when the design is short of lots, units or particles per unit, or
        when the sizing limit censors a D-value of any lot (D10, D50 and D90 all enter the
        PBE on D50 and span; the reason says which); otherwise ``equivalent`` when PBE (:func:`pbe`) passes on both
        the per-unit D50 and the per-unit span, else ``not_equivalent`` naming the metric(s)
        that failed. Wasserstein distance (FDA uses it for complex PSDs), KS and per-lot
        D-values (with counts and ISO 13322-1 warnings) are reported beside it.

    Raises
    ------
    InputError
        Empty products or lots, non-positive or non-finite sizes.
    """
    config = config or CompareConfig()
    ref_units = _validated_units(reference, "reference")
    test_units = _validated_units(test, "test")
    ref_lots = [_summarize_lot(lot, units, config) for lot, units in ref_units.items()]
    test_lots = [_summarize_lot(lot, units, config) for lot, units in test_units.items()]
    if sizing_limit is not None:
        for lots, units_of in ((ref_lots, ref_units), (test_lots, test_units)):
            for lot in lots:
                lot.censoring = assess_censoring(np.concatenate(units_of[lot.lot]), sizing_limit)

    warnings: list[str] = []
    for label, lots in (("reference", ref_lots), ("test", test_lots)):
        for lot in lots:
            warnings += [f"{label} lot {lot.lot!r}: {w}" for w in lot.psd.warnings]

    ref_all = np.concatenate([u for us in ref_units.values() for u in us])
    test_all = np.concatenate([u for us in test_units.values() for u in us])
    if ref_all.size and test_all.size:
        w_um, w_ln, ks_d, ks_p = _pooled_distances(ref_all, test_all, config.weighting)
    else:
        w_um = w_ln = ks_d = ks_p = None
        warnings.append("a product has no particles at all: no distances between the pooled PSDs")

    problems = _design_problems("reference", ref_lots, config) + _design_problems("test", test_lots, config)
    problems += _censoring_problems(ref_lots, test_lots)

    def run_pbe(field: str, metric: str) -> PBEResult | None:
        t, r = _usable_values(test_lots, field), _usable_values(ref_lots, field)
        if sum(map(len, t.values())) < 2 or sum(map(len, r.values())) < 2:
            return None
        return pbe(t, r, metric=metric, sigma_t0=config.sigma_t0, epsilon_p=config.epsilon_p, alpha=config.alpha)

    pbe_d50 = run_pbe("d50_um", f"{config.weighting}-weighted D50 per unit")
    pbe_span = run_pbe("span", f"{config.weighting}-weighted span per unit")
    if problems and (pbe_d50 or pbe_span):
        warnings.append("PBE computed on the usable units only, for information: the design is incomplete")

    if problems:
        verdict, reason = "inconclusive", "Inconclusive: " + "; ".join(problems) + "."
    else:
        level = f"{100 * (1 - config.alpha):g}%"
        failed = [p for p in (pbe_d50, pbe_span) if not p.passes]
        bounds = ", ".join(f"{name} {p.upper_bound:.4g}" for name, p in (("D50", pbe_d50), ("span", pbe_span)))
        if failed:
            names = " and ".join("D50" if p is pbe_d50 else "span" for p in failed)
            verdict = "not_equivalent"
            reason = f"Not equivalent: PBE fails for {names} ({level} upper bounds: {bounds}; equivalence needs ≤ 0)."
        else:
            verdict = "equivalent"
            reason = f"Equivalent: PBE passes for D50 and span ({level} upper bounds: {bounds}, all ≤ 0)."
    return ComparisonResult(
        verdict=verdict,
        reason=reason,
        weighting=config.weighting,
        pbe_d50=pbe_d50,
        pbe_span=pbe_span,
        wasserstein_um=w_um,
        wasserstein_ln=w_ln,
        ks_statistic=ks_d,
        ks_pvalue=ks_p,
        n_particles_reference=int(ref_all.size),
        n_particles_test=int(test_all.size),
        reference_lots=ref_lots,
        test_lots=test_lots,
        warnings=warnings,
        config=config,
        sizing_limit=sizing_limit,
    )
