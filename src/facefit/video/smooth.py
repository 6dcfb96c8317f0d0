"""Temporal smoothing of pose and expression: a constant-velocity Kalman filter (default;
no lag on a steady motion) or the One Euro filter (Casiez, Roussel and Vogel, "1€ Filter: A
Simple Speed-based Low-pass Filter for Noisy Input in Interactive Systems", CHI 2012): an
exponential low-pass filter whose cut-off frequency rises with the signal's speed, so slow
motion is smoothed strongly (less jitter) and fast motion lags less."""

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


class ConstantVelocityKalman:
    """A constant-velocity Kalman filter over a vector signal, each component independent
    (Kalman, "A New Approach to Linear Filtering and Prediction Problems", 1960; the
    white-noise-acceleration motion model of Bar-Shalom, Li & Kirubarajan, "Estimation with
    Applications to Tracking and Navigation", 2001, ch. 6). The state is (value, velocity):
    a steady motion is followed without lag (unlike a low-pass filter, whose lag grows with
    speed), and only changes of velocity are smoothed.

    Args:
        accel_std: standard deviation of the acceleration, signal units per s² (process
            noise; higher follows faster changes of speed and smooths less).
        noise_std: standard deviation of the measurement noise, signal units.
    """

    def __init__(self, accel_std: float = 1.0, noise_std: float = 1.0) -> None:
        self.q = float(accel_std) ** 2
        self.r = float(noise_std) ** 2
        self.reset()

    def reset(self) -> None:
        """Forget the past (after the face was lost)."""
        self._x: np.ndarray | None = None  # (N, 2) value, velocity
        self._p: np.ndarray | None = None  # (N, 3) covariance entries p00, p01, p11
        self._t = 0.0

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """The filtered value of sample ``x`` taken at time ``t`` (seconds)."""
        z = np.asarray(x, np.float64)
        shape = z.shape
        z = z.reshape(-1)
        if self._x is None or t <= self._t or len(self._x) != len(z):
            self._x = np.stack([z, np.zeros_like(z)], 1)
            # unknown velocity: large prior variance (a speed of 10 noise stds per second)
            self._p = np.tile([self.r, 0.0, 100.0 * self.r], (len(z), 1))
            self._t = t
            return z.reshape(shape).copy()
        dt = t - self._t
        self._t = t
        x0, v0 = self._x[:, 0] + dt * self._x[:, 1], self._x[:, 1]
        p00, p01, p11 = self._p.T
        q = self.q
        p00 = p00 + 2 * dt * p01 + dt * dt * p11 + q * dt**4 / 4
        p01 = p01 + dt * p11 + q * dt**3 / 2
        p11 = p11 + q * dt * dt
        s = p00 + self.r
        k0, k1 = p00 / s, p01 / s
        innov = z - x0
        self._x = np.stack([x0 + k0 * innov, v0 + k1 * innov], 1)
        self._p = np.stack([(1 - k0) * p00, (1 - k0) * p01, p11 - k1 * p01], 1)
        return self._x[:, 0].reshape(shape).copy()


_DEFAULTS = {
    # (min_cutoff Hz, beta) per signal
    "one_euro": {"rotation": (2.0, 5.0), "scale": (2.0, 5.0), "translation": (1.0, 0.5),
                 "expression": (2.0, 2.0)},
    # (acceleration std per s², measurement noise std) per signal
    "kalman": {"rotation": (2.0, 0.01), "scale": (2.0, 0.01), "translation": (100.0, 0.5),
               "expression": (20.0, 0.2)},
}


class PoseExpressionSmoother:
    """Temporal filters on a scaled orthographic pose and expression coefficients.

    Rotation is filtered as a unit quaternion (sign kept continuous, renormalised), scale as
    its logarithm, position as the image point of ``pivot`` (a model-frame point at the
    face's centre, so that a lagging rotation does not swing the face about the model
    origin) in mm (pixels divided by the scale), expression in prior units.

    ``method="kalman"`` (default): a constant-velocity Kalman filter per signal
    (`ConstantVelocityKalman`), parameters (acceleration std, noise std); it follows a
    steady sweep of the head without lag. ``method="one_euro"``: One Euro filters
    (`OneEuroFilter`), parameters (min_cutoff, beta); strong smoothing at rest but a lag
    that grows with speed. Defaults were tuned on the synthetic jitter benchmark
    (``benchmarks/video.py``, seeds 10-14; reported on seeds 0-2).
    """

    def __init__(self, rotation: tuple[float, float] | None = None,
                 translation: tuple[float, float] | None = None,
                 expression: tuple[float, float] | None = None,
                 pivot: np.ndarray | None = None, method: str = "kalman",
                 scale: tuple[float, float] | None = None) -> None:
        if method not in _DEFAULTS:
            raise ValueError(f"method must be one of {tuple(_DEFAULTS)}, got {method!r}")
        d = _DEFAULTS[method]
        make = OneEuroFilter if method == "one_euro" else ConstantVelocityKalman
        self.method = method
        self.pivot = np.zeros(3) if pivot is None else np.asarray(pivot, np.float64)
        self.rot = make(*(rotation or d["rotation"]))
        self.log_scale = make(*(scale or d["scale"]))
        self.trans = make(*(translation or d["translation"]))
        self.expr = make(*(expression or d["expression"]))
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
