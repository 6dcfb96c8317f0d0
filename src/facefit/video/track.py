"""Face tracking over video frames: the previous frame's landmarks give the next frame's
crop (as MediaPipe's face-mesh tracker does); when the landmark model's face-presence score
drops, the face is searched for again with the full detector. MediaPipe's dense points carry
the track; each frame's face can then be landmarked by facefit's network
(`facefit.detect.network`, ``--landmarks``) before it is fitted."""

from __future__ import annotations

import numpy as np

from facefit.detect.base import FaceLandmarks
from facefit.detect.mediapipe import EYE_IDS, SCHEME, MediaPipeDetector, roi_from_points
from facefit.detect.network import NetworkLandmarkDetector


class FaceTracker:
    """Track one face through a sequence of frames.

    Args:
        detector: the MediaPipe detector (its landmark model is run on tracked crops).
        min_presence: presence score under which the track is lost and the face re-detected.
        passes: extra landmark passes per tracked frame (0: one pass on the previous crop).
        landmarks: gives each frame's face its landmark source (network or `auto`); None:
            MediaPipe's points.

    Attributes:
        detections: how many frames needed the full detector (first frame, losses).
    """

    def __init__(self, detector: MediaPipeDetector | None = None, min_presence: float = 0.5,
                 passes: int = 0, landmarks: NetworkLandmarkDetector | None = None) -> None:
        self.detector = detector if detector is not None else MediaPipeDetector()
        self.landmarks = landmarks
        self.min_presence = min_presence
        self.passes = passes
        self.detections = 0
        self._prev: np.ndarray | None = None

    def reset(self) -> None:
        self._prev = None

    def update(self, frame: np.ndarray) -> tuple[FaceLandmarks | None, bool]:
        """(the face in ``frame`` or None, whether it was re-detected rather than tracked),
        landmarked by ``landmarks`` when given."""
        face, detected = self._mediapipe_face(frame)
        if face is not None and self.landmarks is not None:
            face = self.landmarks.landmark_faces(np.ascontiguousarray(frame), [face])[0]
        return face, detected

    def _mediapipe_face(self, frame: np.ndarray) -> tuple[FaceLandmarks | None, bool]:
        image = np.ascontiguousarray(frame)
        det = self.detector
        if self._prev is not None:
            p = self._prev
            roi = roi_from_points(p, p[EYE_IDS[1]], p[EYE_IDS[0]])
            with det._lock:
                pts, depth, presence = det._track(image, roi, self.passes)
            if presence >= self.min_presence:
                self._prev = pts
                box = np.concatenate([pts.min(0), pts.max(0)]).astype(np.float32)
                return FaceLandmarks(box, float(presence), pts, depth, SCHEME), False
            self._prev = None
        self.detections += 1
        faces = det.detect(image, max_faces=1)
        if not faces:
            return None, True
        self._prev = np.asarray(faces[0].points_px, np.float32)
        return faces[0], True
