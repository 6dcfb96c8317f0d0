"""Per-eye eyelid contours (`facefit.detect.eyes`, MediaPipe's iris landmark model) on the
example photo and on the same photo with one eye's lids warped shut
(`facefit.video.synthetic.eye_warp_maps`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facefit.detect.base import FaceLandmarks
from facefit.detect.eyes import EYELID_CONTOURS, eye_refiner
from facefit.detect.mediapipe import MediaPipeDetector
from facefit.io.image import load_image

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"
LIDS = {"right": (33, 133, ((159, 145), (158, 153), (160, 144))),
        "left": (362, 263, ((386, 374), (385, 380), (387, 373)))}


@pytest.fixture(scope="module")
def refiner():
    ref = eye_refiner()
    if ref is None:
        pytest.skip("MediaPipe iris model not installed (python -m facefit.install_data)")
    return ref


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, FaceLandmarks]:
    image = load_image(EXAMPLE)
    return image, MediaPipeDetector().detect(image)[0]


def _ear(points: np.ndarray, side: str) -> float:
    """Eye aspect ratio (Soukupova & Cech 2016) of one eye from 468 points."""
    a, b, pairs = LIDS[side]
    gaps = [np.linalg.norm(points[i] - points[j]) for i, j in pairs]
    return float(np.mean(gaps) / np.linalg.norm(points[a] - points[b]))


def test_contours_lie_on_the_mesh_eyelids_and_replace_only_them(refiner, photo):
    """On the open eyes of the photo the model's 16 contour points of each eye land within
    a tenth of the eye's width of the mesh's own eyelid points (same order: corners first
    and ninth), and `refine` moves those 32 points only."""
    image, face = photo
    got = refiner.contours(image, face.points_px)
    assert got.shape == (2, 16, 2)
    for side, ids in enumerate(EYELID_CONTOURS):
        mesh = face.points_px[list(ids)].astype(np.float64)
        width = np.linalg.norm(mesh[0] - mesh[8])
        err = np.linalg.norm(got[side] - mesh, axis=1) / width
        assert err.max() < 0.15 and err.mean() < 0.08, (side, np.round(err, 3))
    out = refiner.refine(image, face)
    moved = np.flatnonzero(np.any(out.points_px != face.points_px, axis=1))
    assert set(moved) <= set(np.ravel(EYELID_CONTOURS)) and len(moved) > 20
    np.testing.assert_array_equal(out.depth_px, face.depth_px)
    other = FaceLandmarks(face.box, face.score, face.points_px[:68], None, "ibug68")
    assert refiner.refine(image, other) is other


@pytest.mark.parametrize("side", ["right", "left"])
def test_one_closed_eye_closes_only_that_eyes_contour(refiner, photo, side):
    """One eye's lids warped shut: the refined contour of that eye closes (aspect ratio down
    by over half), the other eye's stays open (within 10 %); the Face Mesh's own lids close
    both eyes alike (its two aspect ratios fall within a factor 2 of each other)."""
    import cv2

    from facefit.video.synthetic import eye_warp_maps

    image, face = photo
    det = MediaPipeDetector()
    mx, my = eye_warp_maps(image.shape[:2], face.points_px.astype(np.float64), {side: 1.0})
    shut = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mesh = det.detect(shut)[0]
    other = "left" if side == "right" else "right"
    before = refiner.refine(image, face).points_px
    after = refiner.refine(shut, mesh).points_px
    drop = {s: 1.0 - _ear(after, s) / _ear(before, s) for s in LIDS}
    assert drop[side] > 0.5 and abs(drop[other]) < 0.1, drop
    mesh_drop = {s: 1.0 - _ear(mesh.points_px, s) / _ear(face.points_px, s) for s in LIDS}
    print(f"{side} eye shut, aspect ratio drop right/left: refined {drop['right']:.3f} / "
          f"{drop['left']:.3f}, Face Mesh {mesh_drop['right']:.3f} / {mesh_drop['left']:.3f}")
    assert mesh_drop[other] > 0.5 * mesh_drop[side], mesh_drop
