"""Several photos of one person through the model's kind and the single-photo camera:
FLAME keeps each photo's jaw (skinned) with the perspective camera too."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from facefit.fit.camera import Camera, rotation_from_euler
from facefit.fit.core.camera import PerspectiveCamera
from facefit.fit.multi_image import ViewPoints, fit_same_person
from facefit.fit.result import model_frame_vertices
from facefit.model.io_flame import FlameModel, linear_blend_skinning

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from test_flame_fit import EXPR, SHAPE, make_flame  # noqa: E402

JAWS = (0.05, 0.35, 0.15)  # radians, one per photo
YAWS = (-20.0, 5.0, 25.0)
FOCAL, CENTRE = 1200.0, (320.0, 240.0)


def posed(flame: FlameModel, jaw: float) -> np.ndarray:
    pose = np.zeros((5, 3))
    pose[2, 0] = jaw
    m = flame.model
    return linear_blend_skinning(m.vertices(SHAPE, EXPR), pose, flame.posedirs,
                                 flame.j_regressor, flame.weights, flame.parents
                                 ).astype(np.float64)


def perspective_views(flame: FlameModel, ids: np.ndarray) -> list[ViewPoints]:
    views = []
    for jaw, yaw in zip(JAWS, YAWS, strict=True):
        truth = PerspectiveCamera(rotation_from_euler(yaw, 3.0, 0.0),
                                  np.array([3.0, -2.0, -450.0]), FOCAL, np.array(CENTRE))
        px, _ = truth.project(posed(flame, jaw)[ids])
        views.append(ViewPoints(px, ids, np.ones(len(ids)), 0.05))
    return views


@pytest.mark.parametrize("method", ["joint", "confidence"])
def test_perspective_same_person_keeps_each_photos_jaw(method: str) -> None:
    flame = make_flame("full")
    ids = np.arange(0, flame.model.num_vertices, 2)
    cam = Camera("perspective", FOCAL, CENTRE)
    multi = fit_same_person(flame.model, perspective_views(flame, ids), method=method,
                            iterations=10, camera=cam)
    for fit, jaw in zip(multi.fits, JAWS, strict=True):
        assert fit.camera == cam
        assert fit.extras["flame_pose"][2, 0] == pytest.approx(jaw, abs=0.01)
        err = np.abs(fit.vertices_mm - posed(flame, jaw)).max()
        assert err < (0.05 if method == "joint" else 3.0)  # mm; pooled shape is approximate
        np.testing.assert_allclose(fit.translation[2], -450.0, rtol=0.02)


def test_linear_form_of_the_same_photos_loses_the_jaw() -> None:
    """What the kind dispatch buys: the same arrays fitted as a linear model."""
    flame = make_flame("full")
    ids = np.arange(0, flame.model.num_vertices, 2)
    linear = dataclasses.replace(flame.model, kind="linear")
    multi = fit_same_person(linear, perspective_views(flame, ids), iterations=10,
                            camera=Camera("perspective", FOCAL, CENTRE))
    fit = multi.fits[JAWS.index(0.35)]
    assert "flame_pose" not in fit.extras
    assert np.abs(model_frame_vertices(linear, fit) - posed(flame, 0.35)).max() > 5.0


def test_one_camera_per_view_is_checked() -> None:
    flame = make_flame("full")
    ids = np.arange(0, flame.model.num_vertices, 2)
    with pytest.raises(ValueError, match="2 cameras for 3 views"):
        fit_same_person(flame.model, perspective_views(flame, ids), camera=[Camera()] * 2)
