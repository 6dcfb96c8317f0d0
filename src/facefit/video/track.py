"""Face tracking over video frames: the previous frame's landmarks give the next frame's
crop (as MediaPipe's face-mesh tracker does); when the landmark model's face-presence score
drops, the face is searched for again with the full detector. MediaPipe's dense points carry
the track; each frame's face can then be landmarked by facefit's network
(`facefit.detect.network`, ``--landmarks``) before it is fitted."""

from __future__ import annotations

import numpy as np

from facefit.detect.base import FaceLandmarks
from facefit.detect.mediapipe import SCHEME, MediaPipeDetector
from facefit.detect.network import NetworkLandmarkDetector

NETWORK_EVERY = 5
"""`auto` in video: while the network last saw the head more than `YAW_MARGIN` degrees inside
its threshold, it runs on every NETWORK_EVERY-th frame only (MediaPipe's points meanwhile)."""
YAW_MARGIN = 20.0


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
        self._net_yaw: float | None = None  # the network's yaw at its last check
        self._since_check = 0
        self.min_presence = min_presence
        self.passes = passes
        self.detections = 0
        self._prev: np.ndarray | None = None
        self._found_turned = False  # the tracked face was found in a turned photo

    def reset(self) -> None:
        self._prev = None
        self._net_yaw = None

    def update(self, frame: np.ndarray) -> tuple[FaceLandmarks | None, bool]:
        """(the face in ``frame`` or None, whether it was re-detected rather than tracked),
        landmarked by ``landmarks`` when given."""
        face, detected = self._mediapipe_face(frame)
        if face is None or self.landmarks is None:
            self._net_yaw = None
            return face, detected
        lm = self.landmarks
        # `auto` with a head well inside MediaPipe's range: the network checks the yaw every
        # NETWORK_EVERY frames only (a head turns less than YAW_MARGIN degrees in that time)
        frontal = (lm.source == "auto" and self._net_yaw is not None and not detected
                   and abs(self._net_yaw) < lm.yaw_threshold - YAW_MARGIN
                   and face.score >= lm.min_score)
        self._since_check += 1
        if frontal and self._since_check < NETWORK_EVERY:
            return face, detected
        image = np.ascontiguousarray(frame)
        first = lm.first_pass(image, [face])
        self._net_yaw, self._since_check = first[0].yaw_deg, 0
        return lm.landmark_faces(image, [face], first, reading=False)[0], detected

    def _mediapipe_face(self, frame: np.ndarray) -> tuple[FaceLandmarks | None, bool]:
        image = np.ascontiguousarray(frame)
        det = self.detector
        if self._prev is not None:
            pts, depth, presence = det.track(image, self._prev, self.passes)
            if presence >= self.min_presence:
                self._prev = pts
                box = np.concatenate([pts.min(0), pts.max(0)]).astype(np.float32)
                return FaceLandmarks(box, float(presence), pts, depth, SCHEME,
                                     found_turned=self._found_turned), False
            self._prev = None
        self.detections += 1
        faces = det.detect(image, max_faces=1)
        if not faces:
            return None, True
        self._prev = np.asarray(faces[0].points_px, np.float32)
        self._found_turned = faces[0].found_turned  # a tracked face keeps its detection's
        return faces[0], True
