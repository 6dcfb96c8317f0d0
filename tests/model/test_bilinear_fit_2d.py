"""FaceScape bilinear model (Yang et al. 2020) fitted to 2D landmarks by alternation."""

from __future__ import annotations

import time

import numpy as np
import pytest
from _model_formats import make_bilinear_core, write_facescape

from facefit.detect.base import FaceLandmarks
from facefit.fit.bilinear_fit import (
    bilinear_from_model,
    expression_directions,
    fit_bilinear_landmarks_2d,
    fit_bilinear_points,
)
from facefit.fit.camera import rotation_from_euler
from facefit.fit.core.camera import ScaledOrthographicCamera
from facefit.fit.landmark_fit import silhouette_contour
from facefit.fit.result import image_vertices
from facefit.model import load_model, save_model
from facefit.model.io_facescape import read_bilinear

ID_MEAN = np.array([1.0, 0.1, -0.2, 0.05, 0.0])


@pytest.fixture
def bm_path(tmp_path):
    core, tri, uv, lm = make_bilinear_core()
    return write_facescape(tmp_path / "bm.npz", core, tri, uv, lm, ID_MEAN, np.full(5, 0.3))


def project(bm, w, e, rot, scale=2.0, trans=(320.0, 240.0)) -> np.ndarray:
    pts = bm.vertices(w, e, bm.landmark_ids["ibug68"]).astype(np.float64) @ rot.T
    return np.column_stack([scale * pts[:, 0] + trans[0], -scale * pts[:, 1] + trans[1]])


def test_alternation_recovers_known_weights(bm_path) -> None:
    bm = read_bilinear(bm_path)
    dirs = expression_directions(bm)
    w_true = ID_MEAN + 0.3 * np.array([0.0, 0.8, -0.6, 0.5, 0.4])
    e_true = bm.exp_neutral + dirs @ np.array([0.5, -0.4, 0.3])
    rot = rotation_from_euler(18.0, -5.0, 3.0)
    px = project(bm, w_true, e_true, rot)
    t0 = time.perf_counter()
    fit = fit_bilinear_points(bm, px, bm.landmark_ids["ibug68"], landmark_sigma_px=0.05,
                              alternations=60)
    assert time.perf_counter() - t0 < 5.0
    assert fit.rms_history[-1] < 1e-3
    assert fit.rms_history[-1] < 1e-2 * fit.rms_history[0]
    # identity weights are known up to the face's overall size, which trades with the camera
    # scale under a scaled orthographic camera
    k = float(fit.id_weights @ w_true / (w_true @ w_true))
    np.testing.assert_allclose(fit.id_weights / k, w_true, atol=1e-3)
    assert fit.scale * k == pytest.approx(2.0, rel=1e-3)
    np.testing.assert_allclose(fit.exp_weights, e_true, atol=1e-3)
    np.testing.assert_allclose(fit.rotation, rot, atol=1e-3)


def test_linearised_model_keeps_the_core_and_fits_a_face(bm_path, tmp_path) -> None:
    model = load_model(bm_path)
    bm = bilinear_from_model(model)
    assert bm is not None and bm.core.shape == read_bilinear(bm_path).core.shape
    again = load_model(save_model(model, tmp_path / "converted.npz"))  # survives conversion
    assert bilinear_from_model(again) is not None
    dirs = expression_directions(bm)
    w_true = ID_MEAN + 0.3 * np.array([0.0, 0.5, 0.4, -0.3, 0.2])
    e_true = bm.exp_neutral + dirs @ np.array([0.3, 0.2, -0.4])
    px = project(bm, w_true, e_true, rotation_from_euler(-12.0, 4.0, 0.0))
    face = FaceLandmarks(box=np.array([0, 0, 640, 480], np.float64), score=1.0,
                         points_px=px.astype(np.float32), depth_px=None,
                         scheme="ibug68")
    res = fit_bilinear_landmarks_2d(again, face, (640, 480), landmark_sigma=2e-4,
                                    alternations=40)
    assert res.residual_px < 0.05
    np.testing.assert_allclose(res.landmarks_68_2d, px, atol=0.1)
    np.testing.assert_allclose(res.vertices_mm, bm.vertices(res.extras["bilinear_id_weights"],
                                                            res.extras["bilinear_exp_weights"]),
                               atol=1e-3)
    assert bilinear_from_model(load_model(save_model(
        type(model)(**{**model.__dict__, "extras": {}}), tmp_path / "linear.npz"))) is None


def test_reconstructor_uses_the_bilinear_fit(bm_path) -> None:
    from facefit.reconstruct import Reconstructor

    model = load_model(bm_path)
    bm = bilinear_from_model(model)
    dirs = expression_directions(bm)
    # the detector's jaw points lie on the face's outline (300-W convention): the jaw of the
    # projected true mesh moved to its silhouette, as the fit's own outline step matches them
    w, e = ID_MEAN + 0.1, bm.exp_neutral + dirs @ np.array([0.4, 0.0, -0.2])
    cam = ScaledOrthographicCamera(rotation_from_euler(10.0, 0.0, 0.0), 2.0,
                                   np.array([320.0, 240.0]))
    verts_px = image_vertices(cam, bm.vertices(w, e).astype(np.float64))
    px = silhouette_contour(model, verts_px, verts_px[model.landmark_ids["ibug68"]])

    class Detector:
        def detect(self, image_rgb, max_faces=8):
            return [FaceLandmarks(box=np.array([0, 0, 640, 480], np.float32), score=1.0,
                                  points_px=px.astype(np.float32), depth_px=None,
                                  scheme="ibug68")]

    rec = Reconstructor(model=model, detector=Detector(), texture_size=0)
    fit = rec.reconstruct(np.zeros((480, 640, 3), np.uint8))[0].fit
    assert "bilinear_exp_weights" in fit.extras and fit.vertices_mm is not None
    assert fit.residual_px < 1.0


def test_bilinear_contour_landmarks_follow_the_silhouette(bm_path) -> None:
    model = load_model(bm_path)
    bm = bilinear_from_model(model)
    px = project(bm, ID_MEAN, bm.exp_neutral, rotation_from_euler(40.0, 0.0, 0.0))
    face = FaceLandmarks(box=np.array([0, 0, 640, 480], np.float64), score=1.0,
                         points_px=px.astype(np.float32), depth_px=None, scheme="ibug68")
    res = fit_bilinear_landmarks_2d(model, face, (640, 480), alternations=5)
    contour, plain = res.landmarks_68_2d_contour, res.landmarks_68_2d
    np.testing.assert_array_equal(contour[17:], plain[17:])
    # each jaw point is the image of a mesh vertex, and some moved off their fixed vertex
    d = np.linalg.norm(contour[:17, None] - res.verts_px[None, :, :2], axis=2).min(1)
    assert d.max() < 1e-4
    assert np.abs(contour[:17] - plain[:17]).max() > 1.0


def test_same_person_fits_the_bilinear_tensor(bm_path) -> None:
    from facefit.fit.multi_image import ViewPoints, fit_same_person

    model = load_model(bm_path)
    bm = bilinear_from_model(model)
    dirs = expression_directions(bm)
    w_true = ID_MEAN + 0.3 * np.array([0.0, 0.5, 0.4, -0.3, 0.2])
    ids = np.arange(0, bm.num_vertices, 2)
    views = []
    for yaw, b in ((-15.0, [0.4, 0.0, -0.2]), (20.0, [-0.3, 0.3, 0.1])):
        rot = rotation_from_euler(yaw, 3.0, 0.0)
        pts = bm.vertices(w_true, bm.exp_neutral + dirs @ np.array(b), ids).astype(np.float64)
        v = pts @ rot.T
        px = np.column_stack([2.0 * v[:, 0] + 320.0, -2.0 * v[:, 1] + 240.0])
        views.append(ViewPoints(px, ids, np.ones(len(ids)), 0.02))
    multi = fit_same_person(model, views, iterations=15)
    for fit in multi.fits:
        assert fit.residual_px < 0.05
        np.testing.assert_allclose(  # the exported mesh is the exact tensor product
            fit.vertices_mm, bm.vertices(fit.extras["bilinear_id_weights"],
                                         fit.extras["bilinear_exp_weights"]), atol=1e-3)
