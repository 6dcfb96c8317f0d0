"""The small interface every face/landmark backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, eq=False)
class FaceLandmarks:
    """One detected face with its landmarks, in pixels of the input image.

    Attributes:
        box: (4,) float32 [x0, y0, x1, y1] in pixels, origin top-left, y down.
        score: detection (or landmark presence) confidence in [0, 1].
        points_px: (N, 2) float32 landmark positions in pixels.
        depth_px: (N,) float32 relative depth of each landmark, pixels, larger = farther,
            or None when the backend gives none.
        scheme: name of the landmark layout, e.g. ``"mediapipe468"`` or ``"ibug68"``; the
            fitter looks its model correspondence up by this name.
        detector_box: (4,) float32 the face detector's box, before any landmarks, mapped to
            the box of the 68 iBUG landmarks (see `facefit.detect.mediapipe.BOX68_FROM`), or
            None: where a crop goes when the landmarks themselves may have drifted.
        found_turned: the detector took this face from the photo turned by 90°, 180° or
            270°, where it scored clearly higher (a face on its side or upside down): its
            landmarks' lean past 90° is then evidence, not a drifted mesh.
    """

    box: np.ndarray
    score: float
    points_px: np.ndarray
    depth_px: np.ndarray | None
    scheme: str
    detector_box: np.ndarray | None = None
    found_turned: bool = False


def face_outline(landmarks_68: np.ndarray, forehead: float = 0.7) -> np.ndarray:
    """(27, 2) float64 outline of the face region of 68 iBUG landmarks (pixels): the jaw line
    (points 0-16), then the brows from the left end back (26 to 17) raised to the forehead
    by ``forehead`` times the nose bridge's length (point 30 to 27). Its convex hull is the
    region the photometric fit's skin mask and the texture's fade both start from."""
    p = np.asarray(landmarks_68, np.float64)
    return np.concatenate([p[:17], p[26:16:-1] + (p[27] - p[30]) * forehead])


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one [x0, y0, x1, y1] box (4,) with each of (N, 4) ``boxes``
    (or one (4,) box): (N,) float64, or a 0-d array for one box; 0 for disjoint or empty boxes.
    ``box`` (N, 4) pairs row with row."""
    a = np.asarray(box, np.float64)
    b = np.asarray(boxes, np.float64)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = ((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
             + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter)
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


class LandmarkDetector(Protocol):
    """Finds faces in an RGB image and returns their landmarks."""

    scheme: str

    def detect(self, image_rgb: np.ndarray, max_faces: int = 8) -> list[FaceLandmarks]:
        """Faces in an (H, W, 3) uint8 RGB image, best first."""
        ...
