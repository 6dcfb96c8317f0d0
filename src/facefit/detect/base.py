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
    """

    box: np.ndarray
    score: float
    points_px: np.ndarray
    depth_px: np.ndarray | None
    scheme: str


class LandmarkDetector(Protocol):
    """Finds faces in an RGB image and returns their landmarks."""

    scheme: str

    def detect(self, image_rgb: np.ndarray, max_faces: int = 8) -> list[FaceLandmarks]:
        """Faces in an (H, W, 3) uint8 RGB image, best first."""
        ...
