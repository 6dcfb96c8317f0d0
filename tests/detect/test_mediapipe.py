"""MediaPipe detector on the bundled example photo and on edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facefit.detect.mediapipe import (
    _FULL,
    _SHORT,
    MediaPipeDetector,
    _Detection,
    _ssd_anchors,
    detector_box68,
)
from facefit.io.image import load_image

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def detector() -> MediaPipeDetector:
    return MediaPipeDetector()


def test_anchor_counts_match_the_models() -> None:
    assert _ssd_anchors(_SHORT).shape == (896, 2)
    assert _ssd_anchors(_FULL).shape == (2304, 2)


def test_example_photo_has_one_face_with_468_points(detector: MediaPipeDetector) -> None:
    image = load_image(EXAMPLE)
    faces = detector.detect(image)
    assert len(faces) == 1
    f = faces[0]
    assert f.points_px.shape == (468, 2) and f.depth_px.shape == (468,)
    assert f.score > 0.8
    # the astronaut's face: roughly x 180-270, y 70-180 in the 512x512 photo
    x0, y0, x1, y1 = f.box
    assert 150 < x0 < 200 and 250 < x1 < 300 and 50 < y0 < 100 and 160 < y1 < 200
    # eyes above the mouth, subject's right eye (33) on the image left
    assert f.points_px[33, 0] < f.points_px[263, 0]
    assert f.points_px[[33, 263], 1].mean() < f.points_px[13, 1]


def test_landmarks_follow_the_face_in_a_larger_rotated_image(
        detector: MediaPipeDetector) -> None:
    image = load_image(EXAMPLE)
    big = np.zeros((1500, 1200, 3), np.uint8)
    big[700:1212, 300:812] = image
    ref = detector.detect(image)[0].points_px
    f = detector.detect(big)[0]
    err = np.linalg.norm(f.points_px - (ref + [300, 700]), axis=1)
    assert np.median(err) < 3.0
    rot = np.ascontiguousarray(np.rot90(image, k=-1))  # 90° clockwise
    fr = detector.detect(rot)[0]
    expect = np.column_stack([511 - ref[:, 1], ref[:, 0]])
    assert np.median(np.linalg.norm(fr.points_px - expect, axis=1)) < 4.0


def test_an_upside_down_face_is_landmarked_the_right_way_up(
        detector: MediaPipeDetector) -> None:
    """BlazeFace reads the example turned by 180° as an upright face (score 0.65, its eye
    keypoints swapped) and the same face in the photo turned back at 0.92: the turned
    detection is taken, and the mesh follows the face, upside down in the image; so on its
    side (turned by 90°)."""
    image = load_image(EXAMPLE)
    ref = detector.detect(image)[0]
    assert not ref.found_turned
    f = detector.detect(np.ascontiguousarray(image[::-1, ::-1]))[0]
    assert f.found_turned
    assert np.median(np.linalg.norm(f.points_px - (511 - ref.points_px), axis=1)) < 4.0
    side = detector.detect(np.ascontiguousarray(np.rot90(image)))[0]  # (x, y) -> (y, 511 - x)
    expect = np.column_stack([ref.points_px[:, 1], 511 - ref.points_px[:, 0]])
    assert np.median(np.linalg.norm(side.points_px - expect, axis=1)) < 4.0


@pytest.mark.parametrize("quarters", [1, 2, 3])
def test_turned_detection_maps_box_and_keypoints_back(quarters: int) -> None:
    """A detection in the photo turned by ``quarters`` x 90° lands, mapped back, where the
    same points lie in the photo (100 x 200 px)."""
    w, h = 100, 200
    pts = np.array([[10.0, 20.0], [50.0, 80.0], [15.0, 30.0], [40.0, 35.0], [20, 60], [30, 60],
                    [12, 40], [48, 40]])
    q = pts.copy()
    for k in range(quarters):  # one anticlockwise turn: (x, y) -> (y, width - 1 - x)
        width = (w, h)[k % 2]
        q = np.column_stack([q[:, 1], width - 1 - q[:, 0]])
    d = _Detection(np.concatenate([q[:2].min(0), q[:2].max(0)]), q[2:], 0.7)
    t = d.turned_back(quarters, w, h)
    np.testing.assert_allclose(t.keypoints, pts[2:])
    np.testing.assert_allclose(t.box, [10, 20, 50, 80])
    assert t.quarters == quarters and t.score == 0.7
    assert d.turned_back(0, w, h).quarters == 0


def test_box68_shift_turns_with_the_face() -> None:
    """A face found upright in the photo turned anticlockwise by a quarter turn lies on its
    side in the photo, its chin to the left: the 68-point box is shifted that way."""
    box = np.array([100.0, 100.0, 200.0, 200.0])
    up = detector_box68(box, "blazeface_short")
    assert (up[1] + up[3]) / 2 > 150  # shifted down, towards the chin
    side = detector_box68(box, "blazeface_short", 1)
    # the turned photo's down (0, 1) is the photo's (-1, 0): the chin on the left
    assert (side[0] + side[2]) / 2 < 150 and abs((side[1] + side[3]) / 2 - 150) < 1
    flip = detector_box68(box, "blazeface_short", 2)
    assert (flip[1] + flip[3]) / 2 < 150


def test_a_small_face_beside_a_large_one_is_found_too(detector: MediaPipeDetector) -> None:
    """The short-range model alone finds only the large face; the full-range one is run on
    every photo, so the photo's small face (the whole example photo at 300 px: a face about
    60 px high) is found beside the large one (the example's face enlarged to 300 px)."""
    import cv2

    image = load_image(EXAMPLE)
    canvas = np.full((300, 600, 3), 128, np.uint8)
    canvas[:, :300] = cv2.resize(image, (300, 300), interpolation=cv2.INTER_AREA)
    canvas[:, 300:] = cv2.resize(image[40:230, 130:320], (300, 300),
                                 interpolation=cv2.INTER_CUBIC)
    assert len(detector._short(canvas)) == 1  # the case this guards: short-range sees one
    faces = detector.detect(canvas)
    assert len(faces) == 2
    small, large = sorted(faces, key=lambda f: f.box[2] - f.box[0])
    assert 90 < small.box[0] and small.box[2] < 180 and small.box[3] - small.box[1] < 90
    assert large.box[0] > 300 and large.box[3] - large.box[1] > 150
    assert small.points_px.shape == large.points_px.shape == (468, 2)


def test_blank_image_has_no_face(detector: MediaPipeDetector) -> None:
    assert detector.detect(np.full((300, 400, 3), 127, np.uint8)) == []


def test_rejects_wrong_input(detector: MediaPipeDetector) -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(np.zeros((10, 10), np.uint8))
