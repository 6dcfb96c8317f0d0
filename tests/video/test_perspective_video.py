"""Video with a pinhole camera (``facefit video --camera perspective``): a close-up clip,
such as a webcam's, fitted frame by frame with its focal length held."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scripted_tracker import ScriptedTracker

from facefit.fit.camera import Camera, rotation_from_euler
from facefit.fit.core.camera import PerspectiveCamera
from facefit.fit.multi_image import ViewPoints
from facefit.model import load_default_model
from facefit.video.fitter import FrameFitter
from facefit.video.smooth import PoseExpressionSmoother

FOCAL = 300.0  # px: the model origin 30 cm from the lens at 1 px/mm, the nose tip ~17 cm
SIZE = (320, 240)
CENTRE = np.array([160.0, 120.0])
YAWS = np.linspace(-20.0, 20.0, 8)


@pytest.fixture(scope="module")
def model():
    return load_default_model()


def close_up(model, rng: np.random.Generator, frames: int = len(YAWS)
             ) -> tuple[np.ndarray, list[PerspectiveCamera], list[np.ndarray]]:
    """(shape, true pinhole cameras, (68, 2) px landmark projections) of a talking head
    turning from -20 to 20 degrees of yaw, seen from 30 cm."""
    shape = rng.normal(0, 0.8, model.num_shape).astype(np.float32)
    lm = np.asarray(model.landmark_ids["ibug68"])
    cams, pts = [], []
    for i in range(frames):
        expr = np.zeros(model.num_expression, np.float32)
        expr[0] = 0.8 * np.sin(i)
        cam = PerspectiveCamera.at_scale(rotation_from_euler(YAWS[i], 5.0, 2.0), 1.0,
                                         CENTRE + [3.0 * i, -i], FOCAL, CENTRE)
        cams.append(cam)
        pts.append(cam.project(model.vertices(shape, expr, ids=lm))[0])
    return shape, cams, pts


def view(model, px: np.ndarray) -> ViewPoints:
    lm = np.asarray(model.landmark_ids["ibug68"])
    return ViewPoints(px, lm, np.ones(len(lm)), 0.5)


def test_frame_fitter_holds_the_focal_length(model) -> None:
    """Each frame's fit is a pinhole camera of the given focal length and principal point
    that puts the landmarks where they are seen; the scaled orthographic fitter cannot (its
    residual is what the close-up's perspective leaves), and the smoothed pose is the same
    pinhole camera moved."""
    shape, cams, pts = close_up(model, np.random.default_rng(0))
    lens = Camera("perspective", FOCAL, tuple(CENTRE))
    persp = FrameFitter(model, shape, camera=lens)
    ortho = FrameFitter(model, shape)
    smoothed = FrameFitter(model, shape, PoseExpressionSmoother(), camera=lens)
    for i, (cam, px) in enumerate(zip(cams, pts, strict=True)):
        fit = persp.fit(view(model, px), i / 25)
        raw = fit.raw_pose
        assert isinstance(raw, PerspectiveCamera) and raw.focal == FOCAL
        np.testing.assert_array_equal(raw.principal, CENTRE)
        assert fit.residual_px < 0.05
        angle = np.degrees(np.arccos(np.clip((np.trace(raw.rotation.T @ cam.rotation) - 1) / 2,
                                             -1, 1)))
        assert angle < 0.5
        assert raw.translation[2] == pytest.approx(cam.translation[2], rel=0.01)
        assert ortho.fit(view(model, px), i / 25).residual_px > 10 * fit.residual_px + 0.3
        sm = smoothed.fit(view(model, px), i / 25).pose
        assert isinstance(sm, PerspectiveCamera) and sm.focal == FOCAL
        assert abs(sm.origin_scale()[0] - 1.0) < 0.05
    with pytest.raises(ValueError, match="focal_px"):
        FrameFitter(model, shape, camera=Camera("perspective"))


def test_process_frames_writes_pinhole_poses(model, tmp_path: Path, monkeypatch) -> None:
    """The JSON lines carry each frame's pinhole camera (3D translation in mm, focal
    length) and landmarks on the observed ones; the overlay mesh is drawn over the face;
    the identity estimated while streaming uses the same camera."""
    from facefit.video import pipeline

    shape, cams, pts = close_up(model, np.random.default_rng(1))

    monkeypatch.setattr(pipeline, "view_from_face",
                        lambda model, face, sigma: view(model, face.points_px))
    monkeypatch.setattr(pipeline, "landmark_offset_mm", lambda model, face: None)
    lens = Camera("perspective", FOCAL, tuple(CENTRE))
    for identity in (shape, None):  # the clip's identity, then a running one
        frames = [np.full((SIZE[1], SIZE[0], 3), 40, np.uint8) for _ in pts]
        drawn: list[np.ndarray] = []
        out = tmp_path / ("clip" if identity is not None else "running")
        stats = pipeline.process_frames(
            iter(frames), 25.0, model, identity, ScriptedTracker(pts),
            jsonl_path=out.with_suffix(".jsonl"),
            overlay=drawn.append, glb_path=out.with_suffix(".glb"), smooth=False,
            camera=lens)
        assert stats.faces == len(pts)
        lines = [json.loads(s) for s in out.with_suffix(".jsonl").read_text().splitlines()]
        faces = [r["faces"][0] for r in lines[1:]]
        for f, px, cam in zip(faces, pts, cams, strict=True):
            assert f["pose"]["camera"] == {"kind": "perspective", "focal_px": FOCAL,
                                           "principal_point_px": list(CENTRE)}
            assert len(f["pose"]["translation"]) == 3
            assert f["pose"]["translation"][2] == pytest.approx(cam.translation[2], rel=0.05)
            assert np.abs(np.asarray(f["landmarks_68_2d"]) - px).max() < (
                0.1 if identity is not None else 1.0)
        # the overlay covers the face's box (shaded grey over the dark frame), not the corners
        box = np.asarray(faces[-1]["box"]).round().astype(int)
        face = drawn[-1][box[1]:box[3], box[0]:box[2]]
        assert face.mean() > 60 and drawn[-1][:10, :10].mean() == pytest.approx(40, abs=1)
        assert out.with_suffix(".glb").stat().st_size > 1000
