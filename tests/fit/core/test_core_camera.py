"""Camera projections and their hand-written Jacobians against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from facefit.fit.core.camera import (
    MAX_LOG_SCALE_STEP,
    PerspectiveCamera,
    ScaledOrthographicCamera,
    camera_pose,
    estimate_perspective,
    estimate_scaled_orthographic,
    similarity_camera,
)
from facefit.fit.core.rotation import rotation_from_euler

REL_TOL = 1e-4


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """Largest absolute difference relative to the largest entry of ``want``."""
    return float(np.abs(got - want).max() / np.abs(want).max())


def numeric_pose_jacobian(cam, points: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(N, 3, 6) central differences of image_points through ``cam.updated(step)``."""
    out = np.zeros((len(points), 3, 6))
    for k in range(6):
        d = np.zeros(6)
        d[k] = eps
        out[:, :, k] = (cam.updated(d).image_points(points)
                        - cam.updated(-d).image_points(points)) / (2 * eps)
    return out


def numeric_point_jacobian(cam, points: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    out = np.zeros((len(points), 3, 3))
    for k in range(3):
        d = np.zeros(3)
        d[k] = eps
        out[:, :, k] = (cam.image_points(points + d) - cam.image_points(points - d)) / (2 * eps)
    return out


def cameras() -> list:
    rot = rotation_from_euler(35.0, -12.0, 8.0)
    return [ScaledOrthographicCamera(rot, 1.7, np.array([210.0, 180.0])),
            PerspectiveCamera(rot, np.array([12.0, -8.0, -650.0]), 900.0,
                              np.array([320.0, 240.0]))]


@pytest.mark.parametrize("cam", cameras(), ids=["orthographic", "perspective"])
def test_jacobians_match_finite_differences(cam) -> None:
    pts = np.random.default_rng(0).normal(scale=50.0, size=(40, 3))
    d_pose, d_point = cam.jacobians(pts)
    assert d_pose.shape == (40, 3, 6) and d_point.shape == (40, 3, 3)
    assert rel_err(d_pose, numeric_pose_jacobian(cam, pts)) < REL_TOL
    assert rel_err(d_point, numeric_point_jacobian(cam, pts)) < REL_TOL


def test_projection_formulas() -> None:
    rot = rotation_from_euler(20.0, 5.0, -3.0)
    p = np.array([[10.0, -20.0, 30.0], [0.0, 0.0, 0.0]])
    v = p @ rot.T
    ortho = camera_pose(rot, 2.0, np.array([100.0, 50.0]))
    np.testing.assert_allclose(ortho.image_points(p)[0],
                               [2 * v[0, 0] + 100, -2 * v[0, 1] + 50, -2 * v[0, 2]])
    persp = camera_pose(rot, 1.0, np.array([0.0, 0.0, -500.0]), 800.0, np.array([320, 240]))
    assert isinstance(persp, PerspectiveCamera) and persp.scale == 1.0
    xy, d = persp.project(p)
    np.testing.assert_allclose(xy[1], [320.0, 240.0])
    assert d[1] == pytest.approx(500.0)
    np.testing.assert_allclose(xy[0], [320 + 800 * v[0, 0] / (500 - v[0, 2]),
                                       240 - 800 * v[0, 1] / (500 - v[0, 2])])


def test_linear_estimates_recover_cameras() -> None:
    rng = np.random.default_rng(1)
    pts = rng.normal(scale=60.0, size=(30, 3))
    truth = ScaledOrthographicCamera(rotation_from_euler(-30.0, 10.0, 5.0), 1.4,
                                     np.array([300.0, 200.0]))
    px, depth = truth.project(pts)
    got = estimate_scaled_orthographic(pts, px)
    np.testing.assert_allclose(got.rotation, truth.rotation, atol=1e-9)
    assert got.scale == pytest.approx(1.4)
    got = similarity_camera(pts, np.column_stack([px, depth + 77.0]))
    np.testing.assert_allclose(got.rotation, truth.rotation, atol=1e-9)
    np.testing.assert_allclose(got.translation, truth.translation, atol=1e-9)
    persp = PerspectiveCamera(truth.rotation, np.array([5.0, -3.0, -700.0]), 1000.0,
                              np.array([320.0, 240.0]))
    got = estimate_perspective(pts, persp.project(pts)[0], 1000.0, persp.principal)
    np.testing.assert_allclose(got.rotation, persp.rotation, atol=1e-6)
    np.testing.assert_allclose(got.translation, persp.translation, atol=1e-4)


def test_a_scale_step_is_bounded() -> None:
    """One Gauss-Newton step changes the scale by at most a factor e^MAX_LOG_SCALE_STEP (an
    undamped step on far-off points once overflowed it to inf); small steps are exact."""
    cam = ScaledOrthographicCamera(np.eye(3), 2.0, np.zeros(2))
    big = cam.updated(np.array([0, 0, 0, 1000.0, 0, 0]))
    assert big.scale == pytest.approx(2.0 * np.exp(MAX_LOG_SCALE_STEP))
    assert cam.updated(np.array([0, 0, 0, -1000.0, 0, 0])).scale == pytest.approx(
        2.0 * np.exp(-MAX_LOG_SCALE_STEP))
    assert cam.updated(np.array([0, 0, 0, 0.1, 1, 2])).scale == pytest.approx(2.0 * np.exp(0.1))


@pytest.mark.parametrize("cam", [
    ScaledOrthographicCamera(rotation_from_euler(20.0, -5.0, 3.0), 2.5, np.array([130.0, 90.0])),
    PerspectiveCamera(rotation_from_euler(-35.0, 8.0, -4.0), np.array([12.0, -7.0, -450.0]),
                      600.0, np.array([160.0, 120.0])),
])
def test_origin_scale_and_reposed_are_inverses(cam) -> None:
    """`origin_scale` (scale at the model origin, its pixel) and `reposed` give the same
    camera back, and the origin projects where `origin_scale` says at the scale it says."""
    scale, origin = cam.origin_scale()
    back = cam.reposed(cam.rotation, scale, origin)
    assert type(back) is type(cam)
    pts = np.random.default_rng(0).normal(0, 40, (20, 3))
    np.testing.assert_allclose(back.project(pts)[0], cam.project(pts)[0], atol=1e-9)
    np.testing.assert_allclose(cam.project(np.zeros((1, 3)))[0][0], origin, atol=1e-9)
    # a small step along the view's x axis at the origin moves its pixel by ~scale px/mm
    dx = cam.rotation.T @ np.array([1e-4, 0.0, 0.0])
    moved = cam.project(dx[None])[0][0] - origin
    assert moved[0] / 1e-4 == pytest.approx(scale, rel=1e-6)
    # repose: another rotation, scale and origin pixel, the same focal length
    rot = rotation_from_euler(5.0, 1.0, 2.0)
    other = cam.reposed(rot, 1.5 * scale, origin + 10.0)
    s2, o2 = other.origin_scale()
    assert s2 == pytest.approx(1.5 * scale) and np.allclose(o2, origin + 10.0)
    assert other.focal == cam.focal and np.allclose(other.rotation, rot)
