"""Contour matching: the outermost candidate along each ray is the silhouette."""

from __future__ import annotations

import numpy as np

from facefit.fit.contour import match_contour


def test_outermost_candidate_along_ray_is_chosen() -> None:
    angles = np.deg2rad(np.arange(0, 360, 2.0))
    inner = np.column_stack([np.cos(angles), np.sin(angles)]) * 50
    outer = np.column_stack([np.cos(angles), np.sin(angles)]) * 80
    cands = np.vstack([inner, outer]) + [100, 100]
    lms = np.array([[200.0, 100.0], [100.0, 0.0], [30.0, 30.0]])
    idx = match_contour(lms, cands, np.array([100.0, 100.0]), max_angle_deg=1.5)
    assert (idx >= len(inner)).all()
    got = cands[idx] - 100
    want = (lms - 100) / np.linalg.norm(lms - 100, axis=1, keepdims=True) * 80
    np.testing.assert_allclose(got, want, atol=80 * np.deg2rad(1.5))


def test_no_candidate_in_sector_gives_minus_one() -> None:
    cands = np.array([[10.0, 0.0]])
    idx = match_contour(np.array([[0.0, 10.0]]), cands, np.zeros(2))
    assert idx.tolist() == [-1]
