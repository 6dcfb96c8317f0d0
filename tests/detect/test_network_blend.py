"""`auto`'s blend of MediaPipe's and the network's 68 points between `YAW_THRESHOLD` and
`NETWORK_ONLY` (`facefit.detect.network`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facefit.detect.base import FaceLandmarks
from facefit.detect.mediapipe import MediaPipeDetector
from facefit.detect.network import (
    NETWORK_ONLY,
    YAW_THRESHOLD,
    MediaPipeFace,
    NetworkFace,
    NetworkLandmarkDetector,
    blend_face,
    box68,
    first_lean_deg,
    landmark_source,
    mediapipe_weight,
    refine_boxes,
)
from facefit.fit.landmark_fit import fit_landmarks
from facefit.io.image import load_image
from facefit.model import load_default_model
from facefit.regress.predictor import RegressionPredictor, RegressionResult

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"


def _result(yaw_deg: float) -> RegressionResult:
    return RegressionResult(np.zeros(58, np.float32), np.zeros((68, 2), np.float32),
                            np.zeros((68, 3), np.float32), yaw_deg, 0.0, 0.0,
                            np.zeros(4, np.float32), 0.0, np.zeros(4, np.float32))


def _face(score: float, scheme: str = "mediapipe468") -> FaceLandmarks:
    return FaceLandmarks(np.zeros(4, np.float32), score, np.zeros((468, 2), np.float32), None,
                         scheme)


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, FaceLandmarks]:
    image = load_image(EXAMPLE)
    (face,) = MediaPipeDetector().detect(image)
    return image, face


def test_weight_falls_linearly_from_the_threshold_to_network_only() -> None:
    yaws = np.array([-95.0, -80.0, -55.0, -31.0, 0.0, 12.0, 29.9, 30.0, 42.5, 55.0, 79.0, 80.0])
    got = [mediapipe_weight(_face(0.9), _result(y), 30.0, 80.0) for y in yaws]
    expected = np.interp(np.abs(yaws), [30.0, 80.0], [1.0, 0.0])
    np.testing.assert_allclose(got, expected, atol=1e-12)
    # the defaults: MediaPipe's points alone under YAW_THRESHOLD, the network's from NETWORK_ONLY
    default = np.array([mediapipe_weight(_face(0.9), _result(y)) for y in yaws])
    assert (default[np.abs(yaws) < YAW_THRESHOLD] == 1.0).all()
    assert (default[np.abs(yaws) >= NETWORK_ONLY] == 0.0).all()
    assert mediapipe_weight(_face(0.9), _result(55.0), 40.0, 60.0) == pytest.approx(0.25)
    # a doubtful mesh or another detector's points: the network's alone
    assert mediapipe_weight(_face(0.49), _result(0.0)) == 0.0
    assert mediapipe_weight(_face(0.9, "ibug68"), _result(0.0)) == 0.0


@pytest.mark.parametrize(("lean", "want"), [(10.0, 0.0), (45.0, 45.0), (-60.0, -60.0),
                                             (-89.0, -89.0), (120.0, 120.0), (-150.0, 0.0),
                                             (178.0, 0.0)])
def test_first_lean_is_the_mesh_eye_line_within_its_span(lean: float, want: float) -> None:
    t = np.radians(lean)
    pts = np.full((468, 2), 100.0, np.float32)
    pts[33] = [100.0 - 30 * np.cos(t), 100.0 - 30 * np.sin(t)]  # the subject's right eye
    pts[263] = [100.0 + 30 * np.cos(t), 100.0 + 30 * np.sin(t)]
    face = FaceLandmarks(np.zeros(4, np.float32), 0.9, pts, None, "mediapipe468")
    assert first_lean_deg(face) == pytest.approx(want, abs=1e-4)
    other = FaceLandmarks(np.zeros(4, np.float32), 0.9, pts[:68], None, "ibug68")
    assert first_lean_deg(other) == 0.0  # no mesh: the first crop stays upright
    # a face the detector found in a turned photo: its mesh's lean is trusted up to 180
    flipped = FaceLandmarks(np.zeros(4, np.float32), 0.9, pts, None, "mediapipe468",
                            found_turned=True)
    assert first_lean_deg(flipped) == pytest.approx(lean if abs(lean) >= 30 else 0.0,
                                                    abs=1e-4)


def test_refine_boxes_keep_the_centre_and_scale_the_sides() -> None:
    boxes = np.array([[10.0, 20.0, 110.0, 220.0], [-5.0, 0.0, 5.0, 4.0]])
    got = refine_boxes(boxes, 0.9)
    np.testing.assert_allclose(got[:, :2] + got[:, 2:], boxes[:, :2] + boxes[:, 2:])
    np.testing.assert_allclose(got[:, 2:] - got[:, :2], 0.9 * (boxes[:, 2:] - boxes[:, :2]))
    np.testing.assert_allclose(refine_boxes(boxes[0], 1.0), boxes[0])


def test_blend_face_mixes_the_mediapipe_fit_and_the_network_points(photo) -> None:
    image, face = photo
    model = load_default_model()
    result = RegressionPredictor().predict_batch(image, boxes=box68(face)[None])[0]
    size = image.shape[1::-1]
    blended = blend_face(model, face, result, 0.25, size)
    assert isinstance(blended, NetworkFace) and landmark_source(blended) == "blend"
    assert blended.scheme == "ibug68_fixed" and blended.mediapipe_weight == 0.25
    mp = fit_landmarks(model, face, size).landmarks_68_3d.astype(np.float64)
    net = result.landmarks_68_3d.astype(np.float64)
    np.testing.assert_allclose(blended.points_px, 0.25 * mp[:, :2] + 0.75 * net[:, :2],
                               atol=1e-3)
    depth = 0.25 * (mp[:, 2] - mp[:, 2].mean()) + 0.75 * (net[:, 2] - net[:, 2].mean())
    np.testing.assert_allclose(blended.depth_px, depth, atol=1e-3)
    np.testing.assert_allclose(blended.box, np.r_[blended.points_px.min(0),
                                                  blended.points_px.max(0)], atol=1e-4)
    # the fit of the blend puts the model's 68 landmark vertices on the blended points
    fit = fit_landmarks(model, blended, size)
    err = np.linalg.norm(fit.landmarks_68_2d - blended.points_px, axis=1).mean()
    assert err / np.sqrt(np.prod(np.ptp(blended.points_px, axis=0))) < 0.03


def test_auto_blends_by_the_last_pass_yaw(photo) -> None:
    image, face = photo
    pred = RegressionPredictor()
    lm = NetworkLandmarkDetector(MediaPipeDetector(), "auto", yaw_threshold=0.0,
                                 network_only=90.0, predictor=pred)
    (got,) = lm.landmark_faces(image, [face])
    # as `landmark_faces`: pass 1 unmirrored from the detector's box, pass 2 from its points
    first = pred.predict_batch(image, boxes=box68(face)[None], flip=False,
                               angles_deg=[first_lean_deg(face)])[0]
    again = pred.predict_batch(image, boxes=refine_boxes(first.upright_box[None]),
                               angles_deg=[first.inplane_deg])[0]
    assert landmark_source(got) == "blend"
    assert got.mediapipe_weight == pytest.approx((90.0 - abs(again.yaw_deg)) / 90.0, abs=1e-6)
    with pytest.raises(ValueError, match="network_only"):
        NetworkLandmarkDetector(MediaPipeDetector(), "auto", yaw_threshold=50.0,
                                network_only=40.0, predictor=pred)


def test_a_turned_face_last_pass_averages_its_zooms_and_turns() -> None:
    """From `zooms_from_yaw` degrees the last pass averages the landmarks of crops at each
    of `zooms` and at the first zoom turned by each of `turns` from the face's lean (the
    first crop's pose kept); under it, one crop at `REFINE_ZOOM`."""
    from facefit.fit.camera import rotation_from_euler
    from facefit.synthetic.photos import render_turned_face

    model = load_default_model()
    rng = np.random.default_rng(4)
    x = model.vertices(rng.normal(0, 0.7, model.num_shape), np.zeros(model.num_expression))
    image, v = render_turned_face(model, x, rotation_from_euler(50.0, 0.0, 0.0), 256, 0.55,
                                  rng, background=0.45)
    truth = v[model.landmark_ids["ibug68"], :2]
    face = FaceLandmarks(np.r_[truth.min(0), truth.max(0)].astype(np.float32), 1.0,
                         truth.astype(np.float32), None, "ibug68")
    pred = RegressionPredictor()
    first = pred.predict_batch(image, boxes=box68(face)[None], flip=False)[0]
    assert abs(first.yaw_deg) > 30
    zooms, turns = (0.9, 0.8, 1.0), (-6.0, 6.0)
    crops = [(z, 0.0) for z in zooms] + [(0.9, t) for t in turns]
    each = pred.predict_batch(image, boxes=np.stack([refine_boxes(first.upright_box, z)
                                                     for z, _ in crops]),
                              angles_deg=[first.inplane_deg + t for _, t in crops])
    p = each[0].params.astype(np.float64)[None]  # the answer's pose and coefficients
    q = p.copy()
    q[:, 8:] += pred.convention_offset  # handed on in AFLW's convention (in_aflw_convention)
    move = (pred.landmarks_3d(q) - pred.landmarks_3d(p))[0, :, :2]
    assert np.abs(move).max() > 0.5  # the packaged weights carry an offset
    mean = np.mean([r.landmarks_68_px for r in each], axis=0)
    for from_yaw, turn, want in ((30.0, turns, mean + move),
                                 (30.0, (), np.mean([r.landmarks_68_px for r in each[:3]], 0)
                                  + move),
                                 (80.0, turns, each[0].landmarks_68_px + move)):
        lm = NetworkLandmarkDetector(MediaPipeDetector(), "network", predictor=pred, model=model,
                                     zooms=zooms, zooms_from_yaw=from_yaw, turns=turn,
                                     recheck=None)
        (got,) = lm.landmark_faces(image, [face])
        np.testing.assert_allclose(got.points_px, want, atol=1e-3)
        assert got.regression.yaw_deg == pytest.approx(each[0].yaw_deg, abs=1e-6)
    assert np.abs(each[3].landmarks_68_px - each[4].landmarks_68_px).max() > 0.1  # turned
    with pytest.raises(ValueError, match="zooms"):
        NetworkLandmarkDetector(MediaPipeDetector(), "network", predictor=pred, zooms=())
    with pytest.raises(ValueError, match="turns"):
        NetworkLandmarkDetector(MediaPipeDetector(), "network", predictor=pred,
                                turns=(float("nan"),))


def test_a_network_face_of_auto_keeps_its_confident_mediapipe_face(photo) -> None:
    """Past the switch `auto` gives the network's points, with the MediaPipe face they replace
    when its score is at least ``min_score`` (the 300-W points are fused with it, as for
    MediaPipe's own fit); a doubtful mesh, or the ``network`` source, keeps none."""
    from dataclasses import replace

    from facefit.fit.points300w import with_detector_points

    image, face = photo
    model = load_default_model()
    pred = RegressionPredictor()
    auto = NetworkLandmarkDetector(MediaPipeDetector(), "auto", yaw_threshold=0.0,
                                   network_only=0.0, predictor=pred, model=model)
    (got,) = auto.landmark_faces(image, [face])
    assert landmark_source(got) == "network" and got.mediapipe is face
    fit = fit_landmarks(model, got, image.shape[1::-1])
    np.testing.assert_array_equal(
        with_detector_points(model.name, fit, got).landmarks_68_2d_contour,
        with_detector_points(model.name, fit, face).landmarks_68_2d_contour)
    (doubtful,) = auto.landmark_faces(image, [replace(face, score=0.3)])
    assert landmark_source(doubtful) == "network" and doubtful.mediapipe is None
    network = NetworkLandmarkDetector(MediaPipeDetector(), "network", predictor=pred)
    assert network.landmark_faces(image, [face])[0].mediapipe is None


def test_a_blend_keeps_mediapipe_for_the_300w_points(photo) -> None:
    """`facefit.fit.points300w.with_detector_points` fuses a blend's 300-W points with its
    MediaPipe face's points, as for MediaPipe's own fit."""
    from facefit.fit.points300w import with_detector_points

    image, face = photo
    model = load_default_model()
    result = RegressionPredictor().predict_batch(image, boxes=box68(face)[None])[0]
    blended = blend_face(model, face, result, 0.8, image.shape[1::-1])
    assert blended.mediapipe is face
    fit = fit_landmarks(model, blended, image.shape[1::-1])
    fused = with_detector_points(model.name, fit, blended).landmarks_68_2d_contour
    np.testing.assert_array_equal(
        fused, with_detector_points(model.name, fit, face).landmarks_68_2d_contour)
    assert np.abs(fused - fit.landmarks_68_2d_contour).max() > 0.1  # it did move them


def test_a_refinement_starts_from_the_network_reading_of_an_auto_mediapipe_face(photo) -> None:
    """`refinement_face`: for a face whose MediaPipe points `auto` kept, the network's reading
    of it (as the ``network`` source gives it); any other face, or another detector, as is."""
    from facefit.detect.network import refinement_face

    image, face = photo
    pred = RegressionPredictor()
    auto = NetworkLandmarkDetector(MediaPipeDetector(), "auto", predictor=pred)
    (kept,) = auto.landmark_faces(image, [face])
    # a frontal face: MediaPipe's points, carrying the network's final reading
    assert isinstance(kept, MediaPipeFace) and landmark_source(kept) == "mediapipe"
    assert kept.points_px is face.points_px and kept.scheme == face.scheme
    start = refinement_face(auto, image, kept)
    assert landmark_source(start) == "network" and start.scheme != face.scheme
    want = NetworkLandmarkDetector(MediaPipeDetector(), "network", predictor=pred)
    np.testing.assert_array_equal(start.points_px, want.landmark_faces(image, [face])[0].points_px)
    # the reading it carries is that one: a face without it (e.g. tracked) is read anew
    np.testing.assert_allclose(refinement_face(auto, image, face).points_px, start.points_px,
                               atol=1e-3)
    # the same face: the network's 68 points on MediaPipe's 68 within a few percent of its size
    from facefit.fit.correspondence import mediapipe_to_ibug68

    mp68 = mediapipe_to_ibug68(np.asarray(face.points_px, np.float64))
    size = np.sqrt(np.prod(mp68.max(0) - mp68.min(0)))
    assert np.linalg.norm(start.points_px - mp68, axis=1).mean() < 0.06 * size
    assert refinement_face(auto, image, start) is start
    assert refinement_face(MediaPipeDetector(), image, face) is face
    # `refinement_faces`: the faces to refit, or None when none changes
    from facefit.detect.network import refinement_faces

    both = refinement_faces(auto, [image, image], [start, kept])
    assert both is not None and both[0] is start
    np.testing.assert_array_equal(both[1].points_px, start.points_px)
    assert refinement_faces(auto, [image], [start]) is None
    assert refinement_faces(MediaPipeDetector(), [image], [face]) is None
    with pytest.raises(ValueError, match="source"):
        auto.landmark_faces(image, [face], source="mediapipe")
