"""The face record shared by the image JSON and the video JSON lines.

Both outputs describe a face the same way (``facefit/io/schemas/face.schema.json``):
`face_record` builds it, with the ``pose`` object of `pose_record`; numbers are rounded
plain Python floats (`rounded`), NaN and infinity written as ``null``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facefit.fit.core.rotation import euler_from_rotation


def pose_record(rotation: np.ndarray, scale: float, translation: np.ndarray,
                camera_kind: str = "scaled_orthographic", focal_px: float | None = None,
                principal_point_px: Sequence[float] | None = None,
                euler_deg: tuple[float, float, float] | None = None) -> dict[str, Any]:
    """The ``pose`` object of a face record (image JSON and video lines alike,
    ``facefit/io/schemas/face.schema.json``): the Euler angles (``euler_deg``: yaw, pitch,
    roll, default those of ``rotation``), the (3, 3) ``rotation``, ``translation`` ((2,) px or
    (3,) mm), ``scale`` (px/mm) and the ``camera``."""
    yaw, pitch, roll = (euler_from_rotation(np.asarray(rotation, np.float64))
                        if euler_deg is None else euler_deg)
    return {
        "yaw_deg": rounded(yaw, 3),
        "pitch_deg": rounded(pitch, 3),
        "roll_deg": rounded(roll, 3),
        "rotation": rounded(rotation, 6),
        "translation": rounded(translation, 3),
        "scale": rounded(scale, 6),
        "camera": {
            "kind": camera_kind,
            "focal_px": rounded(focal_px, 3),
            "principal_point_px": rounded(principal_point_px, 3),
        },
    }


def face_record(box: Any, score: float, pose: dict[str, Any], landmarks_68_2d: np.ndarray,
                expression_coeffs: np.ndarray, residual_px: float, **more: Any
                ) -> dict[str, Any]:
    """One face of the image JSON or of a video frame line (the shared shape of
    ``facefit/io/schemas/face.schema.json``): ``box`` [x0, y0, x1, y1] px, detection
    ``score``, ``pose`` (`pose_record`), the 68 landmarks (px), the expression coefficients
    (N(0, 1)), the RMS landmark ``residual_px``; ``more`` adds output-specific fields as
    given."""
    return {
        "box": rounded(box, 3),
        "score": rounded(score, 4),
        "pose": pose,
        "landmarks_68_2d": rounded(landmarks_68_2d, 3),
        "expression_coeffs": rounded(expression_coeffs, 5),
        "residual_px": rounded(residual_px, 3),
    } | more


def rounded(value: Any, digits: int) -> Any:
    """Plain Python floats (or nested lists of them) rounded to ``digits``; None for None,
    NaN or infinity (not valid JSON)."""
    if value is None:
        return None
    a = np.round(np.asarray(value, dtype=np.float64), digits)
    finite = np.isfinite(a)
    if finite.all():
        return a.tolist()
    return np.where(finite, a, None).tolist() if a.ndim else None


def read_video_jsonl(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, frame records) of a video's JSON lines (``facefit/io/schemas/video*.schema
    .json``); each frame record has ``frame``, ``time_s`` and ``faces`` (possibly empty).

    Raises:
        ValueError: ``"PATH: not a facefit video JSON-lines file (why)"``.
    """
    p = Path(path)
    try:
        lines = [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]
        head, frames = lines[0], lines[1:]
        if "fps" not in head or "schema_version" not in head or not isinstance(
                head.get("model"), dict):
            raise ValueError("no header line with schema_version, model and fps")
        if any(not isinstance(r.get("faces"), list) or "frame" not in r for r in frames):
            raise ValueError("a frame line without frame and faces")
    except (OSError, ValueError, IndexError, TypeError, AttributeError) as exc:
        raise ValueError(f"{p}: not a facefit video JSON-lines file ({exc})") from None
    return head, frames


def first_face(record: dict[str, Any]) -> dict[str, Any] | None:
    """The first (best) face of a frame record or an image summary, or None."""
    faces = record.get("faces")
    return faces[0] if faces else None
