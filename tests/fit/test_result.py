"""`FitResult`'s deferred dense mesh: computed on first read, the same numbers as computed at
once, kept through `replaced`, pickles, and the landmark sets agree with its rows."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from facefit.fit.camera import Camera, rotation_from_euler
from facefit.fit.core.camera import camera_pose
from facefit.fit.landmark_fit import make_result, silhouette_contour
from facefit.fit.result import Deferred, FitResult
from facefit.model import load_default_model


@pytest.fixture()
def fitted() -> tuple[object, FitResult, np.ndarray]:
    model = load_default_model()
    rng = np.random.default_rng(4)
    shape = rng.normal(size=model.num_shape).astype(np.float32)
    expr = rng.normal(size=model.num_expression).astype(np.float32)
    pose = camera_pose(rotation_from_euler(40.0, -8.0, 5.0), 1.7, np.array([210.0, 190.0]))
    fit = make_result(model, shape, expr, pose, Camera(), 1.5, 468, 5)
    # the dense mesh computed independently: the model's vertices through the pose
    a = pose.linear_map()
    dense = model.vertices(shape, expr).astype(np.float64) @ a.T
    dense[:, :2] += pose.translation
    return model, fit, dense


def test_dense_mesh_is_computed_on_first_read(fitted) -> None:
    model, fit, dense = fitted
    fresh = fit.replaced()  # a copy that still defers
    assert isinstance(fresh.__dict__["verts_px"], Deferred)
    v = fresh.verts_px
    assert v.shape == (model.num_vertices, 3) and v.dtype == np.float32
    assert not isinstance(fresh.__dict__["verts_px"], Deferred)
    assert fresh.verts_px is v  # kept
    np.testing.assert_allclose(v, dense, atol=1e-3)


def test_landmark_sets_are_the_dense_meshs_rows(fitted) -> None:
    model, fit, _ = fitted
    v = fit.verts_px
    lm3 = v[model.landmark_ids["ibug68"]]
    np.testing.assert_array_equal(fit.landmarks_68_3d, lm3)
    np.testing.assert_array_equal(fit.landmarks_68_2d_contour, silhouette_contour(model, v, lm3))


def test_replaced_pickle_and_dataclasses_replace(fitted) -> None:
    _, fit, _ = fitted
    moved = np.zeros((68, 2), np.float32)
    other = fit.replaced(landmarks_68_2d_contour=moved)
    assert other.landmarks_68_2d_contour is moved and fit.landmarks_68_2d_contour is not moved
    assert other.shape_coeffs is fit.shape_coeffs
    with pytest.raises(TypeError, match="no field"):
        fit.replaced(vertices=None)
    again = pickle.loads(pickle.dumps(other))
    assert not isinstance(again.__dict__["verts_px"], Deferred)
    np.testing.assert_array_equal(again.verts_px, fit.verts_px)
    np.testing.assert_array_equal(dataclasses.replace(fit, residual_px=0.0).verts_px,
                                  fit.verts_px)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.verts_px = np.zeros((1, 3))  # type: ignore[misc]
