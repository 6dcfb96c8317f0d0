"""Landmarks from facefit's own network (`facefit.regress.predictor`) behind the detector
interface, per face or where MediaPipe's dense mesh is weak.

`NetworkLandmarkDetector` wraps a face detector (MediaPipe's, with its MTCNN profile
fallback, by default): each face it finds is cropped from its 68-point box (`box68`: the
detector's box mapped to the 68 landmarks' box, or MediaPipe's 468 points mapped to iBUG 68
for a face without one, e.g. a tracked face) and landmarked by the network (`PASSES` passes).
``source`` decides what each face keeps:

* ``"network"``: the network's 68 points (hidden ones included: the AFLW2000-3D convention)
  and their depth;
* ``"auto"``: MediaPipe's dense points when its mesh is confident (score at least
  ``min_score``) and the network finds the head within ``yaw_threshold`` degrees of frontal,
  the network's points otherwise (MediaPipe's mesh was not trained on turned heads).

Network faces are `NetworkFace` objects of scheme ``"ibug68_fixed"``: the fitters put all 68
points on their fixed model vertices, the jaw included (the network's convention), instead of
matching the jaw to the silhouette as for 300-W style ``"ibug68"`` points (with ground-truth
AFLW2000-3D points plus 2 % noise, the silhouette matching costs 5.0 % balanced NME against
1.5 % on fixed vertices).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facefit.detect.base import FaceLandmarks, LandmarkDetector
from facefit.fit.correspondence import IBUG68_FIXED, mediapipe_to_ibug68
from facefit.regress.predictor import RegressionPredictor, RegressionResult

SOURCES = ("auto", "mediapipe", "network")
# |yaw| (degrees, the network's last-pass estimate) past which `auto` uses the network's
# points; chosen on AFLW2000-3D dev (model selection only, never training) from the sweep of
# benchmarks/aflw2000.py with the shipped weights (faces under SURE_FRONTAL after the first
# pass keep MediaPipe's points, the others get a second pass with mirrored crops averaged):
# balanced NME 6.59 % at 0 (network only), 6.13 at 30, 5.99 at 45, 5.97 at 50, 5.93 at 55,
# 5.94 at 60, 6.75 at 90 (MediaPipe unless it fails).
YAW_THRESHOLD = 55.0
SURE_FRONTAL = 30.0  # first-pass |yaw| under which `auto` keeps MediaPipe's points at once
PASSES = 2  # network passes for the faces `auto` does not leave to MediaPipe after the first


@dataclass(frozen=True, eq=False)
class NetworkFace(FaceLandmarks):
    """A face landmarked by the network: 68 iBUG points in the AFLW2000-3D convention.

    Attributes:
        regression: the network's full answer (parameters, pose).
        source: ``"network"``.
    """

    regression: RegressionResult | None = None
    source: str = "network"


def landmark_source(face: FaceLandmarks) -> str:
    """``"network"``, ``"mediapipe"`` or the scheme name of another detector's face."""
    source = getattr(face, "source", None)
    if source is not None:
        return str(source)
    return "mediapipe" if face.scheme == "mediapipe468" else face.scheme


def box68(face: FaceLandmarks) -> np.ndarray:
    """The 68-landmark box of a detection (the crop the network expects): the face
    detector's box mapped to the 68 landmarks' (``face.detector_box``) when the face has one,
    else the box of its landmarks (MediaPipe's 468 mapped to iBUG 68).

    The detector's box first: MediaPipe's mesh drifts off turned heads (towards the hair or
    the background) while the detector's box stays on the face. On 737 train-aflw21 faces
    in 450 px canvases (``python benchmarks/train_crops.py``: NME on the visible points after
    two network passes) the crop from the detector's box scores 6.55 / 7.75 / 9.63 %
    (|yaw| 0-30 / 30-60 / 60+) against 6.70 / 7.70 / 10.57 % from the mesh's box.
    """
    if face.detector_box is not None:
        return np.asarray(face.detector_box, np.float64)
    pts = np.asarray(face.points_px, np.float64)
    if face.scheme == "mediapipe468":
        pts = mediapipe_to_ibug68(pts)
    elif len(pts) < 5:  # no landmarks to speak of: the detector's box
        return np.asarray(face.box, np.float64)
    return np.r_[pts.min(0), pts.max(0)]


def network_face(result: RegressionResult, score: float) -> NetworkFace:
    """A `NetworkFace` of one network answer."""
    lm = result.landmarks_68_3d
    depth = lm[:, 2] - lm[:, 2].mean()
    return NetworkFace(result.box.astype(np.float32), float(score),
                       np.ascontiguousarray(lm[:, :2], np.float32), depth.astype(np.float32),
                       IBUG68_FIXED, regression=result)


class NetworkLandmarkDetector:
    """Faces of ``detector`` with landmarks by the network (``source="network"``) or per
    face by the network or the detector (``source="auto"``, see the module docstring).

    Args:
        detector: finds the faces (MediaPipe's detector and mesh when None).
        source: ``"network"`` or ``"auto"``.
        yaw_threshold: `auto` keeps MediaPipe's points below this network |yaw| (degrees).
        min_score: `auto` keeps MediaPipe's points only at this detection score or more.
        predictor: the network (the packaged weights when None).
        passes: network passes for the faces that keep the network's points (2: a second
            crop from the first pass's landmarks).
    """

    scheme = IBUG68_FIXED

    def __init__(self, detector: LandmarkDetector | None = None, source: str = "auto",
                 yaw_threshold: float = YAW_THRESHOLD, min_score: float = 0.5,
                 predictor: RegressionPredictor | None = None, passes: int = PASSES) -> None:
        if source not in ("auto", "network"):
            raise ValueError(f"source must be 'auto' or 'network', got {source!r}")
        if detector is None:
            from facefit.detect.mediapipe import MediaPipeDetector

            detector = MediaPipeDetector()
        self.detector = detector
        self.source = source
        self.yaw_threshold = float(yaw_threshold)
        self.min_score = float(min_score)
        self.predictor = predictor if predictor is not None else RegressionPredictor()
        if passes < 1:
            raise ValueError(f"passes must be at least 1, got {passes}")
        self.passes = int(passes)

    def detect(self, image_rgb: np.ndarray, max_faces: int = 8) -> list[FaceLandmarks]:
        """Faces in an (H, W, 3) uint8 RGB image, best first, each landmarked by its source."""
        return self.landmark_faces(image_rgb, self.detector.detect(image_rgb,
                                                                   max_faces=max_faces))

    def first_pass(self, image_rgb: np.ndarray, faces: list[FaceLandmarks]
                   ) -> list[RegressionResult]:
        """The network's first pass on each face, cropped from its 68-point box (`box68`)."""
        if not faces:
            return []
        # without the mirrored crop: its yaw decides `auto` and its box crops the second pass
        return self.predictor.predict_batch(image_rgb, boxes=np.stack([box68(f) for f in faces]),
                                            flip=None if self.passes == 1 else False)

    def landmark_faces(self, image_rgb: np.ndarray, faces: list[FaceLandmarks],
                       first: list[RegressionResult] | None = None) -> list[FaceLandmarks]:
        """``faces`` found in ``image_rgb`` by another detector (or tracked), each landmarked
        by its source: the network's points or, in ``auto``, the face itself where
        `keeps_mediapipe`. Every face gets one network pass (given as ``first`` when already
        run, `first_pass`). In ``auto`` a face whose first-pass |yaw| is under `SURE_FRONTAL`
        keeps MediaPipe's points at once; every other face gets ``passes - 1`` more passes,
        each cropped from the previous pass's landmarks (3DDFA's two-step scheme), and the
        last pass's yaw decides (a first crop that missed the face under-estimates the yaw)."""
        if not faces:
            return []
        results = list(first) if first is not None else self.first_pass(image_rgb, faces)
        auto = self.source == "auto"
        idx = [i for i, (f, r) in enumerate(zip(faces, results, strict=True))
               if not (auto and keeps_mediapipe(f, r, min(SURE_FRONTAL, self.yaw_threshold),
                                                self.min_score))]
        for _ in range(self.passes - 1):
            if not idx:
                break
            again = self.predictor.predict_batch(image_rgb,
                                                 boxes=np.stack([results[i].box for i in idx]))
            for i, r in zip(idx, again, strict=True):
                results[i] = r
        use = [i in idx and not (auto and keeps_mediapipe(
            faces[i], results[i], self.yaw_threshold, self.min_score)) for i in range(len(faces))]
        return [network_face(r, f.score) if u else f
                for f, r, u in zip(faces, results, use, strict=True)]


def landmark_detector(detector: LandmarkDetector, landmarks: str, model_kind: str = "linear"
                      ) -> tuple[LandmarkDetector, str]:
    """(the detector that gives each face its ``landmarks`` source, the source in effect).

    ``"auto"`` means ``"mediapipe"`` for models that are not linear (FLAME's jaw and the
    bilinear outline are fitted from MediaPipe's dense points; the network's points and the
    yaw threshold were measured with linear models). Raises ValueError for an unknown source.
    """
    if landmarks not in SOURCES:
        raise ValueError(f"landmarks must be one of {', '.join(map(repr, SOURCES))}, got "
                         f"{landmarks!r}")
    if landmarks == "auto" and model_kind != "linear":
        landmarks = "mediapipe"
    if landmarks == "mediapipe":
        return detector, landmarks
    return NetworkLandmarkDetector(detector, source=landmarks), landmarks


def keeps_mediapipe(face: FaceLandmarks, result: RegressionResult,
                    yaw_threshold: float = YAW_THRESHOLD, min_score: float = 0.5) -> bool:
    """`auto`'s rule: keep MediaPipe's dense points of ``face`` when its score is at least
    ``min_score`` and the network's |yaw| is below ``yaw_threshold`` degrees."""
    return (face.scheme == "mediapipe468" and face.score >= min_score
            and abs(result.yaw_deg) < yaw_threshold)
