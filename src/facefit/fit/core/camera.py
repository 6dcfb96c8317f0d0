"""Cameras: projection, Jacobians and pose updates, in one place.

Frames (see `facefit.fit.camera`): the model frame has x to the face's left (viewer's right),
y up and z out of the face; a camera rotation maps it to the view frame, which looks down its
-z axis (OpenGL style). Images have their origin top-left, x right, y down.

* `ScaledOrthographicCamera`: pixel x = s·X + tx, y = -s·Y + ty, depth = -s·Z (pixels,
  larger is farther) for the view-frame point (X, Y, Z) = R·p.
* `PerspectiveCamera`: (X, Y, Z) = R·p + t (mm); pixel x = cx + f·X/d, y = cy - f·Y/d with
  depth d = -Z (mm).

Both are parametrised for Gauss-Newton by 6 numbers: a rotation increment ω applied on the
left (``R <- rodrigues(ω) R``, so d(R p)/dω = -[R p]x), then log-scale and the 2D image
translation (orthographic) or the 3D translation (perspective). `jacobians` gives the
derivatives of (x, y, depth) with respect to those 6 numbers and to the model-frame point,
and `updated` applies a step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from facefit.fit.core.rotation import axis_angle, rodrigues, skew, umeyama

NUM_POSE_PARAMS = 6
MAX_LOG_SCALE_STEP = 1.0
"""Largest change of log scale one Gauss-Newton step may make (a factor e): far above
what a fit's steps take (after the linear start they move the scale by percents)."""


@dataclass(eq=False)
class ScaledOrthographicCamera:
    """Scaled orthographic camera (weak perspective).

    Attributes:
        rotation: (3, 3) model frame to view frame.
        scale: pixels per mm.
        translation: (2,) pixels, image position of the model origin.
    """

    rotation: np.ndarray
    scale: float
    translation: np.ndarray
    kind: ClassVar[str] = "scaled_orthographic"
    focal: ClassVar[None] = None
    principal: ClassVar[None] = None

    def image_points(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) float64 (x px, y px, depth px) of model-frame points (N, 3)."""
        v = np.asarray(points, np.float64) @ np.asarray(self.rotation, np.float64).T
        out = np.empty_like(v)
        self._to_pixels(v, out[:, :2])  # column by column: numpy's (N, 2) broadcasts are slow
        np.multiply(v[:, 2], -self.scale, out=out[:, 2])
        return out

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) pixels and (N,) depth (larger = farther) of model-frame points (N, 3)."""
        v = np.asarray(points, np.float64) @ np.asarray(self.rotation, np.float64).T
        px = np.empty((len(v), 2))
        self._to_pixels(v, px)
        return px, v[:, 2] * -self.scale

    def _to_pixels(self, view: np.ndarray, out: np.ndarray) -> None:
        """``out`` (N, 2) = (s x + tx, -s y + ty) of view-frame points (N, 3)."""
        t = self.translation
        np.multiply(view[:, 0], self.scale, out=out[:, 0])
        out[:, 0] += t[0]
        np.multiply(view[:, 1], -self.scale, out=out[:, 1])
        out[:, 1] += t[1]

    def linear_map(self) -> np.ndarray:
        """(3, 3) matrix A with image_points(p) = A p + (tx, ty, 0)."""
        return np.diag([self.scale, -self.scale, -self.scale]) @ self.rotation

    def jacobians(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Derivatives of (x, y, depth) at model-frame points (N, 3).

        Returns:
            (N, 3, 6) with respect to (ω, log scale, tx, ty) and (N, 3, 3) with respect to
            the point.
        """
        v = np.asarray(points, np.float64) @ np.asarray(self.rotation, np.float64).T
        n, s = len(v), self.scale
        d_view = -skew(v)  # d(R p)/dω
        jac = np.zeros((n, 3, NUM_POSE_PARAMS))
        sign = np.array([s, -s, -s])
        jac[:, :, :3] = sign[None, :, None] * d_view
        jac[:, :, 3] = sign * v
        jac[:, 0, 4] = 1.0
        jac[:, 1, 5] = 1.0
        return jac, np.broadcast_to(self.linear_map(), (n, 3, 3))

    def updated(self, step: np.ndarray) -> ScaledOrthographicCamera:
        """The camera after a Gauss-Newton step (ω (3), d log scale, d tx, d ty); the scale
        changes by at most `MAX_LOG_SCALE_STEP` in log per step (an undamped step on points
        far from the model, e.g. a mesh read the wrong way up, overflowed it to inf)."""
        step = np.asarray(step, np.float64)
        d_log_s = float(np.clip(step[3], -MAX_LOG_SCALE_STEP, MAX_LOG_SCALE_STEP))
        return ScaledOrthographicCamera(rodrigues(step[:3])[0] @ self.rotation,
                                        self.scale * float(np.exp(d_log_s)),
                                        np.asarray(self.translation, np.float64) + step[4:6])

    def origin_scale(self) -> tuple[float, np.ndarray]:
        """(scale px/mm, image position (2,) px of the model origin), as
        `PerspectiveCamera.origin_scale` gives them for a pinhole camera."""
        return float(self.scale), np.asarray(self.translation, np.float64)

    def reposed(self, rotation: np.ndarray, scale: float, origin_px: np.ndarray
                ) -> ScaledOrthographicCamera:
        """This camera model with ``rotation``, ``scale`` px/mm and the model origin at
        ``origin_px`` (the inverse of `origin_scale`)."""
        return ScaledOrthographicCamera(np.asarray(rotation, np.float64), float(scale),
                                        np.asarray(origin_px, np.float64))


@dataclass(eq=False)
class PerspectiveCamera:
    """Pinhole camera.

    Attributes:
        rotation: (3, 3) model frame to view frame.
        translation: (3,) mm, model origin in the view frame (z < 0 in front of the camera).
        focal: focal length, pixels.
        principal: (2,) principal point (cx, cy), pixels.
    """

    rotation: np.ndarray
    translation: np.ndarray
    focal: float
    principal: np.ndarray
    kind: ClassVar[str] = "perspective"
    scale: ClassVar[float] = 1.0

    def image_points(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) float64 (x px, y px, depth mm) of model-frame points (N, 3)."""
        v = np.asarray(points, np.float64) @ np.asarray(self.rotation, np.float64).T
        v = v + self.translation
        d = -v[:, 2]
        return np.column_stack([self.principal[0] + self.focal * v[:, 0] / d,
                                self.principal[1] - self.focal * v[:, 1] / d, d])

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) pixels and (N,) depth in mm (larger = farther) of model-frame points (N, 3)."""
        p = self.image_points(points)
        return np.ascontiguousarray(p[:, :2]), p[:, 2].copy()

    def jacobians(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Derivatives of (x, y, depth) at model-frame points (N, 3).

        Returns:
            (N, 3, 6) with respect to (ω, t) and (N, 3, 3) with respect to the point.
        """
        rx = np.asarray(points, np.float64) @ np.asarray(self.rotation, np.float64).T
        v = rx + self.translation
        d, f = -v[:, 2], self.focal
        jv = np.zeros((len(v), 3, 3))  # d(x, y, depth) / d(view point)
        jv[:, 0, 0] = f / d
        jv[:, 0, 2] = f * v[:, 0] / d**2
        jv[:, 1, 1] = -f / d
        jv[:, 1, 2] = -f * v[:, 1] / d**2
        jv[:, 2, 2] = -1.0
        d_view = np.concatenate([-skew(rx), np.broadcast_to(np.eye(3), (len(v), 3, 3))], 2)
        return np.matmul(jv, d_view), np.matmul(jv, self.rotation)

    def updated(self, step: np.ndarray) -> PerspectiveCamera:
        """The camera after a Gauss-Newton step (ω (3), d t (3))."""
        step = np.asarray(step, np.float64)
        return PerspectiveCamera(rodrigues(step[:3])[0] @ self.rotation,
                                 np.asarray(self.translation, np.float64) + step[3:6],
                                 self.focal, self.principal)

    @classmethod
    def at_scale(cls, rotation: np.ndarray, scale: float, origin_px: np.ndarray,
                 focal: float, principal: np.ndarray) -> PerspectiveCamera:
        """The pinhole camera of focal length ``focal`` and principal point ``principal``
        that sees the model origin at ``origin_px`` with ``scale`` px/mm there: the origin at
        the distance ``focal / scale``. Its projection is then the scaled orthographic
        camera's (``rotation``, ``scale``, ``origin_px``) divided by ``1 - scale Z / focal``
        about the principal point (Z: the view-frame depth of a point about the origin)."""
        principal = np.asarray(principal, np.float64)
        xy = (np.asarray(origin_px, np.float64) - principal) / scale
        return cls(np.asarray(rotation, np.float64), np.array([xy[0], -xy[1], -focal / scale]),
                   float(focal), principal)

    def origin_scale(self) -> tuple[float, np.ndarray]:
        """(scale px/mm at the model origin, its image position (2,) px): `at_scale`'s
        arguments back."""
        scale = self.focal / -float(self.translation[2])
        t = np.asarray(self.translation, np.float64)
        return scale, self.principal + scale * np.array([t[0], -t[1]])

    def reposed(self, rotation: np.ndarray, scale: float, origin_px: np.ndarray
                ) -> PerspectiveCamera:
        """The pinhole camera of this focal length and principal point with ``rotation``
        that sees the model origin at ``origin_px`` with ``scale`` px/mm (`at_scale`; the
        inverse of `origin_scale`)."""
        return PerspectiveCamera.at_scale(rotation, scale, origin_px, self.focal,
                                          self.principal)


CameraPose = ScaledOrthographicCamera | PerspectiveCamera


def camera_pose(rotation: np.ndarray, scale: float, translation: np.ndarray,
                focal: float | None = None, principal: np.ndarray | None = None) -> CameraPose:
    """A scaled orthographic camera, or with ``focal`` a perspective one (``scale`` ignored):
    the constructor of the fitters' former ``_Pose`` type."""
    if focal is None:
        return ScaledOrthographicCamera(np.asarray(rotation, np.float64), float(scale),
                                        np.asarray(translation, np.float64))
    return PerspectiveCamera(np.asarray(rotation, np.float64),
                             np.asarray(translation, np.float64), float(focal),
                             np.asarray(principal, np.float64))


def estimate_scaled_orthographic(points_3d: np.ndarray, points_px: np.ndarray,
                                 weights: np.ndarray | None = None
                                 ) -> ScaledOrthographicCamera:
    """Scaled orthographic camera from 3D-2D pairs: affine least squares, then the nearest
    scaled rotation (SVD of the 2x3 part; Hartley & Zisserman, "Multiple View Geometry",
    2004, §7.3 and eos's ``estimate_orthographic_projection_linear``)."""
    n = len(points_3d)
    a = np.hstack([points_3d, np.ones((n, 1))])
    w = np.ones(n) if weights is None else weights
    sw = np.sqrt(w)[:, None]
    p, *_ = np.linalg.lstsq(a * sw, points_px * sw, rcond=None)  # (4, 2)
    m = np.stack([p[:3, 0], -p[:3, 1]])  # rows s·r1, s·r2 in the view frame (y up)
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    r12 = u @ vt
    rot = np.vstack([r12, np.cross(r12[0], r12[1])])
    return ScaledOrthographicCamera(rot, float(s.mean()), p[3].copy())


def similarity_camera(points_3d: np.ndarray, observed: np.ndarray) -> ScaledOrthographicCamera:
    """Scaled orthographic camera from 3D-3D pairs (`umeyama`): model points (N, 3) against
    observed (x px, y px, depth px) points, depth larger = farther."""
    dst = np.column_stack([observed[:, 0], -observed[:, 1], -observed[:, 2]])
    sim = umeyama(points_3d, dst)
    return ScaledOrthographicCamera(sim.rotation, sim.scale,
                                    np.array([sim.translation[0], -sim.translation[1]]))


def estimate_perspective(points_3d: np.ndarray, points_px: np.ndarray, focal: float,
                         principal: np.ndarray, guess: PerspectiveCamera | None = None
                         ) -> PerspectiveCamera:
    """Perspective pose from 3D-2D pairs: OpenCV's iterative PnP, started from ``guess`` or
    from the scaled orthographic estimate placed at the depth its scale implies."""
    import cv2

    principal = np.asarray(principal, np.float64)
    k = np.array([[focal, 0, principal[0]], [0, focal, principal[1]], [0, 0, 1]])
    flip = np.diag([1.0, -1.0, -1.0])  # view frame (y up, -z forward) <-> OpenCV camera frame
    obj = np.ascontiguousarray(points_3d, np.float64)
    img = np.ascontiguousarray(points_px, np.float64)
    if guess is None:
        ortho = estimate_scaled_orthographic(obj, img)
        guess = PerspectiveCamera.at_scale(ortho.rotation, ortho.scale, ortho.translation,
                                           focal, principal)
    rot, centre = guess.rotation, guess.translation
    rvec = axis_angle(flip @ rot).reshape(3, 1)
    tvec = (flip @ centre).reshape(3, 1)
    _, rvec, tvec = cv2.solvePnP(obj, img, k, None, rvec, tvec, useExtrinsicGuess=True,
                                 flags=cv2.SOLVEPNP_ITERATIVE)
    return PerspectiveCamera(flip @ rodrigues(np.ravel(rvec))[0], (flip @ tvec).ravel(),
                             float(focal), principal)
