"""Per-frame fit with the clip's identity fixed: pose and expression by warm-started
Gauss-Newton (`facefit.fit.multi_image.fit_views` with the shape fixed), then smoothed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facefit.fit.core.camera import camera_pose as _Pose
from facefit.fit.multi_image import ViewPoints, fit_views
from facefit.model.morphable_model import MorphableModel
from facefit.video.smooth import PoseExpressionSmoother


@dataclass(frozen=True, eq=False)
class FrameFit:
    """One frame's result: raw and smoothed pose and expression."""

    raw_pose: _Pose
    raw_expression: np.ndarray
    pose: _Pose
    expression: np.ndarray
    residual_px: float


class FrameFitter:
    """Fit frames one after another with a fixed identity.

    Args:
        model: the morphable model.
        shape: (Ks,) the identity's shape coefficients.
        smoother: temporal filter (None: no smoothing).
        iterations: Gauss-Newton steps per tracked frame (twice as many after a loss).
    """

    def __init__(self, model: MorphableModel, shape: np.ndarray,
                 smoother: PoseExpressionSmoother | None = None, iterations: int = 2) -> None:
        self.model = model
        self.shape = np.asarray(shape, np.float32)
        self.smoother = smoother
        self.iterations = iterations
        self._prev: tuple[_Pose, np.ndarray] | None = None

    def reset(self) -> None:
        """The face was lost: start the next fit and the filters afresh."""
        self._prev = None
        if self.smoother is not None:
            self.smoother.reset()

    def fit(self, view: ViewPoints, t: float) -> FrameFit:
        """Fit the landmarks of the frame at time ``t`` (seconds)."""
        init = None if self._prev is None else [self._prev]
        its = self.iterations if init is not None else 2 * self.iterations + 2
        _, exprs, poses, rms, _ = fit_views(self.model, [view], its, shape=self.shape,
                                            fix_shape=True, init=init)
        pose, expr = poses[0], exprs[0]
        self._prev = (pose, expr)
        if self.smoother is None:
            return FrameFit(pose, expr, pose, expr, rms[0])
        rot, s, tr, e = self.smoother(pose.rotation, pose.scale, pose.translation, expr, t)
        return FrameFit(pose, expr, _Pose(rot, s, tr), e.astype(np.float32), rms[0])
