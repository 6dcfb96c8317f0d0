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

    def predict_batch(self, image_rgb, boxes=None, points=None, flip=None, angles_deg=None):
        self.calls += 1
        return super().predict_batch(image_rgb, boxes=boxes, points=points, flip=flip,
                                     angles_deg=angles_deg)


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="example photo missing")
@pytest.mark.parametrize("source", ["auto", "network"])
def test_network_calls_per_frame(source: str) -> None:
    img = np.asarray(Image.open(EXAMPLE).convert("RGB").resize((256, 256)))
    frames = [np.roll(img, (i, 2 * i), axis=(0, 1)) for i in range(2 * NETWORK_EVERY + 1)]
    pred = Counting()
    mp = MediaPipeDetector()
    tracker = FaceTracker(mp, landmarks=NetworkLandmarkDetector(mp, source, predictor=pred))
    sources = [landmark_source(tracker.update(f)[0]) for f in frames]
    if source == "network":
        assert sources == ["network"] * len(frames) and pred.calls == 2 * len(frames)
    else:  # a frontal face: checked on the first frame, then every NETWORK_EVERY-th
        assert sources == ["mediapipe"] * len(frames)
        assert pred.calls == 1 + (len(frames) - 1) // NETWORK_EVERY


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="example photo missing")
def test_an_upside_down_face_stays_upside_down_while_tracked() -> None:
    """The detection's `found_turned` carries over to the tracked frames, so the network's
    crops keep turning with the face (an upside-down clip once diverged to NaN poses)."""
    img = np.asarray(Image.open(EXAMPLE).convert("RGB"))[::-1, ::-1]
    frames = [np.ascontiguousarray(np.roll(img, (i, 2 * i), axis=(0, 1))) for i in range(3)]
    mp = MediaPipeDetector()
    tracker = FaceTracker(mp, landmarks=NetworkLandmarkDetector(mp, "network"))
    out = [tracker.update(f) for f in frames]
    assert [detected for _, detected in out] == [True, False, False]
    up = NetworkLandmarkDetector(mp, "network").detect(np.asarray(
        Image.open(EXAMPLE).convert("RGB")))[0].points_px
    for i, (face, _) in enumerate(out):  # each frame's 68 points: the upright ones turned
        expect = np.array([511.0, 511.0]) - up + [2 * i, i]
        assert np.median(np.linalg.norm(face.points_px - expect, axis=1)) < 6.0
