"""Cameras and head-pose angles.

Frames: the model frame has x to the face's left (viewer's right), y up and z out of the face.
The camera looks down its -z axis in this "view" frame (OpenGL style): a frontal face has
rotation identity. Images have their origin top-left, x right, y down, so a view-frame point
(X, Y, Z) projects to pixel x = s*X + tx, y = -s*Y + ty under the scaled orthographic camera.
Depth for z-buffering is ``-Z`` (larger is farther), in the same units as x and y.

Euler angles (degrees): ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``, rotations about the view
axes: positive yaw turns the nose towards the image's right, positive pitch turns the nose
down, positive roll turns the face counter-clockwise as the viewer sees it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    """Camera model of a fit.

    Attributes:
        kind: ``"scaled_orthographic"`` or ``"perspective"``.
        focal_px: focal length in pixels (perspective only, else None).
        principal_point_px: (cx, cy) in pixels (perspective only, else None).
    """

    kind: str = "scaled_orthographic"
    focal_px: float | None = None
    principal_point_px: tuple[float, float] | None = None


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rotation_from_euler(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """(3, 3) rotation, model frame to view frame: ``Rz(roll) @ Ry(yaw) @ Rx(pitch)``.

    Positive yaw turns the nose towards the image's right, positive pitch turns it down,
    positive roll turns the face counter-clockwise as the viewer sees it.
    """
    y, p, r = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    return _rz(r) @ _ry(y) @ _rx(p)


def euler_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw_deg, pitch_deg, roll_deg) of ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``.

    Yaw is in [-90, 90]; at |yaw| = 90 (gimbal lock) pitch is set to 0.
    """
    r = np.asarray(rotation, dtype=np.float64)
    yaw = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    if abs(abs(r[2, 0]) - 1.0) < 1e-9:
        pitch = 0.0
        roll = np.arctan2(-r[0, 1], r[1, 1])
    else:
        pitch = np.arctan2(r[2, 1], r[2, 2])
        roll = np.arctan2(r[1, 0], r[0, 0])
    return float(np.rad2deg(yaw)), float(np.rad2deg(pitch)), float(np.rad2deg(roll))
