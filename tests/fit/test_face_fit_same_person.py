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


class _PhotoDetector:
    """Returns, for each synthetic photo (told apart by its fill value), its landmarks."""

    def __init__(self, points: list[np.ndarray | None]) -> None:
        self.points = points

    def detect(self, image: np.ndarray, max_faces: int = 8) -> list:
        from facefit.detect.base import FaceLandmarks

        px = self.points[int(image[0, 0, 0])]
        if px is None:
            return []
        return [FaceLandmarks(np.array([0, 0, 640, 480], np.float32), 1.0,
                              px.astype(np.float32), None, "ibug68")]


@pytest.mark.parametrize("camera", ["orthographic", "perspective"])
def test_reconstruct_same_person_api_keeps_flame_jaws(camera: str, monkeypatch) -> None:
    from facefit import same_person
    from facefit.fit.multi_image import DEFAULT_LANDMARK_SIGMA, default_landmark_sigma
    from facefit.reconstruct import Reconstructor

    flame = make_flame("full")
    lm68 = flame.model.landmark_ids["ibug68"]
    truth = PerspectiveCamera if camera == "perspective" else None
    points = []
    for jaw, yaw in zip(JAWS, YAWS, strict=True):
        rot = rotation_from_euler(yaw, 3.0, 0.0)
        verts = posed(flame, jaw)[lm68]
        if truth is not None:
            px, _ = truth(rot, np.array([3.0, -2.0, -450.0]), FOCAL, np.array(CENTRE)).project(
                verts)
        else:
            v = verts @ rot.T
            px = np.column_stack([2.5 * v[:, 0] + 320.0, -2.5 * v[:, 1] + 240.0])
        points.append(px)
    points.append(None)  # a photo without a face
    images = [np.full((480, 640, 3), i, np.uint8) for i in range(len(points))]
    images[1] = images[1][..., 0]  # greyscale: converted as Reconstructor.reconstruct does
    seen = []

    def view(model, face, sigma):  # the grid's outline is no face silhouette: no contour
        seen.append(sigma)
        return ViewPoints(np.asarray(face.points_px, np.float64), lm68, np.ones(68),
                          sigma * 200.0)

    monkeypatch.setattr(same_person, "view_from_face", view)
    recon = Reconstructor(model=flame.model, detector=_PhotoDetector(points), camera=camera,
                          focal_px=FOCAL if camera == "perspective" else None, texture_size=0)
    res = same_person.reconstruct_same_person(images, recon, landmark_sigma=1e-4)
    assert res.used == [0, 1, 2] and [i for i, _ in res.failures] == [3]
    assert res.images[1].shape == (480, 640, 3)
    assert "no face found" in res.failures[0][1] and seen == [1e-4] * 3
    for rec, jaw in zip(res.reconstructions, JAWS, strict=True):
        fit = rec.fit
        assert fit.camera.kind == ("perspective" if camera == "perspective"
                                   else "scaled_orthographic")
        assert fit.extras["flame_pose"][2, 0] == pytest.approx(jaw, abs=0.01)
        assert np.abs(fit.vertices_mm - posed(flame, jaw)).max() < 0.5  # mm, skinned
    with pytest.raises(same_person.NoFaceFoundError, match="no face found"):
        same_person.reconstruct_same_person(images[3:], recon)
    same_person.reconstruct_same_person(images[:1], recon)  # the single-photo prior by default
    assert seen[-1] == default_landmark_sigma("flame") == DEFAULT_LANDMARK_SIGMA["flame"]

