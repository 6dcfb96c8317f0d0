"""The result of fitting a morphable model to one face."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from facefit.fit.camera import Camera
from facefit.fit.core.rotation import euler_from_rotation

if TYPE_CHECKING:
    from facefit.fit.core.camera import CameraPose
    from facefit.model.morphable_model import MorphableModel


class Deferred:
    """A value computed on first use, then kept: give a `FitResult` field that a run may
    never read (the dense mesh of a JSON-only run) as ``Deferred(function)``."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self._compute: Callable[[], Any] | None = compute
        self._value: Any = None

    def __call__(self) -> Any:
        if self._compute is not None:
            self._value, self._compute = self._compute(), None
        return self._value


class _DeferrableField:
    """A dataclass field that may be given as a `Deferred`: resolved on first read. It has
    no class-level default (reading it on the class raises AttributeError)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            raise AttributeError(self.name)
        value = obj.__dict__[self.name]
        if isinstance(value, Deferred):
            value = obj.__dict__[self.name] = value()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value


@dataclass(frozen=True, eq=False)
class FitResult:
    """A fitted face: coefficients, camera pose and the dense mesh in image space.

    Attributes:
        shape_coeffs: (Ks,) float32 identity coefficients, prior-normalised (N(0, 1)).
        expression_coeffs: (Ke,) float32 expression coefficients, prior-normalised.
        rotation: (3, 3) float64 rotation, model frame to view frame (see `facefit.fit.camera`).
        translation: (2,) pixels (scaled orthographic: image position of the model origin) or
            (3,) mm (perspective: model origin in the view frame).
        scale: pixels per mm (scaled orthographic); 1.0 for perspective.
        camera: the camera model.
        yaw_deg, pitch_deg, roll_deg: Euler angles of ``rotation``.
        verts_px: (V, 3) float32 dense vertices in image space: x right and y down in pixels,
            z = depth in pixels (larger is farther; only differences are meaningful).
            A fit may compute them on first read (`Deferred`): a run that writes only JSON
            never builds the dense mesh.
        landmarks_68_2d: (68, 2) float32 projections of the model's 68 landmark vertices,
            hidden ones included (AFLW2000-3D convention); in `facefit.Reconstructor`'s fits
            of MediaPipe detections, of those vertices moved by a constant coefficient offset
            into AFLW's annotation convention (`facefit.fit.points_aflw`), so not exactly on
            the mesh; after a photometric refinement, the landmark fit's points
            (`facefit.fit.face_fit.with_landmark_outputs`).
        landmarks_68_3d: (68, 3) float32 the same points with depth (verts_px rows, but for
            that offset).
        landmarks_68_2d_contour: (68, 2) float32 the 300-W convention: the points where
            300-W's annotators put them on the surface, the 17 jaw points on the visible
            silhouette; in `facefit.Reconstructor`'s fits of MediaPipe detections, fused with
            the detector's own points (`facefit.fit.points300w`), so not exactly on the mesh.
        residual_px: RMS distance between the input landmarks and the fitted model, pixels.
        num_landmarks: number of input landmarks used.
        iterations: pose/shape alternations run.
        vertices_mm: (V, 3) float32 fitted model-frame vertices in mm when they are not
            ``model.vertices(shape_coeffs, expression_coeffs)`` (FLAME jaw/neck skinning,
            bilinear models), else None.
        extras: model-specific fitted parameters (e.g. ``flame_pose`` (J, 3) radians,
            ``bilinear_id_weights``), exported into the face's ``.npz``.
    """

    shape_coeffs: np.ndarray
    expression_coeffs: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    scale: float
    camera: Camera
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    verts_px: np.ndarray = _DeferrableField()  # type: ignore[assignment]
    landmarks_68_2d: np.ndarray
    landmarks_68_3d: np.ndarray
    landmarks_68_2d_contour: np.ndarray
    residual_px: float
    num_landmarks: int
    iterations: int
    vertices_mm: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with every deferred field computed (a `Deferred` holds a closure)."""
        return {k: getattr(self, k) if isinstance(v, Deferred) else v
                for k, v in self.__dict__.items()}

    def replaced(self, **changes: Any) -> FitResult:
        """A copy with ``changes`` (as `dataclasses.replace`), deferred fields still
        deferred (`dataclasses.replace` would compute them)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        for name, value in changes.items():
            if name not in self.__dataclass_fields__:
                raise TypeError(f"FitResult has no field {name!r}")
            new.__dict__[name] = value
        return new


def model_frame_vertices(model: MorphableModel, fit: FitResult) -> np.ndarray:
    """(V, 3) float32 fitted vertices in the model frame, mm: ``fit.vertices_mm`` when the fit
    has them (FLAME jaw/neck pose, bilinear models), else the linear model's vertices."""
    if fit.vertices_mm is not None:
        return np.asarray(fit.vertices_mm, np.float32)
    return model.vertices(fit.shape_coeffs, fit.expression_coeffs)


def assemble_result(pose: CameraPose, camera: Camera, verts_px: np.ndarray | Deferred,
                    landmarks_3d: np.ndarray, contour_2d: np.ndarray, shape: np.ndarray,
                    expression: np.ndarray, residual_px: float, num_landmarks: int,
                    iterations: int, vertices_mm: np.ndarray | None = None,
                    extras: dict[str, np.ndarray] | None = None) -> FitResult:
    """The one `FitResult` constructor of every model kind: pose fields and Euler angles from
    the fitted camera ``pose``, the image-space mesh (V, 3) (or a `Deferred` that computes
    it) and 68 landmarks (68, 3) with the silhouette-following jaw ``contour_2d`` (68, 2)."""
    yaw, pitch, roll = euler_from_rotation(pose.rotation)
    lm3 = np.asarray(landmarks_3d, np.float32)
    return FitResult(
        shape_coeffs=np.asarray(shape, np.float32),
        expression_coeffs=np.asarray(expression, np.float32),
        rotation=np.array(pose.rotation, np.float64),
        translation=np.array(pose.translation, np.float64), scale=float(pose.scale),
        camera=camera, yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll,
        verts_px=verts_px if isinstance(verts_px, Deferred) else np.asarray(verts_px,
                                                                           np.float32),
        landmarks_68_2d=lm3[:, :2].copy(),
        landmarks_68_3d=lm3.copy(), landmarks_68_2d_contour=np.asarray(contour_2d, np.float32),
        residual_px=float(residual_px), num_landmarks=int(num_landmarks),
        iterations=int(iterations),
        vertices_mm=None if vertices_mm is None else np.asarray(vertices_mm, np.float32),
        extras={} if extras is None else dict(extras))


def image_vertices(pose: CameraPose, vertices: np.ndarray) -> np.ndarray:
    """(V, 3) float32 image-space vertices (x, y px; depth) of model-frame ``vertices`` (V, 3):
    the camera's `image_points` (one float32 product for the scaled orthographic camera);
    perspective depth is expressed in pixels at the face's (median) distance."""
    if pose.focal is None:
        a = pose.linear_map().astype(np.float32)
        out = np.asarray(vertices, np.float32) @ a.T
        out[:, :2] += np.asarray(pose.translation, np.float32)
        return out
    xy, depth = pose.project(vertices)
    d0 = float(np.median(depth))
    return np.column_stack([xy, (depth - d0) * pose.focal / d0]).astype(np.float32)
