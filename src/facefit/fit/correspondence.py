"""Which model vertex each detector landmark corresponds to.

A `LandmarkCorrespondence` says, for one landmark layout (``scheme``) and one model, which
landmarks sit on fixed model vertices and which are face-outline landmarks, matched to the
silhouette at fitting time (`facefit.fit.contour`). The dense MediaPipe ↔ default-model
correspondence is built from data by ``scripts/build_mediapipe_correspondence.py`` and
stored in ``fit/data/mediapipe468_bfm3ddfa.npz``; any model with 68 iBUG landmark vertices
can be fitted from the 68-point layout, and MediaPipe points are mapped to those 68 points
(by the same script) when a model has no dense correspondence.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefit.detect.base import FaceLandmarks
from facefit.model.morphable_model import MorphableModel

DATA = Path(__file__).parent / "data" / "mediapipe468_bfm3ddfa.npz"
IBUG_JAW = np.arange(17)
IBUG68_FIXED = "ibug68_fixed"  # 68 iBUG points on fixed vertices, jaw included


@dataclass(frozen=True, eq=False)
class LandmarkCorrespondence:
    """Landmarks of one layout mapped onto one model.

    Attributes:
        scheme: the detector's landmark layout (``"ibug68"``, ``"mediapipe468"``).
        landmark_index: (K,) int64 indices into the detector's points with a fixed vertex.
        vertex_ids: (K,) int64 the model vertex of each of those landmarks.
        weights: (K,) float32 relative confidence of each fixed landmark.
        contour_index: (Kc,) int64 indices of face-outline landmarks (silhouette-matched).
        contour_weight: weight of each outline landmark relative to a fixed one.
    """

    scheme: str
    landmark_index: np.ndarray
    vertex_ids: np.ndarray
    weights: np.ndarray
    contour_index: np.ndarray
    contour_weight: float = 1.0


def ibug68_correspondence(model: MorphableModel, contour_weight: float = 1.0,
                          fixed_jaw: bool = False) -> LandmarkCorrespondence:
    """The 68-point iBUG layout: inner points on the model's landmark vertices, the 17 jaw
    points on the silhouette (the 300-W convention), or with ``fixed_jaw`` on their landmark
    vertices too (scheme ``"ibug68_fixed"``: the AFLW2000-3D convention, hidden points
    included, as facefit's network predicts them)."""
    ids = model.landmark_ids.get("ibug68")
    if ids is None or len(ids) != 68:
        raise ValueError(f"model {model.name} has no 68-point iBUG landmark ids")
    if fixed_jaw:
        return LandmarkCorrespondence(IBUG68_FIXED, np.arange(68), np.asarray(ids, np.int64),
                                      np.ones(68, np.float32), np.zeros(0, np.int64))
    inner = np.arange(17, 68)
    return LandmarkCorrespondence("ibug68", inner, np.asarray(ids)[inner].astype(np.int64),
                                  np.ones(len(inner), np.float32), IBUG_JAW.copy(),
                                  contour_weight)


@functools.lru_cache(maxsize=1)
def _dense_data() -> dict[str, np.ndarray] | None:
    if not DATA.is_file():
        return None
    with np.load(DATA) as z:
        return {k: z[k] for k in z.files}


def ibug300w_vertex_ids(model: MorphableModel) -> np.ndarray | None:
    """(68,) int64 vertex ids of the iBUG points where 300-W's annotators put them on
    ``model``'s surface (inner points 17-67, learned from the 300-W training photos; the jaw
    ids are the model's, the 300-W jaw follows the silhouette), or None where the model has
    no such set (only the default model has one; others use their ``ibug68`` vertices)."""
    data = _dense_data()
    if data is None or "ibug300w_vertex_ids" not in data or str(data["model"]) != model.name:
        return None
    return data["ibug300w_vertex_ids"].astype(np.int64)


def mediapipe_to_ibug68(points: np.ndarray) -> np.ndarray:
    """(68, 2) iBUG landmarks from (468, 2) MediaPipe points: each iBUG point is a fixed
    weighted mean of a few MediaPipe points, learned from annotated photos (see the script)."""
    data = _dense_data()
    if data is None:
        raise FileNotFoundError(f"{DATA}: correspondence file missing")
    idx, w = data["ibug_from_mp_index"], data["ibug_from_mp_weight"]  # (68, J)
    return (points[idx] * w[..., None]).sum(1)


def correspondence_for(model: MorphableModel, scheme: str) -> LandmarkCorrespondence:
    """The correspondence of ``scheme`` on ``model``; raises ValueError if there is none."""
    if scheme in ("ibug68", IBUG68_FIXED):
        return ibug68_correspondence(model, fixed_jaw=scheme == IBUG68_FIXED)
    data = _dense_data()
    if scheme == "mediapipe468" and data is not None and str(data["model"]) == model.name:
        return LandmarkCorrespondence(
            "mediapipe468", data["mp_index"].astype(np.int64),
            data["vertex_ids"].astype(np.int64), data["weights"].astype(np.float32),
            data["contour_mp_index"].astype(np.int64), float(data["contour_weight"]))
    raise ValueError(f"no landmark correspondence for scheme {scheme!r} on model {model.name}")


def ibug68_points(face: FaceLandmarks, fitter: str) -> tuple[np.ndarray, float]:
    """(68, 2) float64 iBUG-68 points of a detection (MediaPipe-468 mapped to iBUG-68) and the
    face size in pixels (square root of the landmark box area); ``fitter`` names the caller
    in the one-line error for other layouts."""
    points = np.asarray(face.points_px, np.float64)
    if face.scheme == "mediapipe468":
        points = mediapipe_to_ibug68(points)
    elif len(points) != 68:
        raise ValueError(f"{fitter} fitting needs iBUG-68 or MediaPipe-468 landmarks, got "
                         f"{face.scheme!r} ({len(points)} points)")
    return points, float(np.sqrt(np.prod(points.max(0) - points.min(0))))
