"""Geometric errors of fits against ground truth: rotation (geodesic and per Euler angle),
mesh vertex distance after rigid or similarity alignment, and landmark-track jitter."""

from __future__ import annotations

import numpy as np

from facefit.fit.camera import euler_from_rotation
from facefit.fit.core.rotation import umeyama


def geodesic_deg(r_a: np.ndarray, r_b: np.ndarray) -> float:
    """Angle in degrees of the rotation ``r_aᵀ r_b`` (geodesic distance on SO(3))."""
    c = (np.trace(np.asarray(r_a, np.float64).T @ np.asarray(r_b, np.float64)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def euler_errors_deg(r_fit: np.ndarray, r_gt: np.ndarray) -> np.ndarray:
    """(3,) absolute yaw, pitch and roll differences in degrees, wrapped to [0, 180]."""
    d = np.subtract(euler_from_rotation(r_fit), euler_from_rotation(r_gt))
    return np.abs((d + 180.0) % 360.0 - 180.0)


def vertex_error(pred: np.ndarray, gt: np.ndarray, align: str = "rigid") -> float:
    """Mean per-vertex Euclidean distance between two (V, 3) meshes in the same units.

    ``align``: ``"none"`` (as given), ``"rigid"`` (rotation + translation minimising the
    squared distances, Kabsch 1976) or ``"similarity"`` (plus a uniform scale, Umeyama 1991).
    """
    p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if align != "none":
        if align not in ("rigid", "similarity"):
            raise ValueError(f"align must be 'none', 'rigid' or 'similarity', got {align!r}")
        p = umeyama(p, g, with_scale=align == "similarity").apply(p)
    return float(np.linalg.norm(p - g, axis=1).mean())


def jitter_metrics(tracks: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(mean landmark acceleration |x[t+1] - 2 x[t] + x[t-1]| px, mean error to truth px)
    of landmark tracks (T, K, 2) against the true tracks (T, K, 2)."""
    acc = np.linalg.norm(tracks[2:] - 2 * tracks[1:-1] + tracks[:-2], axis=-1).mean()
    err = np.linalg.norm(tracks - truth, axis=-1).mean()
    return float(acc), float(err)
