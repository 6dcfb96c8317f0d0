"""Bounded blendshape fitting (`facefit.fit.blendshape`): exact recovery on a small synthetic
blendshape model, active bounds, and synthetic ICT faces (68 landmarks, then dense points)
with known identity and sparse ARKit weights (skipped without ``../shared``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from test_io_ict import SHARED, make_folder  # noqa: E402

from facefit.detect.base import FaceLandmarks  # noqa: E402
from facefit.fit.blendshape import fit_blendshape_face, fit_blendshape_points  # noqa: E402
from facefit.fit.core.camera import (  # noqa: E402
    PerspectiveCamera,
    ScaledOrthographicCamera,
)
from facefit.fit.core.rotation import rotation_from_euler  # noqa: E402
from facefit.model import load_model  # noqa: E402
from facefit.model.face_model import FaceParams  # noqa: E402
from facefit.model.ict import load_ict_modes  # noqa: E402
from facefit.model.kinds import face_model  # noqa: E402


def _camera(yaw: float, pitch: float, roll: float) -> ScaledOrthographicCamera:
    rot = rotation_from_euler(yaw, pitch, roll)
    return ScaledOrthographicCamera(rot, 2.0, np.array([320.0, 240.0]))


def test_small_model_exact_and_bounded(tmp_path):
    folder, _ = make_folder(tmp_path)
    fm = face_model(load_model(folder))
    ids = np.arange(100)
    cam = _camera(10, -5, 3)
    truth = FaceParams(np.array([0.5, -0.3]), np.array([0.6, 0.0, 1.0]))
    target, _ = cam.project(fm.vertices(truth, ids))
    fit = fit_blendshape_points(fm, target, ids, sigma_px=0.05, sparsity=1e-3, ridge=1e-4)
    np.testing.assert_allclose(fit.weights, truth.expression, atol=0.02)
    np.testing.assert_allclose(fit.identity, truth.shape, atol=0.05)
    assert fit.rms_px < 0.05
    np.testing.assert_allclose(fit.camera.rotation, cam.rotation, atol=1e-3)
    # A target beyond the box: weight 1.6 of eyeBlink_L is fitted as exactly 1 (the bound),
    # while an unbounded least-squares solve would return about 1.6.
    over = FaceParams(np.zeros(2), np.array([0.0, 1.6, 0.0]))
    target, _ = cam.project(fm.vertices(over, ids))
    fit = fit_blendshape_points(fm, target, ids, sigma_px=0.05, sparsity=1e-3, ridge=1e-4)
    assert fit.weights[1] == pytest.approx(1.0, abs=1e-9)
    assert np.all(fit.weights >= 0.0) and np.all(fit.weights <= 1.0)


@pytest.fixture(scope="module")
def ict():
    if not (SHARED / "modes.npz").is_file():
        pytest.skip("../shared ICT data absent")
    return face_model(load_ict_modes(SHARED, num_identity=30))


def _faces(fm, count: int, seed: int, candidates: np.ndarray):
    """Synthetic faces: identity N(0, 0.8^2) on the first 15 modes, 3 active weights in
    [0.4, 1] drawn from ``candidates``, head pose within +-20 degrees."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        a = np.r_[0.8 * rng.standard_normal(15), np.zeros(fm.num_shape - 15)]
        w = np.zeros(fm.num_expression)
        active = rng.choice(candidates, 3, replace=False)
        w[active] = rng.uniform(0.4, 1.0, 3)
        yield FaceParams(a, w), active, _camera(*rng.uniform(-20, 20, 3)), rng


def _landmark_motion(fm, ids: np.ndarray) -> np.ndarray:
    e = fm.base.expression_basis[ids]
    return np.sqrt((e**2).sum(1).mean(0))  # RMS motion (mm) of each shape at weight 1


@pytest.mark.parametrize("dense", [False, True])
def test_ict_synthetic_recovery(ict, dense):
    fm = ict
    lm = np.asarray(fm.base.landmark_ids["ibug68"])
    rng = np.random.default_rng(5)
    ids = np.r_[lm, rng.choice(fm.fit_ids(), 400, replace=False)] if dense else lm
    # Shapes the observed points can see (>= 1 mm RMS motion on them); ARKit names only.
    names = fm.expression_names
    arkit = np.array([n[0].islower() and not n.startswith("cheekRaiser") for n in names])
    candidates = np.flatnonzero(arkit & (_landmark_motion(fm, ids) >= 1.0))
    maes = []
    for truth, active, cam, r in _faces(fm, 3, 11 + dense, candidates):
        target, _ = cam.project(fm.vertices(truth, ids))
        target = target + r.normal(0, 0.5, target.shape)  # 0.5 px noise at 2 px/mm
        fit = fit_blendshape_points(fm, target, ids, sigma_px=0.5)
        mae = np.abs(fit.weights - truth.expression).mean()
        maes.append(mae)
        assert mae <= 0.1, (mae, [names[i] for i in active])
        top = np.argsort(-fit.weights)[:3]
        assert set(top) == set(active), ([names[i] for i in top], [names[i] for i in active])
        assert np.all((fit.weights >= 0) & (fit.weights <= 1))
    print(f"ICT synthetic {'dense' if dense else '68 landmarks'}: weight MAE "
          + ", ".join(f"{m:.3f}" for m in maes))


def test_ict_fit_face_landmarks(ict):
    """The detection-level entry point: 68 iBUG landmarks of a face with jawOpen and a
    left blink come back as those ARKit weights, in a `FitResult`."""
    fm = ict
    names = fm.expression_names
    w = np.zeros(fm.num_expression)
    w[names.index("jawOpen")], w[names.index("eyeBlink_L")] = 0.7, 0.9
    truth = FaceParams(np.r_[0.5, -0.5, np.zeros(fm.num_shape - 2)], w)
    cam = _camera(15, 5, -5)
    lm = np.asarray(fm.base.landmark_ids["ibug68"])
    pts, _ = cam.project(fm.vertices(truth, lm))
    pts = pts + np.random.default_rng(0).normal(0, 1.0, pts.shape)  # 1 px landmark noise
    face = FaceLandmarks(np.r_[pts.min(0), pts.max(0)].astype(np.float32), 1.0,
                         pts.astype(np.float32), None, "ibug68")
    res = fit_blendshape_face(fm, face, (640, 480))
    weights = res.extras["blendshape_weights"]
    assert weights[names.index("jawOpen")] == pytest.approx(0.7, abs=0.1)
    assert weights[names.index("eyeBlink_L")] == pytest.approx(0.9, abs=0.15)
    assert weights[names.index("eyeBlink_R")] < 0.15
    assert res.residual_px < 2.0 and abs(res.yaw_deg - 15) < 3
    np.testing.assert_allclose(res.landmarks_68_2d, pts, atol=4.0)


def test_fit_face_dispatches_ict(ict):
    """`facefit.fit.face_fit.fit_face` sends ICT models to the bounded blendshape fitter,
    with either camera."""
    from facefit.fit.face_fit import fit_face

    fm = ict
    names = fm.expression_names
    w = np.zeros(fm.num_expression)
    w[names.index("mouthSmile_L")], w[names.index("mouthSmile_R")] = 0.8, 0.8
    ortho = _camera(-10, 0, 0)
    # The perspective fit's default camera: focal = image diagonal, centred principal point.
    persp = PerspectiveCamera(ortho.rotation, np.array([0.0, 0.0, -400.0]), 800.0,
                              np.array([320.0, 240.0]))
    lm = np.asarray(fm.base.landmark_ids["ibug68"])
    points = fm.vertices(FaceParams(np.zeros(fm.num_shape), w), lm)
    for camera, cam in (("orthographic", ortho), ("perspective", persp)):
        pts, _ = cam.project(points)
        face = FaceLandmarks(np.r_[pts.min(0), pts.max(0)].astype(np.float32), 1.0,
                             pts.astype(np.float32), None, "ibug68")
        res = fit_face(fm.base, face, (640, 480), camera=camera)
        got = res.extras["blendshape_weights"]
        assert res.camera.kind == ("perspective" if camera == "perspective"
                                   else "scaled_orthographic")
        assert got[names.index("mouthSmile_L")] == pytest.approx(0.8, abs=0.15)
        assert got[names.index("mouthSmile_R")] == pytest.approx(0.8, abs=0.15)
        assert np.all((got >= 0) & (got <= 1)) and res.residual_px < 2.0


@pytest.mark.parametrize("focal", [None, 300.0])
def test_video_frames_of_a_blendshape_model_keep_weights_in_the_box(tmp_path, focal):
    """`facefit.video.fitter.FrameFitter` fits ICT frames with the identity fixed and the
    weights bounded: a weight pushed past 1 in the landmarks stays 1; the others are
    recovered frame by frame from a warm start. With a pinhole camera (``focal``) every
    frame keeps its focal length."""
    from facefit.fit.camera import Camera
    from facefit.fit.core.camera import PerspectiveCamera
    from facefit.fit.multi_image import ViewPoints
    from facefit.video.fitter import FrameFitter

    folder, _ = make_folder(tmp_path)
    fm = face_model(load_model(folder))
    ids = np.arange(100)
    identity = np.array([0.5, -0.3])
    centre = np.array([320.0, 240.0])
    fitter = FrameFitter(fm, identity, camera=None if focal is None else
                         Camera("perspective", focal, tuple(centre)))
    for k, w in enumerate(([0.2, 0.0, 0.5], [0.4, 1.6, 0.3], [0.6, 0.3, 0.0])):
        cam = _camera(5.0 * k, -3, 2)
        if focal is not None:
            cam = PerspectiveCamera.at_scale(cam.rotation, cam.scale, cam.translation, focal,
                                             centre)
        target, _ = cam.project(fm.vertices(FaceParams(identity, np.array(w)), ids))
        frame = fitter.fit(ViewPoints(target, ids, np.ones(len(ids)), 0.05), t=k / 25)
        assert frame.raw_pose.kind == cam.kind and frame.raw_pose.focal == focal
        if max(w) <= 1:  # the camera model of the frame: exact (the other one leaves 3-4 px)
            assert frame.residual_px < 0.05
        got = frame.raw_expression
        assert got.min() >= 0.0 and got.max() <= 1.0 + 1e-9
        np.testing.assert_allclose(got, np.clip(w, 0, 1), atol=0.05)
        np.testing.assert_allclose(frame.params.shape, identity)


def test_same_person_keeps_blendshape_weights_bounded(ict):
    """Several photos of one ICT face (`facefit.fit.multi_image.fit_same_person`, the path of
    ``--same-person``): one identity and per-photo ARKit weights, bounded and sparse
    (`fit_blendshape_views`), not an unbounded ridge. Each photo's landmarks as a detector
    gives them: the 51 inner points on fixed vertices, the 17 outline points apart."""
    from facefit.fit.multi_image import ViewPoints, fit_same_person

    fm = ict
    names = fm.expression_names
    lm = np.asarray(fm.base.landmark_ids["ibug68"])
    arkit = np.array([n[0].islower() and not n.startswith("cheekRaiser") for n in names])
    candidates = np.flatnonzero(arkit & (_landmark_motion(fm, lm) >= 1.0))
    rng = np.random.default_rng(3)
    identity = np.r_[0.8 * rng.standard_normal(15), np.zeros(fm.num_shape - 15)]
    views, truths = [], []
    for yaw in (-25.0, 0.0, 20.0, 35.0):
        w = np.zeros(fm.num_expression)
        active = rng.choice(candidates, 3, replace=False)
        while _antagonists({names[i] for i in active}):  # they cancel on the landmarks
            active = rng.choice(candidates, 3, replace=False)
        w[active] = rng.uniform(0.4, 1.0, 3)
        pts, _ = _camera(yaw, rng.uniform(-8, 8), rng.uniform(-5, 5)).project(
            fm.vertices(FaceParams(identity, w), lm))
        pts = pts + rng.normal(0, 0.5, pts.shape)  # 0.5 px noise at 2 px/mm
        views.append(ViewPoints(pts[17:], lm[17:], np.ones(51), 0.5, contour_px=pts[:17]))
        truths.append((w, active))
    multi = fit_same_person(fm.base, views)
    maes = []
    for fit, (w, active) in zip(multi.fits, truths, strict=True):
        got = fit.extras["blendshape_weights"]
        np.testing.assert_array_equal(got, fit.expression_coeffs)
        assert got.min() >= 0.0 and got.max() <= 1.0
        maes.append(float(np.abs(got - w).mean()))
        assert maes[-1] <= 0.1
        assert set(np.argsort(-got)[:3]) == set(active), [names[i] for i in active]
    # the shared identity: its neutral face is closer to the truth than the mean face is
    face = fm.fit_ids()
    truth = fm.vertices(FaceParams(identity, np.zeros(fm.num_expression)), face)
    mean = fm.vertices(fm.zero_params(), face)
    err = np.linalg.norm(multi.neutral_vertices[face] - truth, axis=1).mean()
    assert err < 0.5 * np.linalg.norm(mean - truth, axis=1).mean()
    print(f"ICT same person, 4 photos: weight MAE {', '.join(f'{m:.3f}' for m in maes)}; "
          f"neutral error {err:.2f} mm (mean face "
          f"{np.linalg.norm(mean - truth, axis=1).mean():.2f} mm)")


ANTAGONISTS = [{"jawLeft", "jawRight"}, {"mouthLeft", "mouthRight"}] + [
    {f"{a}_{s}", f"{b}_{s}"} for s in "LR" for a, b in (
        ("mouthSmile", "mouthFrown"), ("eyeBlink", "eyeWide"), ("eyeLookUp", "eyeLookDown"),
        ("eyeLookIn", "eyeLookOut"))]


def _antagonists(active: set[str]) -> bool:
    """True if ``active`` holds two opposite shapes (a smile and a frown of one mouth corner,
    jaw left and right, ...): they move the same points in opposite directions and cancel,
    so no fit can tell their amounts."""
    return any(pair <= active for pair in ANTAGONISTS)


def _jaw_views(fm, jaws: np.ndarray, yaws: np.ndarray, seed: int, chin_shift_mm: float = 0.0):
    """(identity, `ViewPoints` per frame) of an ICT face opening its jaw by ``jaws`` at head
    yaws ``yaws`` (degrees), as a detector gives them: the 51 inner points on fixed vertices,
    the 17 outline points apart (their chin, iBUG 7-9, ``chin_shift_mm`` sideways); 0.5 px
    noise."""
    from facefit.fit.multi_image import ViewPoints

    names = fm.expression_names
    lm = np.asarray(fm.base.landmark_ids["ibug68"])
    rng = np.random.default_rng(seed)
    identity = np.r_[0.8 * rng.standard_normal(10), np.zeros(fm.num_shape - 10)]
    views = []
    for jaw, yaw in zip(jaws, yaws, strict=True):
        w = np.zeros(fm.num_expression)
        w[names.index("jawOpen")] = jaw
        cam = _camera(yaw, 5, 0)
        pts, _ = cam.project(fm.vertices(FaceParams(identity, w), lm))
        pts = pts + rng.normal(0, 0.5, pts.shape)
        pts[7:10, 0] -= chin_shift_mm * cam.scale
        views.append(ViewPoints(pts[17:], lm[17:], np.ones(51), 1.0, contour_px=pts[:17]))
    return identity, views


def test_video_frames_use_the_chin_for_jaw_open(ict):
    """ICT video frames (`facefit.video.fitter.FrameFitter`) of a head turned up to 10
    degrees get a detector's view: the 51 inner points on fixed vertices and the 17 outline
    points apart. The chin of that outline (`view_blendshape_points`) joins the fit (weight
    0.5, as in single photos), and the opening and closing jaw is followed frame by frame."""
    from facefit.fit.blendshape import view_blendshape_points
    from facefit.video.fitter import FrameFitter

    fm = ict
    names = fm.expression_names
    lm = np.asarray(fm.base.landmark_ids["ibug68"])
    jaws = np.r_[np.linspace(0.0, 0.6, 6), np.linspace(0.5, 0.0, 5)]
    identity, views = _jaw_views(fm, jaws, -10.0 + 2.0 * np.arange(len(jaws)), seed=1)
    p, ids, w8 = view_blendshape_points(fm, views[0].points_px, views[0].vertex_ids,
                                        views[0].weights, views[0].contour_px)
    np.testing.assert_array_equal(ids[-3:], lm[7:10])
    np.testing.assert_array_equal(p[-3:], views[0].contour_px[7:10])
    assert len(p) == 54 and np.all(w8[-3:] == 0.5)
    fitter = FrameFitter(fm, identity)
    got = np.array([fitter.fit(v, k / 25).raw_expression for k, v in enumerate(views)])
    assert np.abs(got[:, names.index("jawOpen")] - jaws).max() < 0.1
    assert got.min() >= 0.0 and got.max() <= 1.0


def test_turned_head_video_frames_leave_out_an_offset_outline_chin(ict):
    """On a head turned past `facefit.fit.contour.OCCLUDING_SIDE_TURN_DEG` a detector's
    outline chin is the face's visible edge, not the chin's fixed vertices (MediaPipe's lay
    7-13 mm sideways on the LRS3 clip at 45-54 degrees): `view_blendshape_points` leaves
    it out there, so the jaw opening and closing is followed from the inner points (with
    the offset chin in the fit, other shapes took up the offset and the mouth's motion:
    jawOpen 0.42-0.97 for 0-0.5)."""
    from facefit.fit.blendshape import view_blendshape_points
    from facefit.fit.contour import OCCLUDING_SIDE_TURN_DEG
    from facefit.video.fitter import FrameFitter

    fm = ict
    names = fm.expression_names
    jaws = np.r_[np.linspace(0.0, 0.5, 6), np.linspace(0.4, 0.0, 5)]
    identity, views = _jaw_views(fm, jaws, 48.0 + np.arange(len(jaws)) % 3, seed=2,
                                 chin_shift_mm=12.0)
    v = views[0]
    turn = np.sin(np.radians(OCCLUDING_SIDE_TURN_DEG))
    assert len(view_blendshape_points(fm, v.points_px, v.vertex_ids, v.weights, v.contour_px,
                                      turn=0.9 * turn)[0]) == 54
    assert len(view_blendshape_points(fm, v.points_px, v.vertex_ids, v.weights, v.contour_px,
                                      turn=-1.1 * turn)[0]) == 51
    fitter = FrameFitter(fm, identity)
    got = np.array([fitter.fit(v, k / 25).raw_expression for k, v in enumerate(views)])
    jaw = got[:, names.index("jawOpen")]
    assert np.abs(jaw - jaws).max() < 0.1, np.round(jaw, 2)
    assert np.corrcoef(jaw, jaws)[0, 1] > 0.95
