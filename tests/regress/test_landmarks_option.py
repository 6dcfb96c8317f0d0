"""``facefit reconstruct --landmarks {auto,mediapipe,network}`` end to end on the example
photo, and `auto`'s per-face rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facefit import cli
from facefit.detect.mediapipe import MediaPipeDetector
from facefit.detect.network import (
    NetworkFace,
    NetworkLandmarkDetector,
    box68,
    first_lean_deg,
    landmark_source,
    refine_boxes,
)
from facefit.io.image import load_image
from facefit.reconstruct import Reconstructor

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def mediapipe() -> MediaPipeDetector:
    return MediaPipeDetector()


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, dict]:
    """The JSON of one CLI run per ``--landmarks`` choice."""
    out = {}
    for source in ("mediapipe", "network", "auto"):
        folder = tmp_path_factory.mktemp(source)
        code = cli.main(["reconstruct", str(PHOTO), "-o", str(folder), "--formats", "json",
                         "--landmarks", source, "--jobs", "1", "-q"])
        assert code == 0
        out[source] = json.loads((folder / "astronaut.json").read_text())
    return out


@pytest.mark.parametrize("source,expected", [("mediapipe", "mediapipe"),
                                             ("network", "network"),
                                             ("auto", "mediapipe")])  # a near-frontal face
def test_each_choice_gives_a_face_and_records_its_source(outputs, source, expected) -> None:
    faces = outputs[source]["faces"]
    assert len(faces) == 1
    assert faces[0]["landmark_source"] == expected


def test_network_and_mediapipe_fits_agree_on_the_photo(outputs) -> None:
    a = np.asarray(outputs["mediapipe"]["faces"][0]["landmarks_68_2d"])
    b = np.asarray(outputs["network"]["faces"][0]["landmarks_68_2d"])
    size = np.sqrt(np.prod(a.max(0) - a.min(0)))
    assert np.linalg.norm(a - b, axis=1).mean() / size < 0.05
    yaw = [outputs[s]["faces"][0]["pose"]["yaw_deg"] for s in ("mediapipe", "network")]
    assert abs(yaw[0] - yaw[1]) < 10


def test_auto_rule_follows_the_yaw_threshold(mediapipe) -> None:
    image = load_image(PHOTO)
    frontal = NetworkLandmarkDetector(mediapipe, "auto", yaw_threshold=90,
                                      network_only=90).detect(image)
    turned = NetworkLandmarkDetector(mediapipe, "auto", yaw_threshold=0,
                                     network_only=0).detect(image)
    assert [landmark_source(f) for f in frontal] == ["mediapipe"]
    assert [landmark_source(f) for f in turned] == ["network"]
    face = turned[0]
    assert isinstance(face, NetworkFace) and face.points_px.shape == (68, 2)
    assert face.scheme == "ibug68_fixed" and face.depth_px.shape == (68,)
    # the network's points lie in MediaPipe's face box
    box = frontal[0].box
    inside = (face.points_px >= box[:2] - 10) & (face.points_px <= box[2:] + 10)
    assert inside.all()


def test_network_fit_uses_every_point_on_fixed_vertices(mediapipe) -> None:
    rec = Reconstructor(detector=mediapipe, texture_size=0, landmarks="network")
    (r,) = rec.reconstruct(load_image(PHOTO))
    assert r.fit.num_landmarks >= 68
    # the fitted 68 landmark vertices follow the network's own 68 points (jaw included)
    err = np.linalg.norm(r.fit.landmarks_68_2d - r.face.points_px, axis=1)
    size = np.sqrt(np.prod(np.ptp(r.face.points_px, axis=0)))
    assert err.mean() / size < 0.03
    with pytest.raises(ValueError, match="landmarks must be"):
        Reconstructor(detector=mediapipe, landmarks="dlib")


def test_auto_decides_on_one_pass_and_reads_every_face_to_the_end(mediapipe) -> None:
    """`auto` decides on one pass; every face gets the second, cropped from the first pass's
    landmarks: a face that keeps MediaPipe's points carries that reading (`MediaPipeFace`),
    the same as the network source gives."""
    from facefit.regress.predictor import RegressionPredictor

    class Counting(RegressionPredictor):
        calls: list[int] = []

        def predict_batch(self, image_rgb, boxes=None, points=None, flip=None, angles_deg=None):
            self.calls.append(len(boxes))
            return super().predict_batch(image_rgb, boxes=boxes, points=points, flip=flip,
                                         angles_deg=angles_deg)

    image = load_image(PHOTO)
    pred = Counting()
    faces = mediapipe.detect(image)
    kept = NetworkLandmarkDetector(mediapipe, "auto", predictor=pred).landmark_faces(image, faces)
    assert [landmark_source(f) for f in kept] == ["mediapipe"] and pred.calls == [1, 1]
    assert kept[0].points_px is faces[0].points_px  # MediaPipe's 468 points, for the fit
    pred.calls.clear()
    net = NetworkLandmarkDetector(mediapipe, "network", predictor=pred).landmark_faces(image, faces)
    assert pred.calls == [1, 1]
    np.testing.assert_array_equal(kept[0].regression.landmarks_68_px, net[0].points_px)
    # pass 1 unmirrored from the detector's 68-point box, pass 2 (mirrored crop averaged)
    # from pass 1's landmarks, their box in the head's upright frame scaled by REFINE_ZOOM,
    # the crop turned by pass 1's lean
    first = pred.predict_batch(image, boxes=box68(faces[0])[None], flip=False,
                               angles_deg=[first_lean_deg(faces[0])])[0]
    again = pred.predict_batch(image, boxes=refine_boxes(first.upright_box[None]),
                               angles_deg=[first.inplane_deg])[0]
    # ... handed on in AFLW's annotation convention
    np.testing.assert_allclose(net[0].points_px,
                               pred.in_aflw_convention(again).landmarks_68_px, atol=1e-4)
    assert np.abs(net[0].points_px - again.landmarks_68_px).max() > 0.5


def test_an_upside_down_photo_is_fitted_upside_down() -> None:
    """The example turned by 180° is fitted as its face turned by 180° (roll near 180, the
    upright fit's landmarks turned with the photo), not as an upright face."""
    import facefit
    from facefit.io.image import load_image

    image = load_image(Path(__file__).resolve().parents[2] / "examples" / "astronaut.png")
    up = facefit.reconstruct(image)[0].fit
    down = facefit.reconstruct(np.ascontiguousarray(image[::-1, ::-1]))[0].fit
    assert abs(abs(down.roll_deg) - 180) < 10 and abs(up.roll_deg) < 10
    side = np.sqrt(np.prod(np.ptp(up.landmarks_68_2d, axis=0)))
    err = np.linalg.norm(down.landmarks_68_2d - (511 - up.landmarks_68_2d), axis=1).mean()
    assert err < 0.05 * side
