"""Gaussian and box priors: log-probabilities against scipy.stats."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from facefit.fit.core.priors import BoxPrior, GaussianPrior


def test_gaussian_log_prob_cost_and_gradient() -> None:
    prior = GaussianPrior(np.array([0.0, 1.0, -2.0]), np.array([1.0, 0.5, 3.0]))
    x = np.array([0.4, 0.2, 1.0])
    want = stats.norm.logpdf(x, prior.mean, prior.sigma).sum()
    assert prior.log_prob(x) == pytest.approx(want)
    eps = 1e-6
    num = [(prior.cost(x + eps * e) - prior.cost(x - eps * e)) / (2 * eps) for e in np.eye(3)]
    np.testing.assert_allclose(prior.gradient(x), -0.5 * np.array(num), rtol=1e-6)
    np.testing.assert_allclose(prior.precision, [1.0, 4.0, 1 / 9])
    draws = prior.sample(np.random.default_rng(0), 20000)
    np.testing.assert_allclose(draws.std(0), prior.sigma, rtol=0.03)


def test_box_prior() -> None:
    box = BoxPrior(np.zeros(2), np.array([1.0, 4.0]))
    assert box.log_prob([0.5, 3.0]) == pytest.approx(stats.uniform.logpdf(0.5, 0, 1)
                                                     + stats.uniform.logpdf(3.0, 0, 4))
    assert box.log_prob([1.5, 3.0]) == -np.inf
    np.testing.assert_allclose(box.project([1.5, -1.0]), [1.0, 0.0])
