"""The AFLW-convention offset of MediaPipe fits (`facefit.fit.points_aflw`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facefit.detect.base import FaceLandmarks
from facefit.fit import points_aflw
from facefit.fit.camera import Camera, rotation_from_euler
from facefit.fit.core.camera import camera_pose
from facefit.fit.landmark_fit import make_result
from facefit.fit.points_aflw import ConventionOffset, load_offset, with_aflw_convention
from facefit.model import load_default_model


def _face(scheme: str) -> FaceLandmarks:
    return FaceLandmarks(np.zeros(4, np.float32), 0.9, np.zeros((468, 2), np.float32), None,
                         scheme)


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    return load_default_model()


def _fit(model, perspective: bool = False):  # noqa: ANN001, ANN202
    rng = np.random.default_rng(3)
    shape = rng.normal(size=model.num_shape).astype(np.float32)
    expr = 0.5 * rng.normal(size=model.num_expression).astype(np.float32)
    rot = rotation_from_euler(20.0, -6.0, 4.0)
    if perspective:
        pose = camera_pose(rot, 1.0, np.array([10.0, -5.0, -600.0]), 800.0,
                           np.array([240.0, 200.0]))
        camera = Camera(kind="perspective", focal_px=800.0, principal_point_px=(240.0, 200.0))
    else:
        pose = camera_pose(rot, 1.6, np.array([230.0, 210.0]))
        camera = Camera()
    return make_result(model, shape, expr, pose, camera, 1.0, 468, 3), shape, expr, rot


def test_offset_moves_the_aflw_points_as_the_model_would(model, monkeypatch) -> None:
    """The moved points are the projections of the landmark vertices of the coefficients plus
    the offset, computed here from the model's bases and the camera's formula; the mesh, the
    coefficients and the 300-W points stay."""
    fit, shape, expr, rot = _fit(model)
    off = np.zeros(model.num_shape + model.num_expression)
    off[[0, 3, model.num_shape + 1]] = (1.5, -2.0, 1.0)
    monkeypatch.setattr(points_aflw, "load_offset", lambda name: ConventionOffset(off, name))
    out = with_aflw_convention(model, fit, _face("mediapipe468"))
    ids = model.landmark_ids["ibug68"]
    c = np.concatenate([shape, expr]).astype(np.float64) + off
    basis = np.concatenate([model.shape_basis[ids], model.expression_basis[ids]], axis=2)
    v = (model.mean[ids] + basis @ c) @ rot.T
    want = np.column_stack([1.6 * v[:, 0] + 230.0, -1.6 * v[:, 1] + 210.0])
    np.testing.assert_allclose(out.landmarks_68_2d, want, atol=2e-3)
    np.testing.assert_allclose(out.landmarks_68_3d[:, :2], want, atol=2e-3)
    before = (model.mean[ids] + basis @ (c - off)) @ rot.T
    np.testing.assert_allclose(out.landmarks_68_3d[:, 2] - fit.landmarks_68_3d[:, 2],
                               -1.6 * (v[:, 2] - before[:, 2]), atol=2e-3)
    assert np.abs(out.landmarks_68_2d - fit.landmarks_68_2d).max() > 1.0
    np.testing.assert_array_equal(out.verts_px, fit.verts_px)
    np.testing.assert_array_equal(out.shape_coeffs, fit.shape_coeffs)
    np.testing.assert_array_equal(out.landmarks_68_2d_contour, fit.landmarks_68_2d_contour)


def test_perspective_fit_moves_through_its_camera(model, monkeypatch) -> None:
    fit, shape, expr, rot = _fit(model, perspective=True)
    off = np.zeros(model.num_shape + model.num_expression)
    off[2] = 2.0
    monkeypatch.setattr(points_aflw, "load_offset", lambda name: ConventionOffset(off, name))
    out = with_aflw_convention(model, fit, _face("mediapipe468"))
    ids = model.landmark_ids["ibug68"]
    c = np.concatenate([shape, expr]).astype(np.float64) + off
    basis = np.concatenate([model.shape_basis[ids], model.expression_basis[ids]], axis=2)
    v = (model.mean[ids] + basis @ c) @ rot.T + np.array([10.0, -5.0, -600.0])
    want = np.column_stack([240.0 + 800.0 * v[:, 0] / -v[:, 2], 200.0 - 800.0 * v[:, 1] / -v[:, 2]])
    np.testing.assert_allclose(out.landmarks_68_2d, want, atol=2e-3)


def test_network_faces_and_other_models_are_left_alone(model) -> None:
    fit, *_ = _fit(model)
    assert with_aflw_convention(model, fit, _face("ibug68")) is fit  # another detector's 68
    assert load_offset("no-such-model") is None and load_offset("../x") is None


def test_packaged_offset_makes_faces_shorter(model) -> None:
    """The packaged offset (learned on train-aflw21) moves a frontal face's 68 points into a
    box about 2-4 % less tall, as AFLW's convention is against 300-W's (measured 3.2 % on
    AFLW2000-3D dev faces within 30 degrees of yaw), and hardly wider."""
    off = load_offset(model.name)
    assert off is not None and off.model == model.name
    assert off.coefficients.shape == (model.num_shape + model.num_expression,)
    rot = rotation_from_euler(0.0, 0.0, 0.0)
    pose = camera_pose(rot, 2.0, np.array([200.0, 200.0]))
    zero = np.zeros(model.num_shape, np.float32), np.zeros(model.num_expression, np.float32)
    fit = make_result(model, *zero, pose, Camera(), 0.0, 468, 1)
    out = with_aflw_convention(model, fit, _face("mediapipe468"))
    h0, h1 = np.ptp(fit.landmarks_68_2d[:, 1]), np.ptp(out.landmarks_68_2d[:, 1])
    w0, w1 = np.ptp(fit.landmarks_68_2d[:, 0]), np.ptp(out.landmarks_68_2d[:, 0])
    assert 0.96 < h1 / h0 < 0.985
    assert abs(w1 / w0 - 1) < 0.02


SHARED_AFLW = Path(__file__).resolve().parents[3] / "shared" / "data" / "train-aflw21"


@pytest.mark.skipif(not (SHARED_AFLW / "labels.npz").is_file(), reason="no ../shared")
def test_build_script_on_a_few_crops(tmp_path, model) -> None:
    """``scripts/build_aflw_convention.py`` on 12 frontal train-aflw21 crops: its fits map back
    to the crop's pixels (checked against a fit of the enlarged crop made here), its offset is
    `convention_offset` of them, and a folder without labels exits 2 writing nothing."""
    from PIL import Image
    from repo_scripts import load_script

    from facefit.fit.face_fit import fit_face
    from facefit.reconstruct import Reconstructor
    from facefit.regress.aflw21 import convention_offset, load_aflw21
    from facefit.regress.predictor import landmark_basis

    script = load_script("scripts/build_aflw_convention.py")
    params, points, name = script.collect(SHARED_AFLW, limit=12)
    assert name == model.name and len(params) >= 10 and params.shape[1] == 58
    paths, pts, yaw = load_aflw21(SHARED_AFLW)
    first = int(np.flatnonzero(np.abs(yaw) < script.MAX_YAW)[0])
    np.testing.assert_array_equal(points[0], pts[first])
    with Image.open(paths[first]) as im:
        big = np.asarray(im.convert("RGB").resize((360, 360), Image.BICUBIC))
    rec = Reconstructor(texture_size=0, landmarks="mediapipe")
    fit = fit_face(model, rec.detector.detect(big)[0], (360, 360))
    mean68, basis68 = landmark_basis(model)
    crop_px = (mean68 + basis68 @ params[0, 8:]) @ params[0, :6].reshape(2, 3).T + params[0, 6:8]
    np.testing.assert_allclose(3 * crop_px + 1, fit.landmarks_68_2d, atol=0.05)
    out = tmp_path / "off.npz"
    assert script.main(["--limit", "12", "--out", str(out)]) == 0
    with np.load(out) as z:
        assert str(z["model"]) == model.name and int(z["crops"]) == len(params)
        want = convention_offset(mean68, basis68, params, points, script.CROP)
        np.testing.assert_allclose(z["coefficients"], want, atol=1e-4)
    (tmp_path / "empty").mkdir()
    assert script.main(["--data", str(tmp_path / "empty"), "--out",
                        str(tmp_path / "bad.npz")]) == 2
    assert not (tmp_path / "bad.npz").exists()


def test_network_faces_keep_their_own_points(model) -> None:
    """A face of the network gives its own 68 points (the fit to them is for the mesh); the
    depth keeps the fit's mean; the mesh and the 300-W points stay the fit's."""
    from facefit.detect.network import NetworkFace

    fit, *_ = _fit(model)
    rng = np.random.default_rng(5)
    pts = (fit.landmarks_68_2d + rng.normal(0, 2, (68, 2))).astype(np.float32)
    depth = rng.normal(0, 10, 68).astype(np.float32)
    face = NetworkFace(np.zeros(4, np.float32), 0.9, pts, depth, "ibug68_fixed")
    out = with_aflw_convention(model, fit, face)
    np.testing.assert_array_equal(out.landmarks_68_2d, pts)
    np.testing.assert_array_equal(out.landmarks_68_3d[:, :2], pts)
    np.testing.assert_allclose(out.landmarks_68_3d[:, 2],
                               depth + fit.landmarks_68_3d[:, 2].mean(), atol=1e-3)
    np.testing.assert_array_equal(out.landmarks_68_2d_contour, fit.landmarks_68_2d_contour)
    np.testing.assert_array_equal(out.verts_px, fit.verts_px)
    blend = NetworkFace(np.zeros(4, np.float32), 0.9, pts, depth, "ibug68_fixed", source="blend")
    assert with_aflw_convention(model, fit, blend) is fit


def test_a_mediapipe_face_with_the_network_reading_averages_both(model) -> None:
    """A MediaPipe face carrying the network's reading (`MediaPipeFace`): its AFLW points are
    (1 - NETWORK_SHARE) times the offset fit's plus NETWORK_SHARE times the reading's, the
    reading's depth moved to the fit's mean; the mesh and the 300-W points stay the fit's."""
    import dataclasses

    from facefit.detect.network import MediaPipeFace

    fit, *_ = _fit(model)
    plain = with_aflw_convention(model, fit, _face("mediapipe468"))
    rng = np.random.default_rng(7)
    lm3 = (plain.landmarks_68_3d + rng.normal(0, 3, (68, 3)) + [0, 0, 40]).astype(np.float32)

    @dataclasses.dataclass
    class Reading:  # the field of a RegressionResult that is read
        landmarks_68_3d: np.ndarray

    face = MediaPipeFace(np.zeros(4, np.float32), 0.9, np.zeros((468, 2), np.float32), None,
                         "mediapipe468", regression=Reading(lm3))
    out = with_aflw_convention(model, fit, face)
    s = points_aflw.NETWORK_SHARE
    assert 0 < s < 1
    want = (1 - s) * plain.landmarks_68_2d + s * lm3[:, :2]
    np.testing.assert_allclose(out.landmarks_68_2d, want, atol=1e-3)
    np.testing.assert_allclose(out.landmarks_68_3d[:, :2], want, atol=1e-3)
    np.testing.assert_allclose(out.landmarks_68_3d[:, 2].mean(),
                               plain.landmarks_68_3d[:, 2].mean(), atol=1e-3)
    np.testing.assert_array_equal(out.landmarks_68_2d_contour, fit.landmarks_68_2d_contour)
    np.testing.assert_array_equal(out.verts_px, fit.verts_px)
