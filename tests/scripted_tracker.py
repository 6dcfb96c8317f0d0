"""A stand-in for `facefit.video.track`'s trackers: each frame's face comes from a script."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facefit.detect.base import FaceLandmarks


class ScriptedTracker:
    """Returns frame i's face with ``points[i]`` ((N, 2) px; one (N, 2) array: the same every
    frame) in ``scheme``, never a fresh detection. ``box``: the face box (x0, y0, x1, y1),
    by default the points' bounding box."""

    detections = 0

    def __init__(self, points: Sequence[np.ndarray] | np.ndarray, scheme: str = "ibug68",
                 box: Sequence[float] | None = None) -> None:
        self.points, self.scheme, self.box, self.i = points, scheme, box, 0

    def update(self, frame: np.ndarray) -> tuple[FaceLandmarks, bool]:
        px = self.points if isinstance(self.points, np.ndarray) else self.points[self.i]
        self.i += 1
        box = [*px.min(0), *px.max(0)] if self.box is None else self.box
        return FaceLandmarks(np.asarray(box, np.float32), 1.0, np.asarray(px, np.float32),
                             None, self.scheme), False
