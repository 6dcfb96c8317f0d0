"""AFLW's 21 landmarks and the iBUG 68: correspondence and a masked landmark loss.

The 21 points of ``train-aflw21`` (README there), in order: brows (6), eyes (outer, centre,
inner per eye: 6), ear lobes and nose (5), mouth (3), chin (1). Each is one iBUG-68 point or
the mean of several (eye centres, mouth centre); the ear lobes have no iBUG counterpart and are
approximated by jaw points 2 and 14, so `AFLW21_USABLE` leaves them out of the loss by default.
Masked supervision on the visible points follows 2DASL (Tu et al., "3D Face Reconstruction
from A Single Image Assisted by 2D Face Images in the Wild", 2019).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["AFLW21_FROM_68", "AFLW21_MATRIX", "AFLW21_USABLE", "CONVENTION_RIDGE",
           "convention_offset", "load_aflw21", "masked_landmark_loss", "params_to_points21",
           "points21_from_68"]

# iBUG-68 (0-based) indices averaged for each AFLW point.
AFLW21_FROM_68: tuple[tuple[int, ...], ...] = (
    (17,), (19,), (21,), (22,), (24,), (26,),
    (36,), (36, 37, 38, 39, 40, 41), (39,), (42,), (42, 43, 44, 45, 46, 47), (45,),
    (2,), (31,), (30,), (35,), (14,),
    (48,), (60, 61, 62, 63, 64, 65, 66, 67), (54,), (8,),
)


def _matrix() -> np.ndarray:
    m = np.zeros((21, 68), np.float32)
    for i, ids in enumerate(AFLW21_FROM_68):
        m[i, list(ids)] = 1.0 / len(ids)
    return m


AFLW21_MATRIX: np.ndarray = _matrix()
"""(21, 68) averaging matrix: ``points21 = AFLW21_MATRIX @ points68``."""

AFLW21_USABLE: np.ndarray = np.ones(21, bool)
AFLW21_USABLE[[12, 16]] = False  # ear lobes: no iBUG-68 counterpart


def points21_from_68(points68: np.ndarray) -> np.ndarray:
    """(..., 21, 2) AFLW points from (..., 68, 2) iBUG points (numpy or torch)."""
    return AFLW21_MATRIX @ points68 if isinstance(points68, np.ndarray) else \
        _torch_matrix(points68) @ points68


def _torch_matrix(like):  # noqa: ANN001, ANN202 - torch is optional for the numpy path
    import torch

    return torch.as_tensor(AFLW21_MATRIX, dtype=like.dtype, device=like.device)


def masked_landmark_loss(pred68, target21, size: float, usable: np.ndarray = AFLW21_USABLE):  # noqa: ANN001, ANN201
    """Mean Euclidean distance / ``size`` between predicted AFLW points (from (B, 68, 2)
    torch ``pred68``) and (B, 21, 2) ``target21`` over the points that are visible (not NaN)
    and ``usable``; 0 when none is."""
    import torch

    p21 = points21_from_68(pred68)
    vis = ~torch.isnan(target21).any(-1)
    vis &= torch.as_tensor(usable, device=vis.device)[None, :]
    if not bool(vis.any()):
        return pred68.sum() * 0.0
    d = torch.linalg.norm(p21 - torch.nan_to_num(target21), dim=-1)
    return (d * vis).sum() / vis.sum() / size


def load_aflw21(folder: str | Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """(image paths, (K, 21, 2) points with NaN for hidden, (K,) yaw degrees) of train-aflw21."""
    folder = Path(folder)
    path = folder / "labels.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            names, pts, yaw = z["names"], z["points_21"], z["yaw_deg"]
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: not the train-aflw21 labels file ({e})") from e
    if pts.ndim != 3 or pts.shape[1:] != (21, 2):
        raise ValueError(f"{path}: points_21 has shape {pts.shape}, expected (K, 21, 2)")
    images = [folder / "images" / (str(n) if str(n).endswith(".jpg") else f"{n}.jpg")
              for n in names]
    return images, pts.astype(np.float32), yaw.astype(np.float32)


CONVENTION_RIDGE = 1e-4
"""`convention_offset`'s prior weight: an offset of norm 1 (coefficient units) costs as much as
a crop's points moved by squared distances summing to (1 % of the crop side)^2. Chosen on the
even half of AFLW2000-3D dev (the network on ground-truth crops, two passes: 4.15 % balanced
NME, 4.19 / 4.16 at 0.3x / 3x); the offset itself is learned on train-aflw21 only."""


def params_to_points21(mean68: np.ndarray, basis68: np.ndarray, params: np.ndarray
                       ) -> np.ndarray:
    """(N, 21, 2) float64 AFLW points (pixels) of (N, 8 + K) parameters: the scaled
    orthographic map ``A`` (2x3, row-major), ``t`` (2,), then K coefficients of the (68, 3)
    ``mean68`` and (68, 3, K) ``basis68`` (`convention_offset`'s arguments)."""
    p = np.asarray(params, np.float64)
    verts = mean68[None] + np.einsum("nck,bk->bnc", basis68, p[:, 8:8 + basis68.shape[2]])
    return AFLW21_MATRIX @ (np.einsum("brc,bnc->bnr", p[:, :6].reshape(-1, 2, 3), verts)
                            + p[:, None, 6:8])


def convention_offset(mean68: np.ndarray, basis68: np.ndarray, params: np.ndarray,
                      points21: np.ndarray, size: float,
                      ridge: float = CONVENTION_RIDGE) -> np.ndarray:
    """(K,) constant coefficient offset that moves a model's 68 landmarks onto AFLW's
    annotation convention: ridge least squares of the visible, usable 21 points.

    The regression network learns the 68 points from fits to 300-W annotations and AFLW's 21
    only through the masked loss; where the two annotation conventions differ (300-W's brows
    sit higher on the brow and its chin lower) it keeps 300-W's, and its faces read about 3 %
    taller from brow to chin than AFLW's and AFLW2000-3D's labels.
    `scripts/export_regress_weights.py` stores the offset in the weights' meta;
    `facefit.regress.predictor.RegressionPredictor.in_aflw_convention` adds it to the
    network's final answers.

    Args:
        mean68: (68, 3) the model's mean landmark vertices (model frame).
        basis68: (68, 3, K) their shape and expression basis.
        params: (N, 8 + K) predictions on the crops: the scaled orthographic map ``A``
            (2x3, row-major), ``t`` (2,) in crop pixels, then the K coefficients.
        points21: (N, 21, 2) the crops' AFLW points in pixels, NaN where hidden.
        size: the crop side in pixels (the residuals are measured in crop sides).
        ridge: the prior weight, per unit of offset (`CONVENTION_RIDGE`).
    """
    p = np.asarray(params, np.float64)
    k = basis68.shape[2]
    a = p[:, :6].reshape(-1, 2, 3)
    resid = np.asarray(points21, np.float64) - params_to_points21(mean68, basis68, p)
    vis = ~np.isnan(resid).any(-1) & AFLW21_USABLE[None]
    if not vis.any():
        raise ValueError("no visible AFLW point to learn the convention offset from")
    jac = np.einsum("brc,jck->bjrk", a, np.einsum("jn,nck->jck", AFLW21_MATRIX, basis68))
    jv, rv = jac[vis].reshape(-1, k) / size, resid[vis].reshape(-1) / size
    return np.linalg.solve(jv.T @ jv / len(p) + ridge * np.eye(k), jv.T @ rv / len(p))
