"""Priors on fitted parameters: diagonal Gaussian and box (uniform) priors.

Both give the terms a Gauss-Newton step needs (`GaussianPrior.precision`,
`GaussianPrior.gradient`) and their log-probabilities (for MAP costs and posterior sampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True, eq=False)
class GaussianPrior:
    """Independent normal priors ``x_i ~ N(mean_i, sigma_i^2)``.

    Attributes:
        mean: (P,) prior means.
        sigma: (P,) prior standard deviations (> 0).
    """

    mean: np.ndarray
    sigma: np.ndarray

    @classmethod
    def standard(cls, n: int) -> GaussianPrior:
        """N(0, 1) on ``n`` parameters (the morphable models' coefficient prior)."""
        return cls(np.zeros(n), np.ones(n))

    @classmethod
    def isotropic(cls, mean: np.ndarray, sigma: float | np.ndarray) -> GaussianPrior:
        """Prior with the given means and one (or per-parameter) standard deviation."""
        mean = np.asarray(mean, np.float64).ravel()
        return cls(mean, np.broadcast_to(np.asarray(sigma, np.float64), mean.shape).copy())

    @property
    def size(self) -> int:
        return int(np.size(self.mean))

    @property
    def precision(self) -> np.ndarray:
        """(P,) 1 / sigma^2: the prior's diagonal of the Gauss-Newton normal matrix."""
        return 1.0 / np.asarray(self.sigma, np.float64) ** 2

    def residual(self, x: np.ndarray) -> np.ndarray:
        """(P,) whitened residual ``(x - mean) / sigma``; its squared norm is the cost."""
        return (np.asarray(x, np.float64) - self.mean) / self.sigma

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """(P,) ``-(x - mean) / sigma^2``: the prior's part of the normal equations' right
        side (half the negative gradient of the cost)."""
        return -(np.asarray(x, np.float64) - self.mean) * self.precision

    def cost(self, x: np.ndarray) -> float:
        """Squared whitened residual, ``-2 log p(x)`` up to a constant."""
        r = self.residual(x)
        return float(r @ r)

    def log_prob(self, x: np.ndarray) -> float:
        """Log density at ``x`` (P,)."""
        return float(-0.5 * self.cost(x) - np.log(self.sigma).sum() - 0.5 * self.size * _LOG_2PI)

    def sample(self, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
        """(P,) or (n, P) draws."""
        shape = (self.size,) if n is None else (n, self.size)
        return self.mean + self.sigma * rng.standard_normal(shape)


@dataclass(frozen=True, eq=False)
class BoxPrior:
    """Uniform prior on the box ``lower <= x <= upper`` (bounded parameters, e.g. blendshape
    weights in [0, 1]).

    Attributes:
        lower, upper: (P,) bounds (lower < upper; infinite bounds make the box improper).
    """

    lower: np.ndarray
    upper: np.ndarray

    def contains(self, x: np.ndarray) -> bool:
        x = np.asarray(x, np.float64)
        return bool(np.all(x >= self.lower) and np.all(x <= self.upper))

    def project(self, x: np.ndarray) -> np.ndarray:
        """(P,) the nearest point of the box (clip)."""
        return np.clip(np.asarray(x, np.float64), self.lower, self.upper)

    def log_prob(self, x: np.ndarray) -> float:
        """``-sum(log(upper - lower))`` inside the box (0 for unbounded sides), -inf outside."""
        if not self.contains(x):
            return -np.inf
        width = np.asarray(self.upper, np.float64) - np.asarray(self.lower, np.float64)
        finite = np.isfinite(width)
        return float(-np.log(width[finite]).sum())
