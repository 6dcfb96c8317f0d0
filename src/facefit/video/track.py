"""Face tracking over video frames: the previous frame's landmarks give the next frame's
crop (as MediaPipe's face-mesh tracker does); when the landmark model's face-presence score
drops, the face is searched for again with the full detector. MediaPipe's dense points carry
the track; each frame's face can then be landmarked by facefit's network
(`facefit.detect.network`, ``--landmarks``) before it is fitted."""

from __future__ import annotations

import numpy as np

from facefit.detect.base import FaceLandmarks
from facefit.detect.mediapipe import SCHEME, MediaPipeDetector
from facefit.detect.network import (
    SURE_FRONTAL,
    NetworkLandmarkDetector,
    keeps_mediapipe,
    network_face,
)

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
        self._net_box: np.ndarray | None = None  # and its 68-point box (the next crop)
        self._since_check = 0
        self.min_presence = min_presence
        self.passes = passes
        self.detections = 0
        self._prev: np.ndarray | None = None

    def reset(self) -> None:
        self._prev = None
        self._net_yaw = None
        self._net_box = None

    def update(self, frame: np.ndarray) -> tuple[FaceLandmarks | None, bool]:
        """(the face in ``frame`` or None, whether it was re-detected rather than tracked),
        landmarked by ``landmarks`` when given."""
        face, detected = self._mediapipe_face(frame)
        if face is None or self.landmarks is None:
            self._net_yaw = self._net_box = None
            return face, detected
        lm = self.landmarks
        # `auto` with a head well inside MediaPipe's range: the network checks the yaw every
        # NETWORK_EVERY frames only (a head turns less than YAW_MARGIN degrees in that time)
        frontal = (lm.source == "auto" and self._net_yaw is not None and not detected
                   and abs(self._net_yaw) < lm.yaw_threshold - YAW_MARGIN
                   and face.score >= lm.min_score)
        self._since_check += 1
        if frontal and self._since_check < NETWORK_EVERY:
            self._net_box = None  # stale by the next check: that one crops from MediaPipe's
            return face, detected
        return self._network_face(np.ascontiguousarray(frame), face, detected), detected

    def _network_face(self, image: np.ndarray, face: FaceLandmarks, detected: bool
                      ) -> FaceLandmarks:
        """``face`` landmarked by the network (or kept, in ``auto``). A re-detected face gets
        the photo scheme (as `NetworkLandmarkDetector.landmark_faces`, whose last result is
        kept here: a first pass cropped from MediaPipe's box, more passes unless surely
        frontal), and so does the first check after frames left to MediaPipe; a face
        tracked from a checked frame gets one pass cropped from the previous frame's network
        box (the crop a second pass would have; 3DDFA_V2's video scheme, Guo et al., ECCV
        2020), mirrored crops averaged unless the head was surely frontal."""
        lm = self.landmarks
        auto = lm.source == "auto"
        sure = min(SURE_FRONTAL, lm.yaw_threshold)
        if self._net_box is not None and not detected:
            frontal = auto and self._net_yaw is not None and abs(self._net_yaw) < sure
            r = lm.predictor.predict_batch(image, boxes=self._net_box[None],
                                           flip=False if frontal or lm.passes == 1 else None)[0]
        else:
            r = lm.first_pass(image, [face])[0]
            if not (auto and keeps_mediapipe(face, r, sure, lm.min_score)):
                for _ in range(lm.passes - 1):
                    r = lm.predictor.predict_batch(image, boxes=r.box[None])[0]
        self._net_box, self._net_yaw, self._since_check = r.box, r.yaw_deg, 0
        if auto and keeps_mediapipe(face, r, lm.yaw_threshold, lm.min_score):
            return face
        return network_face(r, face.score)

    def _mediapipe_face(self, frame: np.ndarray) -> tuple[FaceLandmarks | None, bool]:
        image = np.ascontiguousarray(frame)
        det = self.detector
        if self._prev is not None:
            pts, depth, presence = det.track(image, self._prev, self.passes)
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
