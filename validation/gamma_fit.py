"""Many small Gamma GLMs at once: ``μ = a·g + n`` with ``a, n ≥ 0``, identity link, one per row of ``g``.

:mod:`validation.blur` profiles the likelihood of a power spectrum over a grid of blur widths
(and scene correlation lengths): each grid point is a Gamma GLM in two non-negative
coefficients (McCullagh & Nelder, *Generalized Linear Models*, 2nd ed., 1989, ch. 8). Fitted
one at a time by Fisher scoring they cost ~20 iterations each (scoring converges linearly);
here all rows are fitted together, vectorised, by Newton's method on the exact Hessian of the
deviance, which converges quadratically near the optimum. The Gamma deviance is not convex in
``(a, n)`` (its second derivative in ``μ`` is ``2ν(2y − μ)/μ³``), so every step is safeguarded:

* where the Hessian is not positive definite, or the Newton point leaves ``a, n ≥ 0``, the step
  falls back to the Fisher-scoring point (the weighted non-negative least squares of the
  iteratively reweighted fit, always a descent direction, with the constraints exact: the
  Karush–Kuhn–Tucker cases of two unknowns, Lawson & Hanson, *Solving Least Squares Problems*,
  1974, ch. 23);
* the step is halved until the deviance does not increase (a backtracking line search; both
  end points are feasible, so every point between is);
* on the face ``n = 0`` (no noise floor left), Newton's step is taken on ``a`` alone;
* where a Newton step gains nothing, the Fisher step is tried before the row counts as converged.

Being non-convex, the deviance can have a second minimum far from the data (``μ`` many times
``y`` on the few bins a far too blurred column covers); the fit finds the one its start (least
squares on the log scale) leads to, as the one-at-a-time scoring it replaced did. A row stops
when a step gains less than :data:`DEVIANCE_TOLERANCE`; the deviance thresholds the
profile is compared against are of order ``z² ≈ 10``.
"""

from __future__ import annotations

import numpy as np

from semqa.particles.primitives import nonnegative_line_fit

#: Deviance gain below which a row's fit counts as converged (absolute; bounds are set by
#: differences of order z² ≈ 10, so this is nine orders below what any decision resolves).
DEVIANCE_TOLERANCE = 1e-9

#: Iterations at most; rows converge in ~5–15 Newton steps, ill-conditioned ones (a scene
#: column left with a few bins of weight at a large blur) in more.
MAX_ITERATIONS = 100

#: Halvings of a step at most before the row keeps its current point.
MAX_HALVINGS = 40

_TINY = 1e-300


def deviance(mu: np.ndarray, y: np.ndarray, nu: np.ndarray) -> np.ndarray:
    """Gamma deviance ``2 Σ ν[(y − μ)/μ − ln(y/μ)]`` of each row of ``mu`` (last axis summed)."""
    return 2.0 * np.sum(nu * ((y - mu) / mu - np.log(np.maximum(y, _TINY) / mu)), axis=-1)


def _newton(g, y, nu, a, n, mu):
    """Each row's Newton point on the exact Hessian; where it may be taken as a 2-D step (Hessian positive
    definite, point feasible) and where as a step on ``a`` alone (the row on the face ``n = 0``)."""
    d1 = 2.0 * nu * (mu - y) / mu**2  # ∂D/∂μ
    d2 = 2.0 * nu * (2.0 * y - mu) / mu**3  # ∂²D/∂μ²
    ga, gn = np.sum(d1 * g, -1), np.sum(d1, -1)
    haa, han, hnn = np.sum(d2 * g * g, -1), np.sum(d2 * g, -1), np.sum(d2, -1)
    det = haa * hnn - han**2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        na = a - (hnn * ga - han * gn) / det
        nn = n - (haa * gn - han * ga) / det
    with np.errstate(divide="ignore", invalid="ignore"):
        a_alone = a - ga / haa  # Newton on a with n held at 0
    interior = (haa > 0) & (det > 0) & (na >= 0) & (nn >= 0)
    on_n0 = (n == 0) & (haa > 0) & (a_alone >= 0) & ~interior
    return np.where(on_n0, a_alone, na), np.where(on_n0, 0.0, nn), interior, on_n0


def _line_search(g, y, nu, a, n, dev, pa, pn):
    """Backtracking from ``(a, n)`` towards ``(pa, pn)``: the first halving whose deviance is not higher."""
    step = np.ones_like(dev)
    pending = np.ones(dev.shape, dtype=bool)
    new_a, new_n, new_dev = a.copy(), n.copy(), dev.copy()
    for _ in range(MAX_HALVINGS):
        ta, tn = a + step * (pa - a), n + step * (pn - n)
        td = deviance(np.maximum(ta[:, None] * g + tn[:, None], _TINY), y, nu)
        accept = pending & (td <= dev)
        new_a, new_n, new_dev = np.where(accept, ta, new_a), np.where(accept, tn, new_n), np.where(accept, td, new_dev)
        pending &= ~accept
        if not pending.any():
            break
        step = np.where(pending, 0.5 * step, step)
    return new_a, new_n, new_dev


def fit_rows(g: np.ndarray, y: np.ndarray, nu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood fit of ``y ~ Gamma(shape ν, mean a·g + n)``, ``a, n ≥ 0``, for every row of ``g``.

    Parameters
    ----------
    g : numpy.ndarray
        ``(..., k)`` non-negative model columns, one model per leading index.
    y : numpy.ndarray
        ``(k,)`` positive observations (bin means of a periodogram).
    nu : numpy.ndarray
        ``(k,)`` Gamma shapes (independent ordinates per bin).

    Returns
    -------
    deviance, pearson : numpy.ndarray
        ``g.shape[:-1]`` arrays: the minimised deviance and the Pearson χ² ``Σ ν((y − μ)/μ)²`` at it.
    """
    shape = g.shape[:-1]
    g = g.reshape(-1, g.shape[-1])
    peak = g.max(axis=1, keepdims=True)
    g = g / np.where(peak > 0, peak, 1.0)  # a's scale is free: keep the normal equations in range
    y_floor = np.maximum(y, 1e-12 * y.max())
    a, n = nonnegative_line_fit(g, y, nu / y_floor**2)  # start: least squares on the log scale
    mu = np.maximum(a[:, None] * g + n[:, None], _TINY)
    dev = deviance(mu, y, nu)
    rows = np.arange(dev.size)
    a_all, n_all, dev_all = a.copy(), n.copy(), dev.copy()
    gr = g
    for _ in range(MAX_ITERATIONS):
        fa, fn = nonnegative_line_fit(gr, y, nu / mu**2)  # Fisher scoring's point: a descent direction
        na, nn, interior, on_n0 = _newton(gr, y, nu, a, n, mu)
        # Newton where Fisher's point lies on the same face as the row: inside, or on n = 0 from n = 0
        safe = (interior & (fa > 0) & (fn > 0)) | (on_n0 & (fn == 0) & (fa > 0))
        new_a, new_n, new_dev = _line_search(gr, y, nu, a, n, dev, np.where(safe, na, fa), np.where(safe, nn, fn))
        retry = safe & (dev - new_dev <= DEVIANCE_TOLERANCE)  # Newton gained nothing: Fisher's step decides
        if retry.any():
            ra, rn, rd = _line_search(gr[retry], y, nu, a[retry], n[retry], dev[retry], fa[retry], fn[retry])
            new_a[retry], new_n[retry], new_dev[retry] = ra, rn, rd
        gain = dev - new_dev
        a_all[rows], n_all[rows], dev_all[rows] = new_a, new_n, new_dev
        going = gain > DEVIANCE_TOLERANCE
        if not going.any():
            break
        rows, gr = rows[going], gr[going]
        a, n, dev = new_a[going], new_n[going], new_dev[going]
        mu = np.maximum(a[:, None] * gr + n[:, None], _TINY)
    mu = np.maximum(a_all[:, None] * g + n_all[:, None], _TINY)
    pearson = np.sum(nu * ((y - mu) / mu) ** 2, axis=-1)
    return dev_all.reshape(shape), pearson.reshape(shape)
