"""MTCNN profile fallback: a rendered profile face is found, blank images are not faces,
the weight files are the ones from the facenet-pytorch wheel."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from facefit import assets
from facefit.detect.base import box_iou
from facefit.detect.mediapipe import MediaPipeDetector
from facefit.detect.mtcnn import WEIGHT_FILES, MTCNNDetector, nms, weight_dir
from facefit.fit.camera import rotation_from_euler
from facefit.model import load_default_model
from facefit.synthetic.photos import render_turned_face


def _profile(yaw: float = 80.0, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A mean face turned ``yaw`` degrees over a light grey background, and its 68-point box."""
    model = load_default_model()
    rng = np.random.default_rng(1)
    image, v = render_turned_face(model, model.mean, rotation_from_euler(yaw, 0.0, 0.0), size,
                                  0.6, rng, background=0.8)
    p = v[model.landmark_ids["ibug68"], :2]
    return image, np.concatenate([p.min(0), p.max(0)])


@pytest.fixture(scope="module")
def profile_image() -> tuple[np.ndarray, np.ndarray]:
    return _profile()


def test_weight_files_match_the_wheel_checksums() -> None:
    expected = {a.path: a.sha256 for a in assets.ASSETS if a.path.startswith("mtcnn/")}
    assert sorted(expected) == sorted(f"mtcnn/{n}" for n in WEIGHT_FILES)
    assert all(a.requirement == "facenet-pytorch==2.6.0" for a in assets.ASSETS
               if a.path.startswith("mtcnn/"))
    folder = weight_dir()
    for name in WEIGHT_FILES:
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert digest == expected[f"mtcnn/{name}"]


def test_mediapipe_alone_misses_the_profile_that_the_fallback_finds(profile_image) -> None:
    image, gt = profile_image
    assert MediaPipeDetector(profile=False).detect(image) == []
    faces = MediaPipeDetector().detect(image)
    assert len(faces) == 1
    assert box_iou(faces[0].box.astype(float), gt[None])[0] > 0.4


def test_mtcnn_finds_the_profile(profile_image) -> None:
    det = MTCNNDetector(thresholds=(0.5, 0.5, 0.3), min_face_frac=0.08, mirror_check=True)
    image, gt = profile_image
    faces = det.detect(image)
    assert faces and faces[0].score > 0.7
    assert box_iou(faces[0].box.astype(float), gt[None])[0] > 0.5
    assert faces[0].keypoints.shape == (5, 2)
    # the keypoints lie in the box
    kp, box = faces[0].keypoints, faces[0].box
    assert np.all((kp >= box[:2]) & (kp <= box[2:]))


def test_blank_and_noise_images_have_no_face() -> None:
    det = MTCNNDetector()
    rng = np.random.default_rng(0)
    blank = np.full((240, 320, 3), 127, np.uint8)
    noise = rng.integers(0, 256, (240, 320, 3)).astype(np.uint8)
    assert det.detect(blank) == [] and det.detect(noise) == []
    assert MediaPipeDetector().detect(blank) == []


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 4, 4]], float)
    scores = np.array([0.5, 0.9, 0.7, 0.8])
    # with box 1: box 0 IoU 81/119 = 0.68, box 3 IoU 9/107 = 0.08 but 9/16 = 0.56 of itself
    assert nms(boxes, scores, 0.5).tolist() == [1, 3, 2]
    assert nms(boxes, scores, 0.6, by_min=True).tolist() == [1, 3, 2]
    assert nms(boxes, scores, 0.5, by_min=True).tolist() == [1, 2]


def test_rejects_wrong_input() -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        MTCNNDetector().detect(np.zeros((10, 10), np.uint8))


def test_onnx_networks_match_the_numpy_reference() -> None:
    """The three networks run by ONNX Runtime (an ONNX graph written in memory) give
    numpy's outputs: P-Net on a non-square map (its (H', W') layout), R-Net and O-Net on
    batches (their fully connected layers' (W, H, C) weight order)."""
    det = MTCNNDetector()
    rng = np.random.default_rng(3)
    for net, shape in ((det.pnet, (1, 40, 57, 3)), (det.rnet, (5, 24, 24, 3)),
                       (det.onet, (4, 48, 48, 3))):
        assert net.session() is not None
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        fast, ref = net(x), net.forward_numpy(x)
        for a, b in zip(fast, ref, strict=True):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
