"""End to end: a synthetic clip of a real photo with eyelids closed at known frames
(`facefit.video.synthetic`) through ``facefit video`` (MediaPipe tracking, fit, ARKit
solve): ``eyeBlinkLeft/Right`` peak on the closed frames and stay low elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facefit.video.synthetic import Blink, blink_scores

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"
BLINKS = (Blink(5, 4, "both"), Blink(14, 4, "left"), Blink(23, 5, "both"))
FLOOR = 0.03  # open-eye level below which a weight counts as this floor


def test_eyelid_calibration_removes_clip_offset_keeps_closure():
    """A constant offset of the eye points (in the eye's frame: it turns and scales with the
    head) is removed once enough frames are in; a lid moving away from it keeps its motion."""
    from facefit.model.arkit import EyelidCalibration

    rng = np.random.default_rng(0)
    model = rng.uniform(100, 200, (68, 2))
    model[36:42] = [[100, 100], [105, 97], [111, 97], [116, 100], [111, 103], [105, 103]]
    model[42:48] = model[36:42] + [40, 0]
    offset = np.array([0.05, -0.08])  # along, across the corner line, x eye width
    cal = EyelidCalibration()
    for k in range(7):
        ang = np.deg2rad(3.0 * k)
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        m = model @ rot.T
        pts = m.copy()
        for a, b, eye in ((36, 39, slice(36, 42)), (42, 45, slice(42, 48))):
            u = (m[b] - m[a]) / np.linalg.norm(m[b] - m[a])
            v = np.array([-u[1], u[0]])
            pts[eye] += (offset[0] * u + offset[1] * v) * np.linalg.norm(m[b] - m[a])
        closing = k == 6
        if closing:  # the upper lids come down 3 px along the head's vertical
            pts[[37, 38, 43, 44]] += rot @ np.array([0.0, 3.0])
        out = cal.correct(pts, m)
        assert np.allclose(out[:36], pts[:36]) and np.allclose(out[48:], pts[48:])
        if k < cal.min_frames - 1:  # too few frames: as detected
            np.testing.assert_allclose(out, pts)
            continue
        want = m.copy()
        if closing:
            want[[37, 38, 43, 44]] += rot @ np.array([0.0, 3.0])
        np.testing.assert_allclose(out[36:48], want[36:48], atol=1e-6 if k < 6 else 0.2)


@pytest.mark.parametrize("model_name", ["default", "ict"])
def test_blinks_peak_on_closed_frames(tmp_path, model_name):
    """Default model (ARKit transfer) and the packaged ICT model (its own weights):
    both-eye blinks peak on the closed frames of both eyes (at least 0.1 and 3x the open-eye
    95th percentile); the subject's-left-eye blink peaks on the left weight (ARKit "Left":
    the image's right), 1.3x over the right one (MediaPipe's own closure of the two eyes
    there is only ~1.25 : 1: it closes the other eye's points too)."""
    pytest.importorskip("cv2")
    import imageio.v2 as iio

    from facefit.detect.mediapipe import MediaPipeDetector
    from facefit.video.pipeline import track_video
    from facefit.video.synthetic import face_crop, write_blink_clip

    det = MediaPipeDetector()
    image = face_crop(np.asarray(iio.imread(EXAMPLE))[..., :3], 224, det)
    clip = write_blink_clip(tmp_path / "blink.mp4", image, 32, BLINKS, detector=det)
    model = None
    if model_name != "default":
        from facefit.model.named import load_named_model

        model = load_named_model(model_name)
    _, files = track_video(clip, tmp_path / "out", model, overlay=False, glb=False,
                           html=False)
    frames = [json.loads(x) for x in files.jsonl.read_text().splitlines()][1:]
    assert len(frames) == 32 and all(f["faces"] for f in frames)
    w = {k: np.array([f["faces"][0]["arkit_blendshapes"][k] for f in frames])
         for k in ("eyeBlinkLeft", "eyeBlinkRight")}
    rows = blink_scores(BLINKS, w["eyeBlinkLeft"], w["eyeBlinkRight"])
    for bl, row in zip(BLINKS, rows, strict=True):
        for side in bl.sides():
            r = row[side]
            assert r["on_closed"], (bl, side, r)
            assert r["peak"] >= max(0.1, 3.0 * max(r["open_p95"], FLOOR)), (bl, side, r)
    left = rows[1]
    assert left["left"]["peak"] >= 1.3 * max(left["right"]["peak"], FLOOR), left
