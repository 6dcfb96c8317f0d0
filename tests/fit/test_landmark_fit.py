"""Landmark fitting on a small synthetic model made in code: exact recovery, priors, cameras."""

from __future__ import annotations

import numpy as np
import pytest

from facefit.detect.base import FaceLandmarks
from facefit.fit.camera import Camera, euler_from_rotation, rotation_from_euler
from facefit.fit.correspondence import LandmarkCorrespondence
from facefit.fit.landmark_fit import _Pose, fit_landmarks, fit_points
from facefit.model.morphable_model import MorphableModel


def synthetic_model(seed: int = 0, n_vertices: int = 600) -> MorphableModel:
    """An ellipsoidal 'head' (mm) with random smooth shape and expression bases."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-1.4, 1.4, n_vertices)
    phi = rng.uniform(-1.2, 1.2, n_vertices)
    mean = np.column_stack([70 * np.sin(theta) * np.cos(phi), 90 * np.sin(phi),
                            60 * np.cos(theta) * np.cos(phi)]).astype(np.float32)
    freqs = rng.normal(size=(12, 3))

    def basis(k: int, amp: float) -> np.ndarray:
        b = np.stack([np.cos(mean @ freqs[i % 12] / 60 + i)[:, None] * rng.normal(size=3)
                      for i in range(k)], axis=2)
        return (amp * b).astype(np.float32)

    ids = np.arange(68)
    tri = np.array([[0, 1, 2]], np.int32)
    return MorphableModel("synthetic", mean, basis(8, 4.0), basis(4, 2.0), tri,
                          np.zeros((n_vertices, 2), np.float32), {"ibug68": ids},
                          np.arange(n_vertices))


@pytest.mark.parametrize("yaw", [0.0, 35.0, 70.0])
def test_noiseless_landmarks_recover_pose_shape_expression(yaw: float) -> None:
    model = synthetic_model()
    rng = np.random.default_rng(1)
    shape = rng.normal(size=model.num_shape).astype(np.float32)
    expr = rng.normal(size=model.num_expression).astype(np.float32)
    rot = rotation_from_euler(yaw, -12.0, 7.0)
    truth = _Pose(rot, 1.8, np.array([230.0, 210.0]))
    ids = rng.choice(model.num_vertices, 300, replace=False)
    px, _ = truth.project(model.vertices(shape, expr)[ids])
    got_s, got_e, pose, rms, n = fit_points(model, px, ids, landmark_sigma_px=1e-3,
                                            iterations=8)
    assert n == 300
    assert rms < 1e-3
    np.testing.assert_allclose(got_s, shape, atol=2e-3)
    np.testing.assert_allclose(got_e, expr, atol=2e-3)
    np.testing.assert_allclose(pose.rotation, rot, atol=1e-5)
    assert pose.scale == pytest.approx(1.8, rel=1e-5)
    np.testing.assert_allclose(euler_from_rotation(pose.rotation), (yaw, -12.0, 7.0), atol=1e-3)


def test_depth_observations_agree_with_image_only_fit() -> None:
    model = synthetic_model(2)
    rng = np.random.default_rng(3)
    shape = rng.normal(size=model.num_shape)
    rot = rotation_from_euler(50.0, 5.0, -3.0)
    truth = _Pose(rot, 2.0, np.array([200.0, 200.0]))
    ids = np.arange(0, 600, 2)
    px, depth = truth.project(model.vertices(shape)[ids])
    got_s, _, pose, rms, _ = fit_points(model, px, ids, landmark_sigma_px=1e-3,
                                        depth_px=depth + 123.0, depth_weight=1.0)
    np.testing.assert_allclose(pose.rotation, rot, atol=1e-5)
    np.testing.assert_allclose(got_s, shape, atol=2e-3)


def test_prior_shrinks_coefficients_with_noisy_landmarks() -> None:
    model = synthetic_model(4)
    rng = np.random.default_rng(5)
    truth = _Pose(np.eye(3), 2.0, np.array([200.0, 200.0]))
    ids = np.arange(100)
    px, _ = truth.project(model.mean[ids])
    px = px + rng.normal(scale=3.0, size=px.shape)
    weak, _, _, _, _ = fit_points(model, px, ids, landmark_sigma_px=0.01)
    strong, _, _, _, _ = fit_points(model, px, ids, landmark_sigma_px=30.0)
    assert np.linalg.norm(strong) < 0.5 * np.linalg.norm(weak)


def test_perspective_camera_recovers_pose_and_shape() -> None:
    model = synthetic_model(6)
    rng = np.random.default_rng(7)
    shape = rng.normal(size=model.num_shape).astype(np.float32)
    rot = rotation_from_euler(-25.0, 10.0, 4.0)
    cam = Camera("perspective", 800.0, (320.0, 240.0))
    truth = _Pose(rot, 1.0, np.array([10.0, -5.0, -600.0]), 800.0, np.array([320.0, 240.0]))
    ids = rng.choice(model.num_vertices, 200, replace=False)
    px, _ = truth.project(model.vertices(shape)[ids])
    got_s, _, pose, rms, _ = fit_points(model, px, ids, landmark_sigma_px=1e-3, iterations=12,
                                        camera=cam)
    assert rms < 0.05
    np.testing.assert_allclose(pose.rotation, rot, atol=2e-3)
    np.testing.assert_allclose(pose.translation, truth.translation, rtol=0.02, atol=1.0)
    np.testing.assert_allclose(got_s, shape, atol=0.05)


def test_fit_landmarks_result_fields_and_contour() -> None:
    model = synthetic_model(8)
    rng = np.random.default_rng(9)
    shape = rng.normal(size=model.num_shape).astype(np.float32) * 0.5
    truth = _Pose(rotation_from_euler(20.0, 0.0, 0.0), 2.0, np.array([200.0, 220.0]))
    verts = model.vertices(shape)
    lm, _ = truth.project(verts[:68])
    face = FaceLandmarks(np.array([0, 0, 400, 400], np.float32), 1.0, lm.astype(np.float32),
                         None, "synthetic68")
    corr = LandmarkCorrespondence("synthetic68", np.arange(68), np.arange(68),
                                  np.ones(68, np.float32), np.zeros(0, np.int64))
    fit = fit_landmarks(model, face, (400, 400), correspondence=corr, landmark_sigma=1e-5)
    assert fit.verts_px.shape == (model.num_vertices, 3) and fit.verts_px.dtype == np.float32
    np.testing.assert_allclose(fit.landmarks_68_2d, lm, atol=1e-2)
    np.testing.assert_allclose(fit.landmarks_68_3d[:, :2], fit.landmarks_68_2d)
    assert fit.landmarks_68_2d_contour.shape == (68, 2)
    assert fit.yaw_deg == pytest.approx(20.0, abs=0.05)
    assert fit.residual_px < 0.01


@pytest.mark.parametrize("angles", [(0, 0, 0), (30, -20, 10), (-75, 15, -40), (89, 0, 0)])
def test_euler_round_trip(angles: tuple[float, float, float]) -> None:
    r = rotation_from_euler(*angles)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(euler_from_rotation(r), angles, atol=1e-6)


def test_euler_conventions() -> None:
    nose = np.array([0.0, 0.0, 1.0])
    assert (rotation_from_euler(30, 0, 0) @ nose)[0] > 0  # yaw: nose to the image's right
    assert (rotation_from_euler(0, 30, 0) @ nose)[1] < 0  # pitch: nose down
    assert (rotation_from_euler(0, 0, 30) @ np.array([1.0, 0, 0]))[1] > 0  # roll: CCW


def test_300w_landmark_vertices_are_symmetric_and_move_brows_and_jaw() -> None:
    """The learned 300-W points (`ibug300w_vertex_ids`) are as left/right symmetric as the
    annotators: mirrored inner points within 1.5 mm of their partners; the jaw seeds sit on
    the frontal outline, far from 3DDFA's jaw vertices, and the brows move up."""
    from facefit.fit.correspondence import ibug300w_vertex_ids
    from facefit.model import load_default_model
    from facefit.model.topology import symmetry_plane_x
    from facefit.regress.profiling import IBUG68_MIRROR

    model = load_default_model()
    ids = ibug300w_vertex_ids(model)
    assert ids is not None and ids.shape == (68,)
    mean = model.mean.astype(np.float64)
    p = mean[ids]
    q = p[IBUG68_MIRROR].copy()
    q[:, 0] = 2.0 * symmetry_plane_x(mean) - q[:, 0]
    gap = np.linalg.norm(p - q, axis=1)
    assert gap[17:].max() < 1.5 and gap[:17].max() < 6.0
    old = mean[model.landmark_ids["ibug68"]]
    assert np.linalg.norm(p[:17] - old[:17], axis=1).mean() > 10.0


def test_300w_convention_beats_3ddfa_vertices_on_held_out_helen() -> None:
    """On HELEN test photos (not used to learn the points), ``landmarks_68_2d_contour`` is
    closer to the 300-W annotations than the 3DDFA landmark vertices' projections."""
    from pathlib import Path

    from facefit.eval.datasets import read_pts
    from facefit.eval.landmarks import nme_interocular
    from facefit.eval.predictions import load_rgb, select_face
    from facefit.reconstruct import Reconstructor

    folder = Path(__file__).resolve().parents[3] / "shared" / "data" / "helen-test"
    files = sorted(folder.glob("*.pts"))[::30]
    if not files:
        pytest.skip(f"{folder}: HELEN test set absent")
    rec = Reconstructor(texture_size=0, landmarks="mediapipe")
    new, old, gts = [], [], []
    for f in files:
        gt = read_pts(f)[:, :2]
        found = rec.reconstruct(load_rgb(f.with_suffix(".jpg")))
        fit = found[select_face([np.asarray(r.face.box) for r in found], gt)].fit
        new.append(fit.landmarks_68_2d_contour)
        old.append(fit.landmarks_68_2d)
        gts.append(gt)
    e_new = np.mean(nme_interocular(np.array(new), np.array(gts)))
    e_old = np.mean(nme_interocular(np.array(old), np.array(gts)))
    assert e_new < 0.93 * e_old, (e_new, e_old)


def test_moment_equations_fit_equals_explicit_rows_fit() -> None:
    """`fit_points` (scaled orthographic: the fixed landmarks' normal equations from their
    cached moments) ends where Gauss-Newton on the explicit Jacobian rows of the same blocks
    (`LandmarkBlocks.rows`) ends, with weights, depth and noisy targets."""
    from facefit.fit.core.camera import NUM_POSE_PARAMS
    from facefit.fit.core.priors import GaussianPrior
    from facefit.fit.core.solver import NormalEquations, gauss_newton
    from facefit.fit.landmark_fit import LandmarkBlocks

    model = synthetic_model(4)
    rng = np.random.default_rng(5)
    truth = _Pose(rotation_from_euler(28.0, 9.0, -4.0), 2.1, np.array([240.0, 200.0]))
    ids = rng.choice(model.num_vertices, 120, replace=False)
    pts = model.vertices(rng.normal(size=model.num_shape).astype(np.float32),
                         rng.normal(size=model.num_expression).astype(np.float32))[ids]
    img = truth.image_points(pts)
    px = img[:, :2] + rng.normal(0.0, 1.5, (120, 2))
    depth = img[:, 2] + 30.0 + rng.normal(0.0, 3.0, 120)
    w = rng.uniform(0.3, 1.5, 120)
    sigma, dw = 2.5, 0.7
    shape, expr, pose, rms, _ = fit_points(model, px, ids, w, landmark_sigma_px=sigma,
                                           iterations=6, depth_px=depth, depth_weight=dw)

    blocks = LandmarkBlocks(model.mean[ids].astype(np.float64),
                            np.concatenate([model.shape_basis, model.expression_basis],
                                           axis=2)[ids].astype(np.float64),
                            px, w, None, depth, dw * w)
    c0 = np.zeros(model.num_shape + model.num_expression)
    prior = GaussianPrior.standard(len(c0))

    def linearize(state):
        eq = NormalEquations.from_rows(*blocks.rows(state[1], state[0]), weight=sigma**-2)
        return eq.add_prior(prior, state[1], slice(NUM_POSE_PARAMS, None))

    def update(state, step):
        return state[0].updated(step[:NUM_POSE_PARAMS]), state[1] + step[NUM_POSE_PARAMS:]

    want_pose, want_c = gauss_newton(linearize, update, (blocks.initial_camera(c0), c0), 6)
    np.testing.assert_allclose(np.concatenate([shape, expr]), want_c, atol=1e-6)
    np.testing.assert_allclose(pose.rotation, want_pose.rotation, atol=1e-10)
    assert pose.scale == pytest.approx(want_pose.scale, rel=1e-10)
    np.testing.assert_allclose(pose.translation, want_pose.translation, atol=1e-8)
    assert rms == pytest.approx(np.sqrt(blocks.squared_errors(want_c, want_pose).mean()),
                                rel=1e-8)


def test_camera_sets_try_both_cameras_only_where_the_focal_length_is_unknown() -> None:
    """`camera_sets`: a photo of known focal length keeps its pinhole camera in every set;
    with auto and a refinement the others are scaled orthographic in the first set and
    pinhole at their own image diagonal in the second; one set otherwise."""
    from facefit.fit.camera import Camera
    from facefit.fit.landmark_fit import camera_sets

    sizes = [(640, 480), (300, 400)]
    two = camera_sets("auto", [800.0, None], sizes, refine=True)
    known = Camera("perspective", 800.0, (320.0, 240.0))
    assert two == [[known, Camera()], [known, Camera("perspective", 500.0, (150.0, 200.0))]]
    assert camera_sets("auto", [800.0, None], sizes, refine=False) == [[known, Camera()]]
    assert camera_sets("scaled_orthographic", [None, None], sizes, refine=True) == [
        [Camera(), Camera()]]
    assert camera_sets("perspective", [None], sizes[1:], refine=True) == [
        [Camera("perspective", 500.0, (150.0, 200.0))]]
