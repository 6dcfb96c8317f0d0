"""Landmark accuracy metrics: NME normalised by the landmark box (AFLW2000-3D protocol, Zhu
et al., CVPR 2016) or by the outer-eye-corner distance (300-W, Sagonas et al., 2016), the
cumulative error distribution (CED), its area (AUC) and failure rate at a threshold, and the
capped NME in which a miss counts as a failure. A missing prediction is NaN throughout: with
``nan_policy="missing"`` (default) a partially NaN prediction is also treated as missing;
with ``nan_policy="omit"`` its error is averaged over the finite points only.
`facefit.eval.landmarks` applies them per benchmark protocol (yaw buckets, tables).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

NanPolicy = Literal["missing", "omit"]
FAILURE_THRESHOLD = 0.08
"""NME above which an image counts as a failure (and at which the capped NME saturates)."""
OUTER_EYE_CORNERS = (36, 45)


def as_batch(a: np.ndarray) -> np.ndarray:
    """(L, D) or (N, L, D) landmarks as (N, L, D) float64."""
    a = np.asarray(a, np.float64)
    return a[None] if a.ndim == 2 else a


def mean_point_error(pred: np.ndarray, gt: np.ndarray,
                     nan_policy: NanPolicy = "missing") -> np.ndarray:
    """Mean Euclidean landmark error per image.

    Args:
        pred, gt: (N, L, D) or (L, D) landmarks (pixels); pred may hold NaN.
        nan_policy: see the module docstring.

    Returns:
        (N,) float64 pixels; NaN for missing predictions.
    """
    pred, gt = as_batch(pred), as_batch(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ")
    d = np.linalg.norm(pred - gt, axis=-1)  # (N, L), NaN where pred (or gt) is NaN
    finite = np.isfinite(d)
    out = np.full(d.shape[0], np.nan)
    if nan_policy == "missing":
        ok = finite.all(axis=1)
        out[ok] = d[ok].mean(axis=1)
    elif nan_policy == "omit":
        ok = finite.any(axis=1)
        out[ok] = np.nanmean(d[ok], axis=1)
    else:
        raise ValueError(f"nan_policy must be 'missing' or 'omit', got {nan_policy!r}")
    return out


def _row_nanmean(z: np.ndarray) -> np.ndarray:
    """(N, 1) mean of the finite entries of each row of (N, L); NaN for all-NaN rows."""
    ok = np.isfinite(z)
    n = ok.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, z, 0.0).sum(axis=1, keepdims=True) / n


def bbox_size(gt: np.ndarray) -> np.ndarray:
    """(N,) ``sqrt(w * h)`` of the bounding box of (N, L, >=2) or (L, >=2) landmarks (x, y)."""
    gt = as_batch(gt)
    w = np.nanmax(gt[..., 0], axis=1) - np.nanmin(gt[..., 0], axis=1)
    h = np.nanmax(gt[..., 1], axis=1) - np.nanmin(gt[..., 1], axis=1)
    return np.sqrt(w * h)


def interocular_distance(gt: np.ndarray, corners: tuple[int, int] = OUTER_EYE_CORNERS
                         ) -> np.ndarray:
    """(N,) distance between the outer eye corners (0-based ids 36 and 45 of the 68)."""
    gt = as_batch(gt)
    return np.linalg.norm(gt[:, corners[0], :2] - gt[:, corners[1], :2], axis=-1)


def nme_bbox(pred: np.ndarray, gt: np.ndarray, nan_policy: NanPolicy = "missing",
             center_z: bool = True) -> np.ndarray:
    """AFLW2000-3D NME per image: mean point error / ``sqrt(w * h)`` of the GT (x, y) box.

    For (…, 3) inputs (3D NME) the z coordinate of each face is centred (its mean over the
    landmarks subtracted) when ``center_z``, since depth offsets are arbitrary. Returns (N,)
    unitless; NaN for missing predictions.
    """
    pred, gt = as_batch(pred).copy(), as_batch(gt).copy()
    if center_z and pred.shape[-1] == 3:
        pred[..., 2] -= _row_nanmean(pred[..., 2])
        gt[..., 2] -= _row_nanmean(gt[..., 2])
    return mean_point_error(pred, gt, nan_policy) / bbox_size(gt)


def nme_interocular(pred: np.ndarray, gt: np.ndarray, nan_policy: NanPolicy = "missing",
                    corners: tuple[int, int] = OUTER_EYE_CORNERS) -> np.ndarray:
    """300-W NME per image: mean point error / outer-eye-corner distance. (N,), NaN = missing."""
    return mean_point_error(pred, gt, nan_policy) / interocular_distance(gt, corners)


def ced_curve(errors: np.ndarray, max_error: float = 0.08, num: int = 801
              ) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: thresholds (num,) in [0, max_error] and the fraction of
    images with error <= threshold; NaN errors (missing predictions) count as failures."""
    e = np.where(np.isfinite(errors), errors, np.inf)
    t = np.linspace(0.0, max_error, num)
    frac = (e[None, :] <= t[:, None]).mean(axis=1) if e.size else np.zeros_like(t)
    return t, frac


def auc_at(errors: np.ndarray, threshold: float = 0.08) -> float:
    """Area under the CED from 0 to ``threshold``, divided by ``threshold`` (in [0, 1]).

    Exact: ``mean_i max(0, threshold - e_i) / threshold``; missing (NaN) errors add 0.
    """
    e = np.where(np.isfinite(errors), errors, np.inf)
    if e.size == 0:
        return float("nan")
    return float(np.mean(np.clip(threshold - e, 0.0, None)) / threshold)


def failure_rate(errors: np.ndarray, threshold: float = 0.08) -> float:
    """Fraction of images with error > ``threshold``; missing (NaN) errors are failures."""
    e = np.where(np.isfinite(errors), errors, np.inf)
    return float(np.mean(e > threshold)) if e.size else float("nan")


def capped_nme(errors: np.ndarray, threshold: float = FAILURE_THRESHOLD) -> np.ndarray:
    """Per-image NME with misses (NaN) scored as ``threshold`` and larger errors capped at
    it: every image counts, a failure never counts more than the threshold."""
    e = np.asarray(errors, np.float64)
    return np.where(np.isfinite(e), np.minimum(e, threshold), threshold)


def failure_count(errors: np.ndarray, threshold: float = FAILURE_THRESHOLD) -> int:
    """Images with NME above ``threshold`` or without a prediction."""
    e = np.asarray(errors, np.float64)
    return int((~np.isfinite(e) | (e > threshold)).sum())


def plot_ced(curves: Mapping[str, np.ndarray], path: str, max_error: float = 0.08,
             title: str = "Cumulative error distribution",
             xlabel: str = "NME (normalised by outer-eye-corner distance)") -> None:
    """Plot CED curves of several methods (per-image NME arrays, NaN = failure) to a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, errors in curves.items():
        t, frac = ced_curve(np.asarray(errors, np.float64), max_error)
        ax.plot(t, frac, label=f"{label} (AUC {auc_at(errors, max_error):.3f})")
    ax.set_xlim(0, max_error)
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of images")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
