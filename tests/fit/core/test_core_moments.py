"""Moment-based normal equations against the explicit Jacobian rows they replace."""

from __future__ import annotations

import numpy as np

from facefit.fit.core.camera import ScaledOrthographicCamera
from facefit.fit.core.moments import (
    PointMoments,
    orthographic_equations,
    point_features,
    target_moments,
)
from facefit.fit.core.residuals import depth_rows, landmark_rows
from facefit.fit.core.rotation import rotation_from_euler
from facefit.fit.core.solver import NormalEquations, stack_rows


def _problem(seed: int = 0, k: int = 40, m: int = 7):
    rng = np.random.default_rng(seed)
    mean = rng.normal(0.0, 50.0, (k, 3))
    basis = rng.normal(0.0, 3.0, (k, 3, m))
    weights = rng.uniform(0.2, 2.0, k)
    params = rng.normal(size=m)
    cam = ScaledOrthographicCamera(rotation_from_euler(35.0, -12.0, 8.0), 1.7,
                                   np.array([210.0, 190.0]))
    pts = mean + np.einsum("kam,m->ka", basis, params)
    img = cam.image_points(pts)
    targets = img[:, :2] + rng.normal(0.0, 3.0, (k, 2))
    depth = img[:, 2] + 40.0 + rng.normal(0.0, 5.0, k)
    return mean, basis, weights, params, cam, pts, targets, depth


def test_landmark_equations_match_rows() -> None:
    mean, basis, w, params, cam, pts, targets, _ = _problem()
    jac, res = landmark_rows(cam, pts, basis, targets, w)
    want = NormalEquations.from_rows(jac, res)
    tm = target_moments(point_features(mean, basis), w, targets)
    lhs, rhs = orthographic_equations(PointMoments.of(mean, basis, w), tm, cam, params)
    np.testing.assert_allclose(lhs, want.lhs, rtol=1e-10, atol=1e-8 * np.abs(want.lhs).max())
    np.testing.assert_allclose(rhs, want.rhs, rtol=1e-9, atol=1e-9 * np.abs(want.rhs).max())


def test_depth_equations_match_centred_rows() -> None:
    mean, basis, w, params, cam, pts, targets, depth = _problem(seed=3)
    dw = 0.6
    jac, res = stack_rows([landmark_rows(cam, pts, basis, targets, w),
                           depth_rows(cam, pts, basis, depth, dw * w)])
    want = NormalEquations.from_rows(jac, res)
    tm = target_moments(point_features(mean, basis), w,
                        np.column_stack([targets, depth]))
    lhs, rhs = orthographic_equations(PointMoments.of(mean, basis, w), tm, cam, params,
                                      depth_weight=dw)
    np.testing.assert_allclose(lhs, want.lhs, rtol=1e-10, atol=1e-8 * np.abs(want.lhs).max())
    np.testing.assert_allclose(rhs, want.rhs, rtol=1e-9, atol=1e-9 * np.abs(want.rhs).max())
