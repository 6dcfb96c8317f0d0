"""Eyelids landmarked one eye at a time: MediaPipe's iris landmark model on each eye's crop.

The Face Mesh (`facefit.detect.mediapipe`) places both eyes from one face crop and moves
their lids together: on the synthetic blink clip (`facefit.video.synthetic`, one eye's lids
warped shut) the closed eye's aspect ratio fell 14 % and the open one's 10 %. MediaPipe's
iris landmark model (``iris_landmark.tflite`` of ``mediapipe==0.10.14``; Ablavatski et al.,
"Real-time Pupil Tracking from Monocular Video for Digital Puppetry", CVPR Workshops 2020)
landmarks each eye on a 64x64 crop of its own (71 eye-contour and brow points, 5 iris
points): 78 % and 0 % there. `EyeRefiner.refine` puts its 16 eyelid-contour points in place of
the mesh's (MediaPipe's iris pipeline does the same), so that a one-eye blink reaches the fit.
The crop follows MediaPipe's: centred between the eye corners, 2.3 times their distance,
rotated to level them, the subject's left eye mirrored (the model is trained on one side).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import cv2
import numpy as np

from facefit import assets
from facefit.detect.base import FaceLandmarks
from facefit.detect.mediapipe import SCHEME, DetectorUnavailable, tflite_interpreter

IRIS_FILE = "iris_landmark/iris_landmark.tflite"
"""The model's path in the data folder's ``mediapipe`` folder (`facefit.assets`)."""
CROP_PX = 64
CROP_SCALE = 2.3  # crop side over the eye-corner distance (MediaPipe's iris ROI)
EYES_MAX_TURN_DEG = 30.0
"""Head turn up to which the per-eye lids are used (past it, the Face Mesh's): the far eye
of a turned head is foreshortened and half hidden. Measured: frontal clips (the synthetic
blink clip, MEAD) good; the LRS3 clip at 45-62 degrees of yaw poor (the contour 19 % of the
eye width off the mesh's lids on open eyes, against 4-5 % frontal; eyeBlink on open frames
p95 0.11-0.14, from the mesh's lids 0.01-0.05); in between not measured."""
EYELID_CONTOURS = (
    # the subject's right eye (image left; corners 33 and 133), crop as is
    (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173),
    # the subject's left eye (corners 263 and 362), crop mirrored
    (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398),
)
"""Face Mesh indices of the model's first 16 eye-contour points (lower lid from the outer
corner, the inner corner, upper lid), per eye; corners: the first and the ninth."""


class EyeRefiner:
    """Eyelid contours from the iris landmark model.

    Args:
        model_path: the ``.tflite`` file (default: ``mediapipe/`` `IRIS_FILE` of the data
            folder, `facefit.assets`).

    Raises:
        DetectorUnavailable: the model file or the LiteRT runtime is missing.
    """

    def __init__(self, model_path: Path | None = None) -> None:
        if model_path is None:
            folder = assets.find("mediapipe", [IRIS_FILE])
            if folder is None:
                raise DetectorUnavailable(
                    f"MediaPipe iris model not found: {assets.INSTALL_HINT}")
            model_path = folder / IRIS_FILE
        self._net = tflite_interpreter(Path(model_path))
        self._in = self._net.get_input_details()[0]["index"]
        self._out = {d["name"]: d["index"] for d in self._net.get_output_details()}[
            "output_eyes_contours_and_brows"]

    def _eye(self, image: np.ndarray, start: np.ndarray, end: np.ndarray,
             mirror: bool) -> np.ndarray:
        """(16, 2) px eyelid contour of the eye whose corners are ``start`` and ``end`` (px;
        from the face's right to its left, so the crop is upright)."""
        d = end - start
        k = CROP_PX / max(float(np.hypot(*d)) * CROP_SCALE, 1e-6)
        c, s = np.cos(np.arctan2(d[1], d[0])), np.sin(np.arctan2(d[1], d[0]))
        a = np.array([[c, s], [-s, c]]) * k
        m = np.hstack([a, (CROP_PX / 2 - a @ ((start + end) / 2))[:, None]])
        # the image region under the crop (plus the pyramid's margin), halved while the
        # crop would sample it below half resolution (no aliasing)
        inv = cv2.invertAffineTransform(m)
        corners = np.array([[0, 0], [CROP_PX, 0], [0, CROP_PX], [CROP_PX, CROP_PX]], float)
        box = corners @ inv[:, :2].T + inv[:, 2]
        h, w = image.shape[:2]
        x0, y0 = np.clip(np.floor(box.min(0)).astype(int) - 4, 0, [w - 1, h - 1])
        x1, y1 = np.clip(np.ceil(box.max(0)).astype(int) + 5, [x0 + 1, y0 + 1], [w, h])
        src = image[y0:y1, x0:x1]
        m_src = m.copy()
        m_src[:, 2] += m[:, :2] @ np.array([x0, y0], float)
        while k < 0.5 and min(src.shape[:2]) > 8:
            sub = cv2.pyrDown(src)
            m_src = m_src @ np.diag([src.shape[1] / sub.shape[1], src.shape[0] / sub.shape[0],
                                     1.0])
            src, k = sub, 2.0 * k
        crop = cv2.warpAffine(src, m_src, (CROP_PX, CROP_PX), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE).astype(np.float32) / 255.0
        if mirror:
            crop = crop[:, ::-1]
        self._net.set_tensor(self._in, np.ascontiguousarray(crop)[None])
        self._net.invoke()
        p = self._net.get_tensor(self._out).reshape(-1, 3)[:16, :2].astype(np.float64)
        if mirror:
            p[:, 0] = CROP_PX - p[:, 0]
        return p @ inv[:, :2].T + inv[:, 2]

    def contours(self, image_rgb: np.ndarray, points_px: np.ndarray) -> np.ndarray:
        """(2, 16, 2) px eyelid contours (`EYELID_CONTOURS` order) of the face whose Face
        Mesh points are ``points_px`` (468, 2), in the (H, W, 3) uint8 RGB image."""
        pts = np.asarray(points_px, np.float64)
        img = np.ascontiguousarray(image_rgb)
        right, left = EYELID_CONTOURS  # corners: image left to right, 33 -> 133, 362 -> 263
        return np.stack([self._eye(img, pts[right[0]], pts[right[8]], mirror=False),
                         self._eye(img, pts[left[8]], pts[left[0]], mirror=True)])

    def refine(self, image_rgb: np.ndarray, face: FaceLandmarks) -> FaceLandmarks:
        """``face`` with its Face Mesh eyelid points (`EYELID_CONTOURS`) replaced by the iris
        model's (depth kept); a face of another landmark scheme is returned as it is."""
        if face.scheme != SCHEME or len(face.points_px) < 468:
            return face
        pts = np.array(face.points_px, np.float32)
        pts[np.array(EYELID_CONTOURS).ravel()] = self.contours(image_rgb, pts).reshape(-1, 2)
        return dataclasses.replace(face, points_px=pts)


@functools.lru_cache(maxsize=1)
def eye_refiner() -> EyeRefiner | None:
    """The shared `EyeRefiner`, or None when its model is not installed (the mesh's own
    eyelids are then used)."""
    try:
        return EyeRefiner()
    except DetectorUnavailable:
        return None
