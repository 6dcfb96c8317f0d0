"""The detector's box carried with each face (mapped to the 68-landmark box), the network's crop
taken from it, and BlazeFace boxes that the mesh doubts confirmed by MTCNN's O-Net."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facefit.detect.base import FaceLandmarks, box_iou
from facefit.detect.mediapipe import BOX68_FROM, MediaPipeDetector, detector_box68
from facefit.detect.network import box68
from facefit.fit.camera import rotation_from_euler
from facefit.fit.correspondence import mediapipe_to_ibug68
from facefit.io.image import load_image
from facefit.model import load_default_model
from facefit.synthetic.photos import render_turned_face

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def detector() -> MediaPipeDetector:
    return MediaPipeDetector()


@pytest.fixture(scope="module")
def profile() -> tuple[np.ndarray, np.ndarray]:
    """A mean face turned 80 degrees on light grey, and its 68-point box."""
    model = load_default_model()
    image, v = render_turned_face(model, model.mean, rotation_from_euler(80.0, 0.0, 0.0), 256,
                                  0.6, np.random.default_rng(1), background=0.8)
    p = v[model.landmark_ids["ibug68"], :2]
    return image, np.concatenate([p.min(0), p.max(0)])


@pytest.mark.parametrize("detector_name", sorted(BOX68_FROM))
def test_box68_mapping_moves_and_scales_by_the_box_side(detector_name) -> None:
    box = np.array([100.0, 50.0, 200.0, 194.0])  # 100 x 144: side sqrt(w h) = 120
    dx, dy, w, h = BOX68_FROM[detector_name]
    out = detector_box68(box, detector_name).astype(np.float64)
    np.testing.assert_allclose((out[:2] + out[2:]) / 2, [150 + 120 * dx, 122 + 120 * dy],
                               atol=1e-3)
    np.testing.assert_allclose(out[2:] - out[:2], [120 * w, 120 * h], atol=1e-3)


def test_example_face_carries_a_detector_box_on_its_landmarks(detector) -> None:
    face = detector.detect(load_image(EXAMPLE))[0]
    assert face.detector_box is not None and face.detector_box.shape == (4,)
    mesh68 = mediapipe_to_ibug68(face.points_px)
    iou = box_iou(face.detector_box, np.r_[mesh68.min(0), mesh68.max(0)])
    assert iou > 0.7  # the calibration lands the detector's box on the 68 landmarks' box


def test_network_crop_prefers_the_detector_box() -> None:
    pts = np.array([[10.0, 20.0], [50.0, 80.0], [30.0, 40.0], [20.0, 60.0], [40.0, 30.0]])
    face = FaceLandmarks(np.zeros(4, np.float32), 0.9, pts.astype(np.float32), None, "ibug68")
    np.testing.assert_allclose(box68(face), [10, 20, 50, 80])
    det = np.array([5.0, 15.0, 55.0, 85.0], np.float32)
    with_box = FaceLandmarks(face.box, 0.9, face.points_px, None, "ibug68", det)
    np.testing.assert_allclose(box68(with_box), det)


def test_profile_found_by_mtcnn_has_its_box(detector, profile) -> None:
    image, gt = profile
    faces = detector.detect(image)
    assert len(faces) == 1 and faces[0].detector_box is not None
    assert box_iou(faces[0].detector_box.astype(float), gt) > 0.5


def test_doubted_blazeface_box_kept_only_when_onet_confirms(detector, profile) -> None:
    image, gt = profile
    box = gt.astype(np.float32)
    doubted = FaceLandmarks(box, 0.1, np.zeros((468, 2), np.float32), None, "mediapipe468", box)
    kept = detector._confirmed(image, [(0, doubted)], box[None], [])
    assert kept == [doubted]
    # the same face already found: not a second face
    assert detector._confirmed(image, [(0, doubted)], box[None], [doubted]) == []
    # grey background, no face: O-Net does not confirm it
    blank = np.full_like(image, 204)
    assert detector._confirmed(blank, [(0, doubted)], box[None], []) == []


def test_box_iou_one_against_many_and_row_with_row():
    a = np.array([0.0, 0.0, 2.0, 2.0])
    b = np.array([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    np.testing.assert_allclose(box_iou(a, b), [1 / 7, 1.0, 0.0])  # overlap 1, union 4 + 4 - 1
    pairs = np.stack([a, b[2], b[0]])
    np.testing.assert_allclose(box_iou(pairs, b), [1 / 7, 0.0, 0.0])
