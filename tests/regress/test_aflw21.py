"""The AFLW-21 <-> iBUG-68 map and the masked landmark loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facefit.regress.aflw21 import (
    AFLW21_MATRIX,
    AFLW21_USABLE,
    convention_offset,
    load_aflw21,
    masked_landmark_loss,
    points21_from_68,
)
from facefit.regress.profiling import IBUG68_MIRROR

# AFLW's 21 points flipped left-right (brows, eyes, lobes+nose, mouth reversed; chin stays).
AFLW21_MIRROR = np.array([5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 16, 15, 14, 13, 12,
                          19, 18, 17, 20])


def test_matrix_rows_are_averages():
    np.testing.assert_allclose(AFLW21_MATRIX.sum(1), 1.0, rtol=1e-6)
    pts = np.random.default_rng(0).normal(size=(68, 2))
    p21 = points21_from_68(pts)
    np.testing.assert_allclose(p21[0], pts[17])
    np.testing.assert_allclose(p21[7], pts[36:42].mean(0), rtol=1e-5)
    np.testing.assert_allclose(p21[18], pts[60:68].mean(0), rtol=1e-5)
    np.testing.assert_allclose(p21[20], pts[8])


def test_map_commutes_with_mirroring():
    pts = np.random.default_rng(1).normal(size=(68, 2))
    flip68 = pts[IBUG68_MIRROR] * [-1, 1]
    np.testing.assert_allclose(points21_from_68(flip68),
                               points21_from_68(pts)[AFLW21_MIRROR] * [-1, 1], atol=1e-6)


def test_masked_loss_ignores_hidden_points():
    pred68 = torch.zeros(1, 68, 2, dtype=torch.float64)
    target = torch.zeros(1, 21, 2, dtype=torch.float64)
    target[0, 0] = torch.tensor([3.0, 4.0])  # distance 5
    target[0, 1] = torch.nan  # hidden: ignored
    target[0, 12] = torch.tensor([100.0, 0.0])  # ear lobe: not usable
    usable = AFLW21_USABLE.copy()
    got = masked_landmark_loss(pred68, target, size=10.0)
    n = usable.sum() - 1  # visible and usable
    assert float(got) == pytest.approx(5.0 / n / 10.0)
    assert float(masked_landmark_loss(pred68, torch.full_like(target, torch.nan), 10.0)) == 0


def test_shared_labels_load(tmp_path):
    with pytest.raises(ValueError, match="labels.npz"):
        load_aflw21(tmp_path)
    np.savez(tmp_path / "labels.npz", names=np.array(["a.jpg"]),
             points_21=np.zeros((1, 21, 2), np.float32), yaw_deg=np.zeros(1, np.float32))
    paths, pts, yaw = load_aflw21(tmp_path)
    assert paths[0] == tmp_path / "images" / "a.jpg" and pts.shape == (1, 21, 2)


def _project21(mean68, basis68, params):
    """AFLW points of (N, 8 + K) parameters, written out independently of the module."""
    out = []
    for p in params:
        verts = mean68 + basis68 @ p[8:]
        out.append(AFLW21_MATRIX @ (verts @ p[:6].reshape(2, 3).T + p[6:8]))
    return np.array(out)


def test_convention_offset_recovers_a_known_offset():
    from facefit.model import load_default_model
    from facefit.regress.predictor import landmark_basis

    mean68, basis68 = landmark_basis(load_default_model())
    rng = np.random.default_rng(0)
    n, k = 40, basis68.shape[2]
    params = np.zeros((n, 8 + k))
    for i in range(n):  # scaled rotations about a random axis, faces about 60 px in a 120 crop
        q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        params[i, :6] = (0.4 * q[:2]).ravel()
        params[i, 6:8] = 60 + rng.normal(0, 3, 2)
    params[:, 8:] = rng.normal(0, 1, (n, k))
    truth = rng.normal(0, 0.5, k)
    target = _project21(mean68, basis68, params + np.r_[np.zeros(8), truth])
    target[rng.random((n, 21)) < 0.3] = np.nan  # hidden points
    got = convention_offset(mean68, basis68, params, target, 120, ridge=1e-12)
    np.testing.assert_allclose(got, truth, atol=0.01)  # some directions are weakly seen
    shrunk = convention_offset(mean68, basis68, params, target, 120, ridge=1e-2)
    assert np.linalg.norm(shrunk) < 0.5 * np.linalg.norm(truth)
    with pytest.raises(ValueError, match="no visible"):
        convention_offset(mean68, basis68, params, np.full_like(target, np.nan), 120)
