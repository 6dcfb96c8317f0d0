"""The 68 points in the 300-W convention from the fit and the detector together.

The fitted mesh's 300-W points (`facefit.fit.landmark_fit.silhouette_contour`) and the
detector's own points mapped to the 68 iBUG points
(`facefit.fit.correspondence.mediapipe_to_ibug68`) err in partly independent ways: the
mesh, spanned by a few dozen modes (the default model: 40 identity, 10 expression), cannot
follow an eyelid or a lip line exactly, while the detector has no silhouette for the jaw. On
the 2,012 300-W training faces the default model's mesh points score 5.12 % inter-ocular NME
and the detector's 4.49 %; neither is best everywhere.

`fuse_points` moves each mesh point towards the detector's point by a per-landmark 2x2 gain
plus an offset, both in the face's own frame (rotated by the mesh points' roll, divided by
their size), so the same numbers serve every face size and in-plane rotation. The 68 gains
and offsets are least-squares fits on the 300-W training faces
(``scripts/build_300w_fusion.py``, stored per model in ``fit/data/ibug300w_fusion_*.npz``):
the cascaded linear-regression step of supervised descent (Xiong & De la Torre, CVPR 2013)
with the residual between two estimates as its feature. Held out by source (train on two of
LFPW, AFW, HELEN, score the third), default model: 4.37 / 4.91 / 4.19 % against 4.50 / 5.14 /
4.23 % for the detector's points alone and 5.03 / 5.78 / 4.94 % for the mesh's.

The fused points are 2D estimates: they leave the mesh by the part of the detector's residual
the mesh cannot explain (the projected mesh points are the vertices' own, `FitResult.verts_px`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

import numpy as np

from facefit.detect.base import FaceLandmarks
from facefit.fit.result import FitResult

DATA_DIR = Path(__file__).parent / "data"
SCHEME = "mediapipe468"  # the detector layout the gains were learned for


@dataclasses.dataclass(frozen=True, eq=False)
class PointFusion:
    """Per-landmark linear fusion of mesh and detector points (face frame).

    Attributes:
        gain: (68, 2, 2) float64; row vector ``d @ gain[k]`` is the correction for a
            detector-minus-mesh residual ``d`` (face frame, units of the face size).
        offset: (68, 2) float64 constant correction (face frame, units of the face size).
        model: name of the model whose fits the gains were learned on.
    """

    gain: np.ndarray
    offset: np.ndarray
    model: str


def model_data_path(prefix: str, model_name: str) -> Path | None:
    """``fit/data/<prefix>_<model name>.npz``, a file of numbers learned for one model's fits
    (it may not exist), or None for a model name that cannot be a file name."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", model_name):
        return None
    return DATA_DIR / f"{prefix}_{model_name}.npz"


def data_path(model_name: str) -> Path | None:
    """The packaged gains' file for the model called ``model_name`` (`model_data_path`)."""
    return model_data_path("ibug300w_fusion", model_name)


@functools.cache
def load_fusion(model_name: str) -> PointFusion | None:
    """The packaged fusion gains for fits of the model ``model_name``, or None (no file)."""
    path = data_path(model_name)
    if path is None or not path.is_file():
        return None
    with np.load(path) as d:
        return PointFusion(d["gain"].astype(np.float64), d["offset"].astype(np.float64),
                           str(d["model"]))


def face_frame(mesh_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Roll (rad) from the outer eye corners (points 36 → 45) and size (px, square root of
    the box area) of (..., 68, 2) points: each (...,)."""
    v = mesh_px[..., 45, :] - mesh_px[..., 36, :]
    roll = np.arctan2(v[..., 1], v[..., 0])
    span = mesh_px.max(-2) - mesh_px.min(-2)
    return roll, np.sqrt(np.maximum(span[..., 0] * span[..., 1], 1e-12))


def _rotate(xy: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """(..., K, 2) vectors rotated by ``-angle`` (..., ): image frame to face frame."""
    c, s = np.cos(angle)[..., None], np.sin(angle)[..., None]
    x, y = xy[..., 0], xy[..., 1]
    return np.stack([c * x + s * y, c * y - s * x], -1)


def residual_features(mesh_px: np.ndarray, detector_px: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detector-minus-mesh residuals in the face frame (..., 68, 2), with the frame's roll
    and size (..., ) (`face_frame`)."""
    roll, size = face_frame(mesh_px)
    d = _rotate(detector_px - mesh_px, roll) / size[..., None, None]
    return d, roll, size


def fuse_points(mesh_px: np.ndarray, detector_px: np.ndarray,
                fusion: PointFusion) -> np.ndarray:
    """(..., 68, 2) fused points from the mesh's and the detector's (..., 68, 2) points (px)."""
    mesh = np.asarray(mesh_px, np.float64)
    d, roll, size = residual_features(mesh, np.asarray(detector_px, np.float64))
    corr = np.einsum("...kj,kji->...ki", d, fusion.gain) + fusion.offset
    return mesh + _rotate(corr, -roll) * size[..., None, None]


def with_detector_points(model_name: str, fit: FitResult, face: FaceLandmarks) -> FitResult:
    """``fit`` with ``landmarks_68_2d_contour`` fused with the detection's points when
    packaged gains exist for this model and the detector's layout, else ``fit`` unchanged.
    A blend of MediaPipe's and the network's 68 points (`facefit.detect.network.blend_face`)
    is fused with its MediaPipe face's points (on the 9 HELEN test faces that `auto` blends:
    7.72 % inter-ocular NME without, 5.80 with, 5.81 for MediaPipe's fit alone)."""
    mediapipe = getattr(face, "mediapipe", None)
    face = mediapipe if mediapipe is not None else face
    fusion = load_fusion(model_name) if face.scheme == SCHEME else None
    if fusion is None:
        return fit
    from facefit.fit.correspondence import mediapipe_to_ibug68

    det = mediapipe_to_ibug68(np.asarray(face.points_px, np.float64))
    fused = fuse_points(np.asarray(fit.landmarks_68_2d_contour, np.float64)[:, :2], det, fusion)
    return fit.replaced(landmarks_68_2d_contour=fused.astype(np.float32))
