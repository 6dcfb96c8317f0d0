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

__all__ = ["AFLW21_FROM_68", "AFLW21_MATRIX", "AFLW21_USABLE", "load_aflw21",
           "masked_landmark_loss", "points21_from_68"]

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
