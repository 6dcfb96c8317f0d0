"""Per-frame fit with the clip's identity fixed: pose and the kind's per-frame parameters
(expression; FLAME: also neck and jaw rotations) by warm-started Gauss-Newton
(`facefit.fit.multi_image.fit_views` with the shape fixed, through the model kind's own
vertices and Jacobian), then smoothed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facefit.detect.eyes import EYES_MAX_TURN_DEG
from facefit.fit.blendshape import (
    DEFAULT_SPARSITY,
    fit_blendshape_points,
    view_blendshape_points,
)
from facefit.fit.camera import Camera
from facefit.fit.contour import head_turn
from facefit.fit.core.camera import CameraPose, PerspectiveCamera
from facefit.fit.multi_image import ViewPoints, fit_views
from facefit.model.arkit import open_eye_offsets
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
        camera: the camera model (scaled orthographic when None); a perspective camera's
            focal length and principal point are held, and a face found afresh starts from
            the scaled orthographic fit's pinhole counterpart
            (`facefit.fit.core.camera.PerspectiveCamera.at_scale`).
    """

    def __init__(self, model: MorphableModel | FaceModel, shape: np.ndarray,
                 smoother: PoseExpressionSmoother | None = None, iterations: int = 2,
                 camera: Camera | None = None) -> None:
        self.face_model = face_model(model)
        self.camera = Camera() if camera is None else camera
        if self.camera.kind == "perspective" and (self.camera.focal_px is None
                                                  or self.camera.principal_point_px is None):
            raise ValueError("a perspective camera needs focal_px and principal_point_px "
                             "(`facefit.fit.landmark_fit.camera_model` fills them in)")
        self.model = self.face_model.base
        self.shape = np.asarray(shape, np.float32)
        self.smoother = smoother
        self.iterations = iterations
        self._prev: tuple[CameraPose, np.ndarray] | None = None
        # blendshape kinds: the clip's eyelid offsets so far (`_eyelid_fit`) and each eye's
        # closure, per frame; apart for the Face Mesh's lids (False) and per-eye ones (True)
        self.eyelid_offsets: dict[bool, list[np.ndarray]] = {False: [], True: []}
        self.eyelid_closure: dict[bool, list[np.ndarray]] = {False: [], True: []}
        self._eye = _eye_parts(self.face_model) if self.face_model.kind == "ict" else None
        self._neutral: np.ndarray | None = None  # `neutral` of every vertex, made once
        self._bridge: np.ndarray | None = None  # its iBUG 27 (nose bridge), for `turn`

    def reset(self) -> None:
        """The face was lost: start the next fit and the filters afresh."""
        self._prev = None
        if self.smoother is not None:
            self.smoother.reset()

    def warm_start_from(self, other: FrameFitter) -> None:
        """Continue from ``other``'s last frame (the identity changed while streaming)."""
        self._prev = other._prev
        self.eyelid_offsets = other.eyelid_offsets
        self.eyelid_closure = other.eyelid_closure

    def params(self, view_params: np.ndarray) -> FaceParams:
        """The kind's parameters of the identity and one frame's parameter vector."""
        fm = self.face_model
        return fm.with_vector(fm.zero_params(), np.r_[self.shape, view_params])

    def neutral(self, ids: np.ndarray | None = None) -> np.ndarray:
        """(V, 3) (or (len(ids), 3)) model-frame identity mesh (mm): the clip's shape, every
        other parameter 0 (the whole mesh computed once per fitter: a copy of it)."""
        fm = self.face_model
        if ids is None and self._neutral is not None:
            return self._neutral.copy()
        mesh = fm.vertices(self.params(np.zeros(fm.num_params - len(self.shape))), ids)
        if ids is None:
            self._neutral = mesh.copy()
        return mesh

    def _eyelid_fit(self, pts: np.ndarray, ids: np.ndarray, w: np.ndarray, sigma_px: float,
                    pose: CameraPose, vec: np.ndarray, eyelids_px: np.ndarray | None = None
                    ) -> np.ndarray:
        """Blendshape kinds: ``vec`` with the eye shapes (``eyeBlink/Squint/Wide``) refitted
        after the clip's own eyelid offsets are taken off the eyelid points (``eyelids_px``,
        the view's fixed-vertex points with each eye landmarked on its own, when given and
        the head is turned `facefit.detect.eyes.EYES_MAX_TURN_DEG` at most; the points on
        vertices an ``eyeBlink`` shape moves over 1 mm): the median over the clip's frames
        (the last `EYELID_HISTORY`) of each point's offset from the model's eye with the eye
        shapes at 0, at the fitted pose, in model units (pixels over the camera scale);
        before `facefit.model.arkit.EYELID_MIN_FRAMES` frames, each eye's offsets in its
        most open frame (`facefit.model.arkit.open_eye_offsets`; closure: the offsets'
        least-squares amount of the eye's ``eyeBlink`` motion). The open eye as the clip
        mostly shows it is then the model's neutral one (as
        `facefit.model.arkit.EyelidCalibration` does for the default model's ARKit solve,
        there in each eye's own frame); only the eye shapes are taken from the refit, so the
        mouth and jaw are as fitted.
        Synthetic blink clip (`facefit.video.synthetic`), ``--model ict``, both-eye blinks:
        eyeBlinkLeft/Right 0.07 / 0.11 -> 0.24 / 0.23 on the closed frames; with
        ``eyelids_px`` 0.40 / 0.55, and a right-eye-only blink 0.0 / 0.73 (0.0 / 0.004
        from the Face Mesh's lids, which close both eyes alike)."""
        fm = self.face_model
        if self._eye is None:
            return vec
        eye, shapes, blinks = self._eye
        if not eye.any() or not len(shapes):
            return vec
        on = eye[ids]
        per_eye = eyelids_px is not None and abs(self.turn(pose)) <= np.sin(
            np.radians(EYES_MAX_TURN_DEG))
        if per_eye:
            pts = np.vstack([eyelids_px, pts[len(eyelids_px):]])
        neutral = vec.copy()
        neutral[_eye_shapes(fm, look=True)] = 0.0
        x = fm.vertices(FaceParams(self.shape, neutral), ids[on])
        q = pose.project(x)[0]
        scale = pose.origin_scale()[0]
        off = (pts[on] - q) / scale
        # each blink shape's image motion at the points (n, B, 2), model units
        basis = fm.base.expression_basis[ids[on]][:, :, blinks]  # type: ignore[attr-defined]
        motion = np.stack([pose.project(x + basis[:, :, b])[0] - q
                           for b in range(len(blinks))], axis=1) / scale
        power = (motion**2).sum(2)  # (n, B)
        which = np.argmax(power, axis=1)  # the eye of each point
        mine = np.arange(len(blinks))[:, None] == which[None, :]  # (B, n)
        closure = ((np.einsum("nbc,nc->bn", motion, off) * mine).sum(1)
                   / np.maximum((power.T * mine).sum(1), 1e-9))
        offsets, closures = self.eyelid_offsets[per_eye], self.eyelid_closure[per_eye]
        offsets.append(off)
        closures.append(closure)
        del offsets[:-EYELID_HISTORY], closures[:-EYELID_HISTORY]
        if len({len(o) for o in offsets}) > 1:  # the point set changed
            del offsets[:-1], closures[:-1]
        moved = pts.copy()
        moved[on] -= open_eye_offsets(offsets, closures, which) * scale
        bs = fit_blendshape_points(fm, moved, ids, sigma_px, w, identity=self.shape,
                                   init=(pose, vec), iterations=1)
        out = vec.copy()
        out[shapes] = np.asarray(bs.weights, np.float64)[shapes]
        return out

    def turn(self, pose: CameraPose) -> float:
        """Signed sine of the head turn at ``pose`` (`facefit.fit.contour.head_turn`, about
        the identity's nose bridge, iBUG 27; 0 for a model without 68 landmark ids)."""
        lm = self.model.landmark_ids.get("ibug68")
        if lm is None or len(lm) != 68:
            return 0.0
        if self._bridge is None:  # the identity's: the same every frame
            self._bridge = self.neutral(np.asarray(lm, np.int64)[[27]])[0]
        return head_turn(pose, self._bridge)

    def vertices(self, params: FaceParams, ids: np.ndarray | None = None) -> np.ndarray:
        """(V, 3) or (len(ids), 3) model-frame vertices (mm) of ``params``, as the kind
        poses them (FLAME: skinned)."""
        return self.face_model.vertices(params, ids)

    def fit(self, view: ViewPoints, t: float, eyelids_px: np.ndarray | None = None
            ) -> FrameFit:
        """Fit the landmarks of the frame at time ``t`` (seconds). ``eyelids_px``: the view's
        ``points_px`` with the eyelids landmarked one eye at a time (`facefit.detect.eyes`),
        for a blendshape kind's eye shapes (`_eyelid_fit`); the fit itself uses the view's."""
        fm = self.face_model
        init = None if self._prev is None else [self._prev]
        its = self.iterations if init is not None else 2 * self.iterations + 2
        if fm.kind == "ict":  # blendshape weights stay in their box [0, 1]
            start = self._prev
            if start is None:  # a camera for the head turn: the fixed-vertex points alone
                b0 = fit_blendshape_points(fm, view.points_px, view.vertex_ids, view.sigma_px,
                                           view.weights, identity=self.shape,
                                           iterations=3 * its, sparsity=VIDEO_SPARSITY)
                start = (self._as_camera(b0.camera), np.asarray(b0.weights, np.float64))
            pts, ids, w = view_blendshape_points(fm, view.points_px, view.vertex_ids,
                                                 view.weights, view.contour_px,
                                                 turn=self.turn(start[0]))
            bs = fit_blendshape_points(fm, pts, ids, view.sigma_px, w, identity=self.shape,
                                       init=start, iterations=3 * self.iterations,
                                       sparsity=VIDEO_SPARSITY)
            pose, vec, rms = bs.camera, np.asarray(bs.weights, np.float64), [bs.rms_px]
            vec = self._eyelid_fit(pts, ids, w, view.sigma_px, pose, vec, eyelids_px)
        else:
            if init is None and self.camera.kind == "perspective":
                _, per_view, poses, _, _ = fit_views(
                    self.model, [view], its, shape=self.shape, fix_shape=True,
                    kind=None if fm.kind == "linear" else fm)
                init = [(self._as_camera(poses[0]), np.asarray(per_view[0], np.float64))]
            _, per_view, poses, rms, _ = fit_views(
                self.model, [view], its, shape=self.shape, fix_shape=True, init=init,
                kind=None if fm.kind == "linear" else fm)
            pose, vec = poses[0], np.asarray(per_view[0], np.float64)
        self._prev = (pose, vec)
        raw = self.params(vec)
        if self.smoother is None:
            return FrameFit(pose, raw, pose, raw, rms[0])
        # a pinhole camera is filtered as its scaled orthographic counterpart (scale and
        # image position of the model origin), its focal length and principal point held
        rot, s, tr, v = self.smoother(pose.rotation, *pose.origin_scale(), vec, t)
        if fm.kind == "ict":  # a filter may overshoot the weights' box
            box = fm.box()
            v = np.clip(v, box.lower[len(self.shape):], box.upper[len(self.shape):])
        return FrameFit(pose, raw, pose.reposed(rot, s, tr), self.params(v), rms[0])

    def _as_camera(self, pose: CameraPose) -> CameraPose:
        """A scaled orthographic start ``pose`` as this fitter's camera model: for a
        perspective camera the pinhole camera that sees the model origin where ``pose`` does,
        at its scale."""
        cam = self.camera
        if cam.kind != "perspective" or pose.kind == "perspective":
            return pose
        return PerspectiveCamera.at_scale(pose.rotation, pose.scale, pose.translation,
                                          float(cam.focal_px),  # type: ignore[arg-type]
                                          np.asarray(cam.principal_point_px, np.float64))


VIDEO_SPARSITY = 2.0 * DEFAULT_SPARSITY
"""L1 cost of a weight of 1 in the per-frame fit of a blendshape (ICT) clip (chi^2 units;
`facefit.fit.blendshape.fit_blendshape_points`), twice the photos' `DEFAULT_SPARSITY`
(tuned on synthetic landmarks with 0-2 px noise): a real tracker's per-frame landmark
errors are larger, and at 10 shapes such as noseSneer, cheekPuff and jawForward took up the
mouth's motion. ``scripts/arkit_real_clips.py --model ict``, jawOpen against the tracked
inner-lip gap (chin as `view_blendshape_points` gates it), at sparsity 10 / 15 / 20 / 30:
LRS3 r 0.90 / 0.95 / 0.97 / 0.97 (with the clip identity fitted without the chin 0.50 /
0.81 / 0.95 / 0.97), MEAD 0.86 / 0.90 / 0.92 / 0.94 (measured on these two clips: no
held-out clip)."""

EYELID_HISTORY = 250
"""Frames over which `FrameFitter._eyelid_fit` takes the median eyelid offset."""


def _eye_shapes(fm: FaceModel, look: bool = False) -> np.ndarray:
    """Indices of a blendshape kind's eye shapes (``eyeBlink``, ``eyeSquint``, ``eyeWide``;
    with ``look`` also ``eyeLook``)."""
    prefixes = ("eyeBlink", "eyeSquint", "eyeWide") + (("eyeLook",) if look else ())
    return np.array([i for i, n in enumerate(fm.expression_names)  # type: ignore[attr-defined]
                     if n.startswith(prefixes)], np.int64)


def _eye_parts(fm: FaceModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """((V,) bool: vertices an ``eyeBlink`` shape moves over 1 mm, the eye shapes' indices,
    the ``eyeBlink`` shapes' indices)."""
    names = fm.expression_names  # type: ignore[attr-defined]
    blink = np.array([i for i, n in enumerate(names) if n.startswith("eyeBlink")], np.int64)
    basis = fm.base.expression_basis  # type: ignore[attr-defined]
    eye = (np.linalg.norm(basis[:, :, blink], axis=1).max(1) > 1.0 if len(blink)
           else np.zeros(len(basis), bool))
    return eye, _eye_shapes(fm), blink
