"""Cameras and head-pose angles.

Frames: the model frame has x to the face's left (viewer's right), y up and z out of the face.
The camera looks down its -z axis in this "view" frame (OpenGL style): a frontal face has
rotation identity. Images have their origin top-left, x right, y down, so a view-frame point
(X, Y, Z) projects to pixel x = s*X + tx, y = -s*Y + ty under the scaled orthographic camera.
Depth for z-buffering is ``-Z`` (larger is farther), in the same units as x and y.

Euler angles (degrees): ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``, rotations about the view
axes: positive yaw turns the nose towards the image's right, positive pitch turns the nose
down, positive roll turns the face counter-clockwise as the viewer sees it.

The cameras themselves (projection, Jacobians) are `facefit.fit.core.camera`'s
`ScaledOrthographicCamera` and `PerspectiveCamera`; the angle conversions live in
`facefit.fit.core.rotation` and are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from facefit.fit.core.rotation import euler_from_rotation, rotation_from_euler

__all__ = ["CAMERA_CHOICES", "CAMERA_KINDS", "Camera", "camera_candidates", "camera_kind",
           "checked_camera", "euler_from_rotation", "photo_camera", "rotation_from_euler"]

CAMERA_KINDS = ("scaled_orthographic", "perspective")
"""The camera kinds, by their one name in Python, on the command line (``--camera``) and in
the JSON and NPZ outputs (``camera.kind``, ``camera_kind``)."""

CAMERA_CHOICES = ("auto",) + CAMERA_KINDS
"""What a photo's fit may be asked for (``facefit reconstruct --camera``, `facefit.Reconstructor`):
a kind, or ``"auto"``, the perspective camera where the photo's focal length is known (given,
or its EXIF 35 mm equivalent) and the scaled orthographic one where it is not
(`photo_camera`), unless a photometric refinement can tell (`camera_candidates`)."""

CAMERA_ALIASES = {"orthographic": "scaled_orthographic"}
"""Older spellings still accepted for a kind (``--camera orthographic``)."""


def camera_kind(name: str) -> str:
    """The kind (one of `CAMERA_KINDS`) that ``name`` or its alias (`CAMERA_ALIASES`) names;
    raises ValueError for anything else."""
    kind = CAMERA_ALIASES.get(name, name)
    if kind not in CAMERA_KINDS:
        raise ValueError(f"camera must be one of {', '.join(map(repr, CAMERA_KINDS))} "
                         f"(or 'orthographic'), got {name!r}")
    return kind


def checked_camera(name: str, focal_px: float | None, auto: bool = False) -> str:
    """`camera_kind` of ``name`` (with ``auto``, also ``"auto"``, `CAMERA_CHOICES`), refusing
    (ValueError) a ``focal_px`` that is given with the scaled orthographic camera or is not a
    positive number."""
    kind = "auto" if auto and name == "auto" else camera_kind(name)
    if focal_px is not None and kind == "scaled_orthographic":
        raise ValueError("focal_px needs camera='perspective'")
    if focal_px is not None and not 0 < focal_px < float("inf"):
        raise ValueError(f"focal_px must be a positive number, got {focal_px}")
    return kind


def photo_camera(choice: str, focal_px: float | None) -> tuple[str, float | None]:
    """(kind, focal length px or None) of one photo's fit for the camera ``choice``
    (`CAMERA_CHOICES`) and the photo's known focal length ``focal_px`` (given, or from its
    EXIF; None: unknown). ``"auto"`` is perspective with a known focal length, else scaled
    orthographic: on the shape benchmark's renders (`benchmarks/README.md`, "Which camera
    when") a pinhole camera of the true focal length scores as the scaled orthographic camera
    does on distant faces and far better on close-ups, while one of a guessed focal length
    (the image diagonal) loses most of the model's own faces' gain on distant ones."""
    kind = camera_kind(choice) if choice != "auto" else (
        "perspective" if focal_px is not None else "scaled_orthographic")
    return kind, focal_px if kind == "perspective" else None


def camera_candidates(choice: str, focal_px: float | None, refine: bool
                      ) -> list[tuple[str, float | None]]:
    """The (kind, focal length px) cameras one photo's fit tries: `photo_camera`'s one, or,
    with ``"auto"``, an unknown focal length and a photometric refinement (``refine``), the
    scaled orthographic camera and a pinhole camera at the image diagonal (focal None), of
    which the refinement keeps the one whose render explains the photo better
    (`facefit.fit.photometric.best_refinement`): a guess the pixels can check, where the
    landmarks alone cannot tell a close-up from a distant face."""
    if choice == "auto" and focal_px is None and refine:
        return [("scaled_orthographic", None), ("perspective", None)]
    return [photo_camera(choice, focal_px)]


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
