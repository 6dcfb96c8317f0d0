"""Per-frame fit with the clip's identity fixed: pose and the kind's per-frame parameters
(expression; FLAME: also neck and jaw rotations) by warm-started Gauss-Newton
(`facefit.fit.multi_image.fit_views` with the shape fixed, through the model kind's own
vertices and Jacobian), then smoothed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facefit.fit.blendshape import fit_blendshape_points, view_blendshape_points
from facefit.fit.core.camera import CameraPose, camera_pose
from facefit.fit.multi_image import ViewPoints, fit_views
from facefit.model.face_model import FaceModel, FaceParams
from facefit.model.kinds import face_model
from facefit.model.morphable_model import MorphableModel
from facefit.video.smooth import PoseExpressionSmoother


@dataclass(frozen=True, eq=False)
class FrameFit:
    """One frame's result: raw and smoothed pose and parameters.

    Attributes:
        raw_pose, pose: the fitted and the smoothed camera.
        raw_params, params: the fitted and the smoothed parameters of the model's kind (shape
            fixed to the clip's identity; FLAME: ``joints`` holds neck and jaw rotations).
        residual_px: RMS landmark residual of the raw fit.
    """

    raw_pose: CameraPose
    raw_params: FaceParams
    pose: CameraPose
    params: FaceParams
    residual_px: float

    @property
    def expression(self) -> np.ndarray:
        """(Ke,) float32 smoothed expression coefficients."""
        return np.asarray(self.params.expression, np.float32)

    @property
    def raw_expression(self) -> np.ndarray:
        """(Ke,) float32 fitted expression coefficients."""
        return np.asarray(self.raw_params.expression, np.float32)


class FrameFitter:
    """Fit frames one after another with a fixed identity.

    Args:
        model: the morphable model (or its `FaceModel` kind); fitted as its kind
            (`facefit.model.kinds.face_model`).
        shape: (Ks,) the identity's shape coefficients.
        smoother: temporal filter (None: no smoothing); it filters the kind's per-frame
            parameter vector (expression, then joint angles in radians).
        iterations: Gauss-Newton steps per tracked frame (twice as many after a loss).
    """

    def __init__(self, model: MorphableModel | FaceModel, shape: np.ndarray,
                 smoother: PoseExpressionSmoother | None = None, iterations: int = 2) -> None:
        self.face_model = face_model(model)
        self.model = self.face_model.base
        self.shape = np.asarray(shape, np.float32)
        self.smoother = smoother
        self.iterations = iterations
        self._prev: tuple[CameraPose, np.ndarray] | None = None

    def reset(self) -> None:
        """The face was lost: start the next fit and the filters afresh."""
        self._prev = None
        if self.smoother is not None:
            self.smoother.reset()

    def warm_start_from(self, other: FrameFitter) -> None:
        """Continue from ``other``'s last frame (the identity changed while streaming)."""
        self._prev = other._prev

    def params(self, view_params: np.ndarray) -> FaceParams:
        """The kind's parameters of the identity and one frame's parameter vector."""
        fm = self.face_model
        return fm.with_vector(fm.zero_params(), np.r_[self.shape, view_params])

    def neutral(self) -> np.ndarray:
        """(V, 3) model-frame identity mesh (mm): the clip's shape, every other parameter 0."""
        fm = self.face_model
        return fm.vertices(self.params(np.zeros(fm.num_params - len(self.shape))))

    def vertices(self, params: FaceParams, ids: np.ndarray | None = None) -> np.ndarray:
        """(V, 3) or (len(ids), 3) model-frame vertices (mm) of ``params``, as the kind
        poses them (FLAME: skinned)."""
        return self.face_model.vertices(params, ids)

    def fit(self, view: ViewPoints, t: float) -> FrameFit:
        """Fit the landmarks of the frame at time ``t`` (seconds)."""
        fm = self.face_model
        init = None if self._prev is None else [self._prev]
        its = self.iterations if init is not None else 2 * self.iterations + 2
        if fm.kind == "ict":  # blendshape weights stay in their box [0, 1]
            pts, ids, w = view_blendshape_points(fm, view.points_px, view.vertex_ids,
                                                 view.weights, view.contour_px)
            bs = fit_blendshape_points(fm, pts, ids, view.sigma_px, w, identity=self.shape,
                                       init=self._prev, iterations=3 * its)
            pose, vec, rms = bs.camera, np.asarray(bs.weights, np.float64), [bs.rms_px]
        else:
            _, per_view, poses, rms, _ = fit_views(
                self.model, [view], its, shape=self.shape, fix_shape=True, init=init,
                kind=None if fm.kind == "linear" else fm)
            pose, vec = poses[0], np.asarray(per_view[0], np.float64)
        self._prev = (pose, vec)
        raw = self.params(vec)
        if self.smoother is None:
            return FrameFit(pose, raw, pose, raw, rms[0])
        rot, s, tr, v = self.smoother(pose.rotation, pose.scale, pose.translation, vec, t)
        if fm.kind == "ict":  # a filter may overshoot the weights' box
            box = fm.box()
            v = np.clip(v, box.lower[len(self.shape):], box.upper[len(self.shape):])
        return FrameFit(pose, raw, camera_pose(rot, s, tr), self.params(v), rms[0])
