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
BLINKS = (Blink(5, 4, "both"), Blink(13, 4, "left"), Blink(21, 4, "right"),
          Blink(27, 4, "both"))
FLOOR = 0.03  # open-eye level below which a weight counts as this floor


def test_eyelid_calibration_removes_clip_offset_keeps_closure():
    """A constant offset of the eye points (in the eye's frame: it turns and scales with the
    head) is removed from the first frame on (before `EYELID_MIN_FRAMES` frames through the
    most open frame so far); a lid moving away from it keeps its motion."""
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
        want = m.copy()
        if closing:
            want[[37, 38, 43, 44]] += rot @ np.array([0.0, 3.0])
        np.testing.assert_allclose(out[36:48], want[36:48], atol=1e-6 if k < 6 else 0.2)


def test_open_eye_offsets_first_frames_take_each_eyes_most_open_frame():
    """`open_eye_offsets`: before ``min_frames`` frames, each eye's offsets come from the
    frame where that eye was least closed (a blink among the first frames, here the right
    eye in frame 1 and the left in frame 0, is not taken for the open eye, as the median of
    two or three frames would); from ``min_frames`` on, the per-point median."""
    from facefit.model.arkit import open_eye_offsets

    rng = np.random.default_rng(4)
    eye = np.repeat([0, 1], 3)
    frames = [rng.normal(0, 1, (6, 2)) for _ in range(3)]
    closure = [np.array([0.1, 0.9]), np.array([0.8, 0.2]), np.array([0.3, 0.4])]
    got = open_eye_offsets(frames, closure, eye, min_frames=5)
    np.testing.assert_array_equal(got[:3], frames[0][:3])  # eye 0 most open in frame 0
    np.testing.assert_array_equal(got[3:], frames[1][3:])  # eye 1 in frame 1
    assert not np.allclose(got, np.median(np.stack(frames), axis=0))
    more = frames + [rng.normal(0, 1, (6, 2)) for _ in range(2)]
    got = open_eye_offsets(more, closure + [np.zeros(2)] * 2, eye, min_frames=5)
    np.testing.assert_array_equal(got, np.median(np.stack(more), axis=0))


def test_first_frames_of_an_ict_clip_are_calibrated_as_the_later_ones():
    """`facefit.video.fitter.FrameFitter` on ICT frames whose eyelid points sit a constant
    offset off the model's (a detector's convention, opening the eye): every frame, the first
    four included, reads the open eye as open (eyeBlink, eyeWide near 0) and a closing one
    (frame 2, eyeBlink_L 0.7) as closing; before, frames 0-3 kept the offset."""
    from facefit.fit.core.camera import ScaledOrthographicCamera
    from facefit.fit.core.rotation import rotation_from_euler
    from facefit.fit.multi_image import ViewPoints
    from facefit.model.face_model import FaceParams
    from facefit.model.kinds import face_model
    from facefit.model.named import load_named_model
    from facefit.video.fitter import FrameFitter

    fm = face_model(load_named_model("ict"))
    fitter = FrameFitter(fm, np.zeros(fm.num_shape))
    names = fm.expression_names
    lm = np.asarray(fm.base.landmark_ids["ibug68"])
    blink = names.index("eyeBlink_L")
    rng = np.random.default_rng(5)
    got = []
    for k in range(7):
        w = np.zeros(fm.num_expression)
        w[names.index("jawOpen")] = 0.2 * (k % 2)
        w[blink] = 0.7 if k == 2 else 0.0
        cam = ScaledOrthographicCamera(rotation_from_euler(3.0 * k - 6, 4, 0), 3.0,
                                       np.array([320.0, 240.0]))
        pts, _ = cam.project(fm.vertices(FaceParams(fitter.shape, w), lm))
        pts[[37, 38, 43, 44], 1] -= 0.8 * cam.scale  # upper lids 0.8 mm higher, as detected
        pts[[40, 41, 46, 47], 1] += 0.4 * cam.scale
        pts = pts + rng.normal(0, 0.3, pts.shape)
        got.append(fitter.fit(ViewPoints(pts[17:], lm[17:], np.ones(51), 1.0,
                                         contour_px=pts[:17]), k / 25).raw_expression)
    got = np.array(got)
    eye = [i for i, n in enumerate(names) if n.startswith(("eyeBlink", "eyeWide"))]
    open_frames = [0, 1, 3, 4, 5, 6]
    assert np.abs(got[np.ix_(open_frames, eye)]).max() < 0.1, np.round(got[:, eye], 2)
    assert got[2, blink] > 0.5, np.round(got[:, eye], 2)


@pytest.mark.parametrize("model_name", ["default", "ict"])
def test_blinks_peak_on_closed_frames(tmp_path, model_name):
    """Default model (ARKit transfer) and the packaged ICT model (its own weights):
    both-eye blinks peak on the closed frames of both eyes (at least 0.1 and 3x the open-eye
    95th percentile); a one-eye blink, the subject's left (ARKit "Left": the image's right)
    or right, peaks on that eye's weight at over 3x the other eye's there. The Face Mesh
    alone closes the two eyes alike (1.25 : 1); the eyelids landmarked one eye at a time
    (`facefit.detect.eyes`, which the video pipeline gives the lid shapes) tell them apart:
    synthetic clip of ``scripts/arkit_blink_synthetic.py``, right eye only, eyeBlinkRight
    0.91 / eyeBlinkLeft 0.0 (default), 0.73 / 0.0 (ICT); before, 0.01 / 0.03."""
    pytest.importorskip("cv2")
    import imageio.v2 as iio

    from facefit.detect.eyes import eye_refiner
    from facefit.detect.mediapipe import MediaPipeDetector
    from facefit.video.pipeline import track_video
    from facefit.video.synthetic import face_crop, write_blink_clip

    det = MediaPipeDetector()
    image = face_crop(np.asarray(iio.imread(EXAMPLE))[..., :3], 224, det)
    clip = write_blink_clip(tmp_path / "blink.mp4", image, 32, BLINKS, detector=det)
    assert eye_refiner() is not None, "MediaPipe iris model missing: python -m facefit.install_data"
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
    for bl, row in zip(BLINKS, rows, strict=True):
        if bl.eyes != "both":
            other = "left" if bl.eyes == "right" else "right"
            assert row[bl.eyes]["peak"] >= 3.0 * max(row[other]["peak"], FLOOR), (bl, row)
    print(f"{model_name}: " + "; ".join(
        f"{bl.eyes} {bl.closed_frames()}: L {row['left']['peak']:.3f} R {row['right']['peak']:.3f}"
        for bl, row in zip(BLINKS, rows, strict=True)))
