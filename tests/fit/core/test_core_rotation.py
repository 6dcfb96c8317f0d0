"""Rotation utilities against scipy's independent implementation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from facefit.fit.core.rotation import (
    axis_angle,
    euler_from_rotation,
    rodrigues,
    rotation_from_euler,
    skew,
    umeyama,
)


def test_rodrigues_matches_scipy_and_inverts() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(50, 3)) * rng.uniform(0, 3.0, size=(50, 1))
    vecs = np.vstack([vecs, [[0.0, 0.0, 0.0], [np.pi - 1e-6, 0.0, 0.0], [0, 0, 1e-9]]])
    mats = rodrigues(vecs)
    np.testing.assert_allclose(mats, Rotation.from_rotvec(vecs).as_matrix(), atol=1e-12)
    for v, m in zip(vecs, mats, strict=True):
        np.testing.assert_allclose(rodrigues(axis_angle(m))[0], m, atol=1e-9)
        if np.linalg.norm(v) < np.pi - 1e-3:
            np.testing.assert_allclose(axis_angle(m), v, atol=1e-9)


def test_skew_is_the_cross_product() -> None:
    a, b = np.array([1.0, -2.0, 0.5]), np.array([0.3, 4.0, -1.0])
    np.testing.assert_allclose(skew(a) @ b, np.cross(a, b))


@pytest.mark.parametrize("angles", [(0, 0, 0), (30, -20, 10), (-75, 15, -40)])
def test_euler_round_trip_and_convention(angles) -> None:
    r = rotation_from_euler(*angles)
    yaw, pitch, roll = angles
    want = Rotation.from_euler("ZYX", [roll, yaw, pitch], degrees=True).as_matrix()
    np.testing.assert_allclose(r, want, atol=1e-12)
    np.testing.assert_allclose(euler_from_rotation(r), angles, atol=1e-9)


def test_weighted_umeyama_recovers_similarity_and_ignores_zero_weight_outliers() -> None:
    rng = np.random.default_rng(3)
    src = rng.normal(size=(20, 3))
    rot = Rotation.from_rotvec([0.3, -0.5, 0.8]).as_matrix()
    dst = 2.5 * src @ rot.T + np.array([1.0, 2.0, 3.0])
    dst[:4] += rng.normal(scale=5.0, size=(4, 3))
    w = np.r_[np.zeros(4), np.ones(16)]
    sim = umeyama(src, dst, weights=w)
    assert sim.scale == pytest.approx(2.5)
    np.testing.assert_allclose(sim.rotation, rot, atol=1e-10)
    np.testing.assert_allclose(sim.apply(src[4:]), dst[4:], atol=1e-10)
    rigid = umeyama(src[4:], dst[4:] / 2.5, with_scale=False)
    assert rigid.scale == 1.0 and np.linalg.det(rigid.rotation) == pytest.approx(1.0)
    # the inverse map: R^T (x - t) / s, checked against the explicit inverse matrix
    back = sim.inverse_apply(dst[4:])
    np.testing.assert_allclose(back, src[4:], atol=1e-10)
    np.testing.assert_allclose(back, (dst[4:] - [1.0, 2.0, 3.0]) @ np.linalg.inv(rot).T / 2.5,
                               atol=1e-10)
