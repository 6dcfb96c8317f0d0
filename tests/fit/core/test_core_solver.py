"""Normal equations, the block-arrow Schur solve and the GN / LM loops."""

from __future__ import annotations

import numpy as np
import pytest

from facefit.fit.core.priors import GaussianPrior
from facefit.fit.core.solver import (
    BlockArrowNormalEquations,
    NormalEquations,
    descend,
    gauss_newton,
    levenberg_marquardt,
    solve_linear_map,
)


def test_normal_equations_with_prior_equal_stacked_least_squares() -> None:
    rng = np.random.default_rng(0)
    jac, res = rng.normal(size=(30, 5)), rng.normal(size=30)
    prior = GaussianPrior(rng.normal(size=3), np.array([0.5, 1.0, 2.0]))
    x = rng.normal(size=5)
    step = NormalEquations.from_rows(jac, res, weight=4.0).add_prior(prior, x[2:],
                                                                     slice(2, None)).solve()
    # the same problem written as one stacked linear least-squares system
    a = np.vstack([2.0 * jac, np.hstack([np.zeros((3, 2)), np.diag(1 / prior.sigma)])])
    b = np.r_[2.0 * res, (prior.mean - x[2:]) / prior.sigma]
    want, *_ = np.linalg.lstsq(a, b, rcond=None)
    np.testing.assert_allclose(step, want, atol=1e-7)


@pytest.mark.parametrize("fix_shared", [False, True])
def test_block_arrow_schur_solve_equals_dense_solve(fix_shared: bool) -> None:
    rng = np.random.default_rng(1)
    ns, nb, nv = 4, 3, 3
    jac = rng.normal(size=(40, ns + nv * nb))
    for i in range(nv):  # each view's rows touch only the shared and its own columns
        rows = slice(i * 40 // nv, (i + 1) * 40 // nv)
        mask = np.zeros(ns + nv * nb, bool)
        mask[:ns] = True
        mask[ns + i * nb: ns + (i + 1) * nb] = True
        jac[rows, ~mask] = 0.0
    res = rng.normal(size=40)
    dense = NormalEquations.from_rows(jac, res).add_prior(GaussianPrior.standard(ns),
                                                          np.zeros(ns), slice(0, ns))
    eq = BlockArrowNormalEquations(dense.lhs[:ns, :ns], dense.rhs[:ns], fix_shared=fix_shared)
    for i in range(nv):
        cols = slice(ns + i * nb, ns + (i + 1) * nb)
        eq.blocks.append((dense.lhs[cols, cols], dense.rhs[cols], dense.lhs[:ns, cols]))
    if fix_shared:
        want = np.r_[np.zeros(ns), np.linalg.solve(dense.lhs[ns:, ns:], dense.rhs[ns:])]
    else:
        want = np.linalg.solve(dense.lhs, dense.rhs)
    np.testing.assert_allclose(eq.solve(), want, atol=1e-8)


def test_gauss_newton_fits_an_exponential() -> None:
    t = np.linspace(0, 2, 30)
    y = 3.0 * np.exp(-1.3 * t)

    def linearize(p: np.ndarray) -> NormalEquations:
        f = p[0] * np.exp(p[1] * t)
        jac = np.column_stack([np.exp(p[1] * t), p[0] * t * np.exp(p[1] * t)])
        return NormalEquations.from_rows(jac, y - f)

    got = gauss_newton(linearize, lambda p, d: p + d, np.array([2.0, -1.0]), 20)
    np.testing.assert_allclose(got, [3.0, -1.3], atol=1e-10)


def test_levenberg_marquardt_minimises_rosenbrock() -> None:
    def rows(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = np.array([1.0 - p[0], 10.0 * (p[1] - p[0] ** 2)])
        jac = -np.array([[-1.0, 0.0], [-20.0 * p[0], 10.0]])  # Jacobian of the prediction
        return jac, r

    def linearize(p: np.ndarray) -> tuple[NormalEquations, float]:
        jac, r = rows(p)
        return NormalEquations.from_rows(jac, r), float(r @ r)

    out = levenberg_marquardt(linearize, lambda p: float(rows(p)[1] @ rows(p)[1]),
                              lambda p, d: p + d, np.array([-1.2, 1.0]), 200)
    np.testing.assert_allclose(out.state, [1.0, 1.0], atol=1e-6)
    assert out.cost < 1e-12 and out.iterations < 200


def test_solve_linear_map_is_the_ridge_solution() -> None:
    rng = np.random.default_rng(2)
    a, y = rng.normal(size=(12, 4)), rng.normal(size=12)
    prior = GaussianPrior(rng.normal(size=4), np.full(4, 0.7))
    lam = 1 / 0.49
    want = np.linalg.solve(a.T @ a + lam * np.eye(4), a.T @ y + lam * prior.mean)
    np.testing.assert_allclose(solve_linear_map(a, y, prior), want, atol=1e-10)


def test_descend_takes_the_best_lower_candidate_and_stops() -> None:
    # minimise (x - 3)^2 over the integers: proposals x - 1, x + 1 and x + 2
    seen: list[float] = []

    def candidates(x: float) -> tuple[float, list[tuple[float, float]]]:
        seen.append(x)
        return (x - 3.0) ** 2, [((y - 3.0) ** 2, y) for y in (x - 1.0, x + 1.0, x + 2.0)]

    out = descend(candidates, -2.0, 50)
    # best moves -2 -> 0 -> 2 -> 3 (x + 2 while it is better), then no candidate is lower
    assert seen == [-2.0, 0.0, 2.0, 3.0] and out.state == 3.0 and out.iterations == 4
    assert out.cost == 0.0
    assert descend(candidates, -2.0, 2).state == 2.0  # the iteration cap
    # relative tolerance: the move 0 -> 2 lowers 9 to 1 (89 %): stop after it at rel_tol 0.9
    assert descend(candidates, 0.0, 50, rel_tol=0.9).state == 2.0
    # no candidates: stays, one iteration counted
    assert descend(lambda x: (1.0, []), 5.0, 10).iterations == 1
    assert descend(lambda x: (1.0, []), 5.0, 0).iterations == 0


@pytest.mark.parametrize("seed", range(6))
def test_box_least_squares_matches_bvls(seed: int) -> None:
    """The active-set box solver reaches scipy's BVLS minimum (mixed infinite and finite
    bounds, many weights at 0 and some at 1, as the ARKit and blendshape solves have)."""
    from scipy.optimize import lsq_linear

    from facefit.fit.core.solver import box_least_squares

    rng = np.random.default_rng(seed)
    ks, k = 12, 30
    a = np.vstack([rng.normal(size=(60, ks + k)), np.diag(np.r_[np.ones(ks), np.full(k, 0.2)])])
    b = rng.normal(size=len(a)) * 3
    lo = np.r_[np.full(ks, -np.inf), np.zeros(k)]
    hi = np.r_[np.full(ks, np.inf), np.ones(k)]
    want = lsq_linear(a, b, bounds=(lo, hi), method="bvls").x
    got = box_least_squares(a, b, lo, hi)
    assert ((got >= lo) & (got <= hi)).all()
    assert ((got[ks:] == 0) | (got[ks:] == 1)).sum() >= 3  # the bounds are active
    np.testing.assert_allclose(got, want, atol=1e-8)
    # an unconstrained problem is plain least squares
    np.testing.assert_allclose(box_least_squares(a, b, -np.inf, np.inf),
                               np.linalg.lstsq(a, b, rcond=None)[0], atol=1e-10)
