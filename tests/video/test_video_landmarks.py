"""`facefit video`'s 68 points per frame: the fit's landmark vertices, and for frames of
MediaPipe's points moved into AFLW's convention as `facefit reconstruct` moves them
(`facefit.fit.points_aflw.landmark_offset_mm`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scripted_tracker import ScriptedTracker

from facefit.detect.base import FaceLandmarks
from facefit.fit.camera import rotation_from_euler
from facefit.fit.multi_image import ViewPoints
from facefit.fit.points_aflw import landmark_offset_mm
from facefit.model import load_default_model

YAWS = np.linspace(-12.0, 12.0, 6)
SCALE, CENTRE = 2.5, np.array([320.0, 240.0])


@pytest.mark.parametrize("scheme", ["mediapipe468", "ibug68"])
def test_video_landmarks_carry_the_mediapipe_offset(tmp_path: Path, monkeypatch,
                                                    scheme: str) -> None:
    from facefit.video import pipeline

    model = load_default_model()
    ids = model.landmark_ids["ibug68"]
    mean = model.mean.astype(np.float64)
    rots = [rotation_from_euler(y, 4.0, 0.0) for y in YAWS]
    clip = []
    for r in rots:
        v = mean @ r.T
        clip.append(np.column_stack([SCALE * v[:, 0], -SCALE * v[:, 1]]) + CENTRE)

    frame_px = iter(clip)
    # the fit sees the true landmark vertices whatever the face's layout
    monkeypatch.setattr(pipeline, "view_from_face", lambda m, face, sigma: ViewPoints(
        next(frame_px)[ids], ids, np.ones(len(ids)), 0.5))
    monkeypatch.setattr("facefit.model.arkit.arkit_for_pose", lambda *a, **k: None)  # no points
    frames = (np.zeros((480, 640, 3), np.uint8) for _ in clip)
    pipeline.process_frames(frames, 25.0, model, np.zeros(model.num_shape, np.float32),
                            ScriptedTracker(np.zeros((468 if scheme == "mediapipe468" else 68, 2)),
                                            scheme, (0, 0, 640, 480)),
                            jsonl_path=tmp_path / "clip.jsonl", smooth=False)
    lines = [json.loads(s) for s in (tmp_path / "clip.jsonl").read_text().splitlines()]
    written = [np.asarray(f["landmarks_68_2d"]) for line in lines for f in line.get("faces", [])]
    assert len(written) == len(clip)
    move = landmark_offset_mm(model, FaceLandmarks(np.zeros(4), 1.0, np.zeros((468, 2)), None,
                                                   scheme))
    assert (move is None) == (scheme != "mediapipe468")
    for w, px, r in zip(written, clip, rots, strict=True):
        want = px[ids]
        if move is not None:  # the offset through the frame's pose (the fit recovers it)
            d = move @ r.T
            want = want + SCALE * np.column_stack([d[:, 0], -d[:, 1]])
        assert np.abs(w - want).max() < 0.3
    if move is not None:
        assert np.abs(written[0] - clip[0][ids]).max() > 2.0  # the move is seen
