"""The Gauss-Newton / Levenberg-Marquardt solver of every landmark fitter and alignment.

A fitter supplies ``linearize(state)`` (the normal equations of its residual blocks and
priors at ``state``), ``update(state, step)`` and, for Levenberg-Marquardt, ``cost(state)``.
Normal equations come dense (`NormalEquations`) or block-arrow shaped
(`BlockArrowNormalEquations`: parameters shared by several views plus per-view blocks,
solved by a Schur complement, as in bundle adjustment; Triggs et al., "Bundle Adjustment -
A Modern Synthesis", 1999). `descend` is the outer loop of alignments that re-pair their
residuals at every state (the ICP of `facefit.metrics.scan`).

Convention: residuals are ``observed - predicted`` and Jacobians are of the prediction, so the
step solves ``(J^T J + P) d = J^T r + P (mean - x)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

from facefit.fit.core.priors import GaussianPrior

S = TypeVar("S")
RIDGE = 1e-9  # added to the normal matrix's diagonal: keeps it invertible, changes nothing else


class Solvable(Protocol):
    def solve(self, damping: float = 0.0, ridge: float = RIDGE) -> np.ndarray: ...


@dataclass(eq=False)
class NormalEquations:
    """Dense Gauss-Newton normal equations ``lhs d = rhs``.

    Attributes:
        lhs: (P, P) ``J^T W J`` plus prior precisions.
        rhs: (P,) ``J^T W r`` plus prior gradients.
    """

    lhs: np.ndarray
    rhs: np.ndarray

    @classmethod
    def from_rows(cls, jac: np.ndarray, res: np.ndarray, weight: float = 1.0
                  ) -> NormalEquations:
        """From whitened rows: Jacobian (R, P) and residual (R,), times ``weight`` (e.g.
        1 / sigma^2 of the observations)."""
        return cls(weight * (jac.T @ jac), weight * (jac.T @ res))

    def add_prior(self, prior: GaussianPrior, x: np.ndarray, index: slice | np.ndarray
                  ) -> NormalEquations:
        """Add a Gaussian prior on the parameters ``index`` whose current value is ``x``."""
        idx = np.arange(len(self.rhs))[index]
        self.lhs[idx, idx] += prior.precision
        self.rhs[idx] += prior.gradient(x)
        return self

    def solve(self, damping: float = 0.0, ridge: float = RIDGE) -> np.ndarray:
        """Step ``(lhs + damping diag(lhs) + ridge I)^-1 rhs`` (Marquardt's scaled damping)."""
        a = self.lhs + np.diag(damping * np.diag(self.lhs) + ridge)
        return np.linalg.solve(a, self.rhs)


@dataclass(eq=False)
class BlockArrowNormalEquations:
    """Normal equations of shared parameters (S) and independent per-view blocks (B_i):

    ``[[A, C_1, ..., C_n], [C_1^T, B_1, 0], ..., [C_n^T, 0, B_n]] d = [a, b_1, ..., b_n]``.

    Attributes:
        shared_lhs: (S, S) A; shared_rhs: (S,) a.
        blocks: per view ``(B_i (B, B), b_i (B,), C_i (S, B))``.
        fix_shared: keep the shared parameters fixed (their step is 0).
    """

    shared_lhs: np.ndarray
    shared_rhs: np.ndarray
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    fix_shared: bool = False

    def solve(self, damping: float = 0.0, ridge: float = RIDGE) -> np.ndarray:
        """Step ``[d_shared, d_1, ..., d_n]`` by the Schur complement on the shared block."""
        ns = len(self.shared_rhs)
        blocks = [(b + np.diag(damping * np.diag(b) + ridge), rb, c) for b, rb, c in self.blocks]
        if self.fix_shared:
            ds = np.zeros(ns)
        else:
            red_lhs = self.shared_lhs + np.diag(damping * np.diag(self.shared_lhs))
            red_rhs = self.shared_rhs.copy()
            for b, rb, c in blocks:
                binv_ct = np.linalg.solve(b, np.column_stack([c.T, rb]))
                red_lhs -= c @ binv_ct[:, :ns]
                red_rhs -= c @ binv_ct[:, ns]
            ds = np.linalg.solve(red_lhs + ridge * np.eye(ns), red_rhs)
        steps = [np.linalg.solve(b, rb - c.T @ ds) for b, rb, c in blocks]
        return np.concatenate([ds, *steps])


def gauss_newton(linearize: Callable[[S], Solvable], update: Callable[[S, np.ndarray], S],
                 state: S, iterations: int) -> S:
    """``iterations`` undamped Gauss-Newton steps from ``state``."""
    for _ in range(iterations):
        state = update(state, linearize(state).solve())
    return state


@dataclass(frozen=True)
class LMResult:
    """Outcome of `levenberg_marquardt`: the final state, the iterations run and the cost."""

    state: object
    iterations: int
    cost: float


def levenberg_marquardt(
    linearize: Callable[[S], tuple[Solvable, float]],
    cost: Callable[[S], float],
    update: Callable[[S, np.ndarray], S],
    state: S,
    max_iterations: int,
    damping: float = 1e-3,
    max_tries: int = 8,
    rel_tol: float = 1e-10,
    step_tol: float = 1e-9,
) -> LMResult:
    """Levenberg-Marquardt (Marquardt 1963) with multiplicative damping updates.

    Each iteration tries up to ``max_tries`` damped steps (damping x10 after each rejected
    one) and accepts the first that does not raise the cost (damping /10, floor 1e-9). Stops
    when no step is accepted, after an accepted step that lowered the cost by at most
    ``rel_tol`` relative or had all components below ``step_tol``, or after
    ``max_iterations``. ``linearize(state)`` returns (normal equations, cost at state).
    """
    eq, current = linearize(state)
    done = 0
    for _ in range(max_iterations):
        done += 1
        accepted = None
        for _ in range(max_tries):
            d = eq.solve(damping, RIDGE * damping)
            cand = update(state, d)
            new_cost = cost(cand)
            if new_cost <= current:
                accepted = cand
                break
            damping *= 10.0
        if accepted is None:
            break
        small = current - new_cost <= rel_tol * max(current, 1e-12) or np.abs(d).max() < step_tol
        state = accepted
        damping = max(damping / 10.0, 1e-9)
        eq, current = linearize(state)
        if small:
            break
    return LMResult(state, done, current)


def descend(candidates: Callable[[S], tuple[float, Sequence[tuple[float, S]]]], state: S,
            max_iterations: int, rel_tol: float = 0.0) -> LMResult:
    """Monotone descent over candidate states: the loop of an alignment whose residuals are
    re-paired at every state (ICP: `facefit.metrics.scan`), where each iteration weighs several
    proposals, e.g. a Gauss-Newton step against a closed-form Umeyama step.

    ``candidates(state)`` returns the cost at ``state`` and (cost, candidate) pairs, costed
    the same way. Each iteration moves to the lowest-cost candidate (the first of equals) if
    it is strictly below the current cost. Stops when none is (or there are no candidates),
    after a move that lowered the cost by less than ``rel_tol`` relative, or after
    ``max_iterations``; the result's cost is the last one evaluated (nan if none).
    """
    done, current = 0, float("nan")
    for _ in range(max_iterations):
        done += 1
        current, proposals = candidates(state)
        best = min(proposals, key=lambda p: p[0], default=None)
        if best is None or not best[0] < current:
            break
        previous, (current, state) = current, best
        if previous - current < rel_tol * previous:
            break
    return LMResult(state, done, current)


def solve_linear_map(jac: np.ndarray, target: np.ndarray, prior: GaussianPrior) -> np.ndarray:
    """MAP estimate of ``x`` for a linear model ``target ~ jac @ x`` (unit noise, residual rows
    already whitened) with a Gaussian prior: one exact Gauss-Newton step from the prior mean."""
    mean = np.asarray(prior.mean, np.float64)
    eq = NormalEquations.from_rows(jac, np.ravel(target) - jac @ mean)
    eq.add_prior(prior, mean, slice(None))
    return mean + eq.solve(ridge=0.0)


def stack_rows(blocks: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate residual blocks' (Jacobian, residual) pairs."""
    return (np.vstack([j for j, _ in blocks]), np.concatenate([r for _, r in blocks]))


def box_quadratic(h: np.ndarray, c: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                  max_iter: int | None = None) -> np.ndarray:
    """The minimiser of ``x^T H x / 2 - c^T x`` over ``lower <= x <= upper`` for a
    positive-definite (P, P) ``h`` (bounds may be infinite): the primal active-set method
    (Nocedal & Wright, "Numerical Optimization", 2006, section 16.5) on the box, as BVLS
    (Stark & Parker 1995) does on the rows, but on the (P, P) normal equations.

    The working set to start from is guessed by a few primal-dual active-set steps
    (Hintermüller, Ito & Kunisch, SIAM J. Optim. 2002: every variable whose multiplier-
    corrected value leaves the box goes to that bound, all at once; `_pdas_start`), which on
    the ARKit and blendshape problems usually lands on the final set, so the loop below only
    confirms it. Each step of that loop solves for the free variables with the fixed ones at
    their bounds, stops at the first bound it crosses (and fixes that variable), or, when
    nothing blocks, frees the fixed variable whose multiplier has the wrong sign. Ends at a
    KKT point, the global minimum of this convex problem. Falls back to
    ``scipy.optimize.lsq_linear`` (BVLS on the Cholesky factor) if the working set has not
    settled after ``max_iter`` (default ``3 P + 10``) steps."""
    h = np.asarray(h, np.float64)
    c = np.asarray(c, np.float64)
    n = len(c)
    lo = np.broadcast_to(np.asarray(lower, np.float64), (n,))
    hi = np.broadcast_to(np.asarray(upper, np.float64), (n,))
    x, fixed = _pdas_start(h, c, lo, hi)
    tol = 1e-10 * (1.0 + float(np.abs(c).max(initial=0.0)) + float(np.abs(h).max()))
    for _ in range(3 * n + 10 if max_iter is None else max_iter):
        free = ~fixed
        target = x.copy()
        if free.any():
            target[free] = _solve_free(h, c, x, fixed)
        step = target - x
        crosses = free & ((target < lo) | (target > hi))
        if crosses.any():  # move to the first bound crossed and fix that variable
            bound = np.where(target < lo, lo, hi)
            frac = np.full(n, np.inf)
            frac[crosses] = (bound[crosses] - x[crosses]) / step[crosses]
            j = int(np.argmin(frac))
            x = np.clip(x + frac[j] * step, lo, hi)
            x[j] = bound[j]
            fixed[j] = True
            continue
        x = target
        g = h @ x - c  # gradient; at a lower bound it must be >= 0, at an upper one <= 0
        wrong = np.where(fixed & (x <= lo), -g, 0.0) + np.where(fixed & (x >= hi), g, 0.0)
        j = int(np.argmax(wrong))
        if wrong[j] <= tol:
            return x
        fixed[j] = False
    from scipy.optimize import lsq_linear

    r = np.linalg.cholesky(h).T
    return lsq_linear(r, np.linalg.solve(r.T, c), bounds=(lo, hi), method="bvls").x


def _solve_free(h: np.ndarray, c: np.ndarray, x: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """The minimiser of ``x^T H x / 2 - c^T x`` over the free variables (``~fixed``) with the
    fixed ones held at their values in ``x``."""
    free = ~fixed
    return np.linalg.solve(h[np.ix_(free, free)], c[free] - h[np.ix_(free, fixed)] @ x[fixed])


def _pdas_start(h: np.ndarray, c: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                steps: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(feasible x, fixed mask) to start `box_quadratic` from: primal-dual active-set steps.
    Each step puts at a bound every variable whose value minus its scaled gradient
    ``x - g / diag(H)`` lies beyond that bound, solves for the others, and stops when the
    sets repeat; the result is clipped into the box (any feasible start is valid)."""
    n = len(c)
    scale = 1.0 / np.maximum(np.diag(h), 1e-300)
    x = np.linalg.solve(h, c)
    g = np.zeros(n)
    at_lo = at_hi = np.zeros(n, bool)
    for _ in range(steps):
        y = x - g * scale
        new_lo, new_hi = y < lo, y > hi
        if (new_lo == at_lo).all() and (new_hi == at_hi).all():
            break
        at_lo, at_hi = new_lo, new_hi
        fixed = at_lo | at_hi
        x = np.where(at_lo, lo, np.where(at_hi, hi, x))
        free = ~fixed
        if free.any():
            x[free] = _solve_free(h, c, x, fixed)
        g = h @ x - c
        g[free] = 0.0
    x = np.clip(x, lo, hi)
    return x, (x <= lo) | (x >= hi)


def box_least_squares(a: np.ndarray, b: np.ndarray, lower: np.ndarray, upper: np.ndarray
                      ) -> np.ndarray:
    """``argmin |A x - b|^2`` over ``lower <= x <= upper`` for (M, P) ``a`` of full column
    rank (`box_quadratic` on the normal equations)."""
    a = np.asarray(a, np.float64)
    return box_quadratic(a.T @ a, a.T @ np.asarray(b, np.float64), lower, upper)
