"""`FaceTracker` with a landmark source: the network runs on every frame for ``network``, and
for ``auto`` on a frontal head only every `NETWORK_EVERY`-th frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefit.detect.mediapipe import MediaPipeDetector
from facefit.detect.network import NetworkLandmarkDetector, landmark_source
from facefit.regress.predictor import RegressionPredictor
from facefit.video.track import NETWORK_EVERY, FaceTracker

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"


class Counting(RegressionPredictor):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def predict_batch(self, image_rgb, boxes=None, points=None, flip=None):
        self.calls += 1
        return super().predict_batch(image_rgb, boxes=boxes, points=points, flip=flip)


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="example photo missing")
@pytest.mark.parametrize("source", ["auto", "network"])
def test_network_calls_per_frame(source: str) -> None:
    img = np.asarray(Image.open(EXAMPLE).convert("RGB").resize((256, 256)))
    frames = [np.roll(img, (i, 2 * i), axis=(0, 1)) for i in range(2 * NETWORK_EVERY + 1)]
    pred = Counting()
    mp = MediaPipeDetector()
    tracker = FaceTracker(mp, landmarks=NetworkLandmarkDetector(mp, source, predictor=pred))
    sources = [landmark_source(tracker.update(f)[0]) for f in frames]
    if source == "network":  # two passes on the first frame, then one from the last box
        assert sources == ["network"] * len(frames) and pred.calls == len(frames) + 1
    else:  # a frontal face: checked on the first frame, then every NETWORK_EVERY-th
        assert sources == ["mediapipe"] * len(frames)
        assert pred.calls == 1 + (len(frames) - 1) // NETWORK_EVERY


class Recording(Counting):
    def __init__(self) -> None:
        super().__init__()
        self.boxes: list[np.ndarray] = []
        self.results: list = []

    def predict_batch(self, image_rgb, boxes=None, points=None, flip=None):
        self.boxes.append(np.asarray(boxes, np.float32).reshape(-1, 4)[0])
        self.results.append(super().predict_batch(image_rgb, boxes, points, flip))
        return self.results[-1]


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="example photo missing")
def test_tracked_frames_crop_from_the_previous_network_box() -> None:
    img = np.asarray(Image.open(EXAMPLE).convert("RGB").resize((256, 256)))
    frames = [np.roll(img, (i, 2 * i), axis=(0, 1)) for i in range(4)]
    pred = Recording()
    mp = MediaPipeDetector()
    tracker = FaceTracker(mp, landmarks=NetworkLandmarkDetector(mp, "network", predictor=pred))
    faces = [tracker.update(f)[0] for f in frames]
    assert pred.calls == 2 + 3
    # frame 0: first pass from MediaPipe's box, second from the first pass's; then each
    # frame's one pass is cropped from the box of the previous frame's last pass
    np.testing.assert_array_equal(pred.boxes[1], pred.results[0][0].box)
    for k in range(2, 5):
        np.testing.assert_array_equal(pred.boxes[k], pred.results[k - 1][0].box)
    for face, res in zip(faces[1:], pred.results[2:], strict=True):
        np.testing.assert_array_equal(face.points_px, res[0].landmarks_68_3d[:, :2])
    tracker.reset()  # a new track starts from MediaPipe's box again
    tracker.update(frames[0])
    assert pred.calls == 7
