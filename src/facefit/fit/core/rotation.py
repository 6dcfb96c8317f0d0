"""Rotations: axis-angle (Rodrigues), Euler angles and the weighted Umeyama similarity.

The single implementation of each in facefit; every fitter, loader and metric imports them
from here.

Euler angles (degrees) follow `facefit.fit.camera`: ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``,
rotations about the view axes (x right, y up, z towards the viewer): positive yaw turns the
nose towards the image's right, positive pitch turns it down, positive roll turns the face
counter-clockwise as the viewer sees it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def skew(v: np.ndarray) -> np.ndarray:
    """(..., 3, 3) cross-product matrices ``[v]x`` of (..., 3) vectors: ``[v]x @ u = v x u``."""
    v = np.asarray(v, np.float64)
    out = np.zeros((*v.shape[:-1], 3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """Rotation matrices of axis-angle vectors (radians), Rodrigues' formula
    ``R = I + sin(t) K + (1 - cos(t)) K^2`` with ``K = [axis]x``.

    Args:
        axis_angle: (3,) or (N, 3) (any array reshapeable to (N, 3)).

    Returns:
        (N, 3, 3) float64 rotations (N = 1 for a single vector).
    """
    r = np.asarray(axis_angle, np.float64).reshape(-1, 3)
    theta = np.linalg.norm(r, axis=1)
    kx = skew(r / np.maximum(theta, 1e-12)[:, None])
    s, c = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    return np.eye(3) + s * kx + (1.0 - c) * (kx @ kx)


def axis_angle(rotation: np.ndarray) -> np.ndarray:
    """(3,) axis-angle vector (radians, angle in [0, pi]) of a (3, 3) rotation: the inverse
    of `rodrigues` (the matrix logarithm of SO(3))."""
    r = np.asarray(rotation, np.float64)
    cos = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    theta = float(np.arccos(cos))
    w = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    if theta < 1e-7:
        return 0.5 * w
    if np.pi - theta > 1e-4:
        return theta / (2.0 * np.sin(theta)) * w
    # near pi: the axis is the dominant column of (R + I) / 2 = a a^T
    b = (r + np.eye(3)) / 2.0
    k = int(np.argmax(np.diag(b)))
    axis = b[:, k] / np.sqrt(max(b[k, k], 1e-12))
    if w @ axis < 0:
        axis = -axis
    return theta * axis / np.linalg.norm(axis)


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rotation_from_euler(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """(3, 3) rotation, model frame to view frame: ``Rz(roll) @ Ry(yaw) @ Rx(pitch)``.

    Positive yaw turns the nose towards the image's right, positive pitch turns it down,
    positive roll turns the face counter-clockwise as the viewer sees it.
    """
    y, p, r = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    return _rz(r) @ _ry(y) @ _rx(p)


def euler_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw_deg, pitch_deg, roll_deg) of ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``.

    Yaw is in [-90, 90]; at |yaw| = 90 (gimbal lock) pitch is set to 0.
    """
    r = np.asarray(rotation, dtype=np.float64)
    yaw = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    if abs(abs(r[2, 0]) - 1.0) < 1e-9:
        pitch = 0.0
        roll = np.arctan2(-r[0, 1], r[1, 1])
    else:
        pitch = np.arctan2(r[2, 1], r[2, 2])
        roll = np.arctan2(r[1, 0], r[0, 0])
    return float(np.rad2deg(yaw)), float(np.rad2deg(pitch)), float(np.rad2deg(roll))


@dataclass(frozen=True)
class Similarity:
    """``x -> scale * R @ x + t``: (3, 3) rotation, (3,) translation, scalar scale."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform (N, 3) points."""
        return self.scale * np.asarray(points, np.float64) @ self.rotation.T + self.translation

    def inverse_apply(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 3) points back: ``R^T (x - t) / scale``."""
        return (np.asarray(points, np.float64) - self.translation) @ self.rotation / self.scale


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True,
            weights: np.ndarray | None = None) -> Similarity:
    """Least-squares similarity mapping (N, 3) ``src`` onto (N, 3) ``dst`` (Umeyama,
    "Least-squares estimation of transformation parameters between two point patterns",
    TPAMI 1991), optionally with per-point weights (N,); ``with_scale=False`` gives the rigid
    (Kabsch) solution. Needs N >= 3 non-collinear points."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs  # (3, 3) = sum w dst_c src_c^T
    u, d, vt = np.linalg.svd(cov)
    s = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[2] = -1.0
    rot = u @ np.diag(s) @ vt
    var_s = float(w @ (xs**2).sum(axis=1))
    scale = float((d * s).sum() / max(var_s, 1e-300)) if with_scale else 1.0
    return Similarity(scale, rot, mu_d - scale * rot @ mu_s)
