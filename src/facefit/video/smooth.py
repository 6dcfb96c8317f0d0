"""Temporal smoothing of pose and expression with the One Euro filter (Casiez, Roussel and
Vogel, "1€ Filter: A Simple Speed-based Low-pass Filter for Noisy Input in Interactive
Systems", CHI 2012): an exponential low-pass filter whose cut-off frequency rises with the
signal's speed, so slow motion is smoothed strongly (less jitter) and fast motion lags
little."""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """A One Euro filter over a vector signal (each component filtered independently, the
    speed that sets the cut-off taken per component).

    Args:
        min_cutoff: cut-off frequency (Hz) at rest; lower smooths more.
        beta: how fast the cut-off rises with speed (per unit of the signal per second).
        d_cutoff: cut-off frequency (Hz) of the speed estimate.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0
                 ) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        """Forget the past (after the face was lost)."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """The filtered value of sample ``x`` taken at time ``t`` (seconds)."""
        x = np.asarray(x, np.float64)
        if self._x is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        tau = 1.0 / (2.0 * np.pi * cutoff)
        a = 1.0 / (1.0 + tau / dt)
        self._x = self._x + a * (x - self._x)
        self._t = t
        return self._x.copy()


class PoseExpressionSmoother:
    """One Euro filters on a scaled orthographic pose and expression coefficients.

    Rotation is filtered as a unit quaternion (sign kept continuous, renormalised), scale as
    its logarithm, position as the image point of ``pivot`` (a model-frame point at the
    face's centre, so that a lagging rotation does not swing the face about the model
    origin) in mm (pixels divided by the scale), expression in prior units. Defaults were
    tuned on the synthetic jitter benchmark (``benchmarks/video.py``).
    """

    def __init__(self, rotation: tuple[float, float] = (2.0, 5.0),
                 translation: tuple[float, float] = (1.0, 0.5),
                 expression: tuple[float, float] = (2.0, 2.0),
                 pivot: np.ndarray | None = None) -> None:
        self.pivot = np.zeros(3) if pivot is None else np.asarray(pivot, np.float64)
        self.rot = OneEuroFilter(*rotation)
        self.log_scale = OneEuroFilter(*rotation)
        self.trans = OneEuroFilter(*translation)
        self.expr = OneEuroFilter(*expression)
        self._q: np.ndarray | None = None

    def reset(self) -> None:
        for f in (self.rot, self.log_scale, self.trans, self.expr):
            f.reset()
        self._q = None

    def __call__(self, rotation: np.ndarray, scale: float, translation: np.ndarray,
                 expression: np.ndarray, t: float
                 ) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
        """Smoothed (rotation (3, 3), scale, translation (2,), expression) at time ``t``."""
        from scipy.spatial.transform import Rotation

        q = Rotation.from_matrix(rotation).as_quat()
        if self._q is not None and float(q @ self._q) < 0:
            q = -q
        self._q = q
        qs = self.rot(q, t)
        rot = Rotation.from_quat(qs / np.linalg.norm(qs)).as_matrix()
        s = float(np.exp(self.log_scale(np.array([math.log(scale)]), t)[0]))
        centre = np.asarray(translation, np.float64) + _xy(scale * rotation @ self.pivot)
        c = self.trans(centre / scale, t) * s
        return rot, s, c - _xy(s * rot @ self.pivot), self.expr(expression, t)


def _xy(v: np.ndarray) -> np.ndarray:
    """Image-plane offset (x right, y down) of a view-frame vector (y up)."""
    return np.array([v[0], -v[1]])
