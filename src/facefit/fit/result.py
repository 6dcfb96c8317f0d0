"""The result of fitting a morphable model to one face."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from facefit.fit.camera import Camera
from facefit.fit.core.rotation import euler_from_rotation

if TYPE_CHECKING:
    from facefit.fit.core.camera import CameraPose
    from facefit.model.morphable_model import MorphableModel


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
        landmarks_68_2d: (68, 2) float32 projections of the model's 68 landmark vertices,
            hidden ones included (AFLW2000-3D convention).
        landmarks_68_3d: (68, 3) float32 the same points with depth (verts_px rows).
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
    verts_px: np.ndarray
    landmarks_68_2d: np.ndarray
    landmarks_68_3d: np.ndarray
    landmarks_68_2d_contour: np.ndarray
    residual_px: float
    num_landmarks: int
    iterations: int
    vertices_mm: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)


def model_frame_vertices(model: MorphableModel, fit: FitResult) -> np.ndarray:
    """(V, 3) float32 fitted vertices in the model frame, mm: ``fit.vertices_mm`` when the fit
    has them (FLAME jaw/neck pose, bilinear models), else the linear model's vertices."""
    if fit.vertices_mm is not None:
        return np.asarray(fit.vertices_mm, np.float32)
    return model.vertices(fit.shape_coeffs, fit.expression_coeffs)


def assemble_result(pose: CameraPose, camera: Camera, verts_px: np.ndarray,
                    landmarks_3d: np.ndarray, contour_2d: np.ndarray, shape: np.ndarray,
                    expression: np.ndarray, residual_px: float, num_landmarks: int,
                    iterations: int, vertices_mm: np.ndarray | None = None,
                    extras: dict[str, np.ndarray] | None = None) -> FitResult:
    """The one `FitResult` constructor of every model kind: pose fields and Euler angles from
    the fitted camera ``pose``, the image-space mesh (V, 3) and 68 landmarks (68, 3) with the
    silhouette-following jaw ``contour_2d`` (68, 2)."""
    yaw, pitch, roll = euler_from_rotation(pose.rotation)
    lm3 = np.asarray(landmarks_3d, np.float32)
    return FitResult(
        shape_coeffs=np.asarray(shape, np.float32),
        expression_coeffs=np.asarray(expression, np.float32),
        rotation=np.array(pose.rotation, np.float64),
        translation=np.array(pose.translation, np.float64), scale=float(pose.scale),
        camera=camera, yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll,
        verts_px=np.asarray(verts_px, np.float32), landmarks_68_2d=lm3[:, :2].copy(),
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
