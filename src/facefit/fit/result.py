"""The result of fitting a morphable model to one face."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from facefit.fit.camera import Camera

if TYPE_CHECKING:
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
        landmarks_68_2d_contour: (68, 2) float32 like ``landmarks_68_2d`` but the 17 jaw points
            follow the visible silhouette (300-W convention).
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
