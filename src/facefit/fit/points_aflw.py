"""A fit's 68 points in AFLW2000-3D's convention (``landmarks_68_2d``, ``landmarks_68_3d``).

AFLW2000-3D's 68 labels (and AFLW's 21 manual points) put the brows lower and the chin higher
than 300-W's annotators, whose convention MediaPipe's mapped points
(`facefit.fit.correspondence`) and the fits to them follow: on AFLW2000-3D dev faces within
30 degrees of yaw, the default model's fitted 68 landmark vertices span a box 3.2 % taller
than the labels'. The network's answers carry an offset into AFLW's convention already
(`facefit.regress.predictor.RegressionPredictor.in_aflw_convention`), and a face of the
network keeps them as its 68 points: the fit to them is for the mesh. A fit of MediaPipe's
mesh gets the same kind of offset: a constant coefficient offset, learned by
`facefit.regress.aflw21.convention_offset` from fits to train-aflw21's faces within 30
degrees of yaw and their visible manual points (``scripts/build_aflw_convention.py``, stored
per model in ``fit/data/aflw_convention_*.npz``), moves its 68 points. Nothing else changes:
the mesh, its coefficients and the 300-W points (``landmarks_68_2d_contour``) stay the fit's.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np

from facefit.detect.base import FaceLandmarks
from facefit.fit.points300w import model_data_path
from facefit.fit.result import FitResult
from facefit.model.face_model import FaceParams
from facefit.model.kinds import face_model
from facefit.model.morphable_model import MorphableModel

SCHEME = "mediapipe468"  # the detector layout whose fits the offset was learned on
NETWORK_SHARE = 0.4
"""The network's share in the AFLW-convention 68 points of a MediaPipe face that carries the
network's reading (`facefit.detect.network.MediaPipeFace`: the faces ``auto`` keeps MediaPipe's
points for): two detectors' errors partly cancel. Chosen on the even half of AFLW2000-3D dev
(sorted images; model selection only), the odd half held out: the 649 such faces' bucket
(0-30 degrees of yaw) read 2.611 / 2.635 % (even / odd) with MediaPipe's fit alone, 2.544 /
2.565 at a share of 0.2, 2.530 / 2.550 at 0.3, **2.530 / 2.548 at 0.4**, 2.543 / 2.560 at 0.5,
2.570 / 2.585 at 0.6, the network's first pass instead of its final reading 2.565 / 2.586 at
best (0.2)."""


@dataclasses.dataclass(frozen=True, eq=False)
class ConventionOffset:
    """A model's constant coefficient offset into AFLW's convention.

    Attributes:
        coefficients: (K,) float64 added to the fit's shape then expression coefficients
            (the model's first ``K`` of them) for its 68 landmark points only.
        model: name of the model whose fits it was learned on.
    """

    coefficients: np.ndarray
    model: str


def data_path(model_name: str) -> Path | None:
    """The packaged offset's file for the model called ``model_name`` (`model_data_path`)."""
    return model_data_path("aflw_convention", model_name)


@functools.cache
def load_offset(model_name: str) -> ConventionOffset | None:
    """The packaged offset for fits of the model ``model_name``, or None (no file)."""
    path = data_path(model_name)
    if path is None or not path.is_file():
        return None
    with np.load(path) as d:
        return ConventionOffset(d["coefficients"].astype(np.float64), str(d["model"]))


def landmark_offset_mm(model: MorphableModel, face: FaceLandmarks) -> np.ndarray | None:
    """(68, 3) float64 model-frame move, mm, of the 68 landmark points of ``model``'s fits of
    ``face`` into AFLW's convention (the offset's coefficients through the linear model's
    Jacobian, its bases: the same for every fit), or None: ``face`` does not carry MediaPipe's
    points, ``model`` is not a linear model or has no packaged offset."""
    offset = (load_offset(model.name) if face.scheme == SCHEME
              and getattr(model, "kind", None) == "linear" else None)
    if offset is None:
        return None
    fm = face_model(model)
    if len(offset.coefficients) != fm.num_params:
        raise ValueError(f"the AFLW convention offset of {offset.model!r} has "
                         f"{len(offset.coefficients)} coefficients, {model.name!r} "
                         f"{fm.num_params}")
    jac = fm.vertex_jacobian(fm.zero_params(), model.landmark_ids["ibug68"])
    return jac @ offset.coefficients


def with_aflw_convention(model: MorphableModel, fit: FitResult, face: FaceLandmarks
                         ) -> FitResult:
    """``fit`` with its AFLW-convention points (``landmarks_68_2d``, ``landmarks_68_3d``) as
    the best estimate of them: for a face of the network (`facefit.detect.network`, source
    ``"network"``) its own 68 points (the fit to them, pulled by the model's priors, scores
    worse: AFLW2000-3D dev 4.30 / 5.59 % at 30-60 / 60-90 degrees of yaw against 4.34 / 5.62
    for the fit's projections); for a fit of MediaPipe's points with a packaged offset for
    ``model``, the fit's points moved by it (`landmark_offset_mm`), and for a MediaPipe face
    that carries the network's reading, those averaged with the reading's (`NETWORK_SHARE`);
    else ``fit`` unchanged. The depth of the network's points keeps the fit's mean."""
    if getattr(face, "source", None) == "network" and len(face.points_px) == 68:
        lm3 = np.asarray(fit.landmarks_68_3d, np.float64).copy()
        lm3[:, :2] = face.points_px
        if face.depth_px is not None:
            lm3[:, 2] = np.asarray(face.depth_px, np.float64) + lm3[:, 2].mean()
        return fit.replaced(landmarks_68_2d=lm3[:, :2].astype(np.float32),
                            landmarks_68_3d=lm3.astype(np.float32))
    move_mm = landmark_offset_mm(model, face)
    if move_mm is None or fit.vertices_mm is not None:
        return fit
    from facefit.fit.multi_image import fit_pose

    pose = fit_pose(fit)
    v = face_model(model).vertices(FaceParams(fit.shape_coeffs, fit.expression_coeffs),
                                   model.landmark_ids["ibug68"])
    before = pose.image_points(v)
    move = pose.image_points(v + move_mm) - before
    if pose.focal is not None:  # depth in mm; verts_px's is in pixels at the face's distance
        move[:, 2] *= pose.focal / float(np.median(before[:, 2]))
    lm3 = np.asarray(fit.landmarks_68_3d, np.float64) + move
    reading = getattr(face, "regression", None)  # `MediaPipeFace`: the network's reading
    if reading is not None:
        net = np.asarray(reading.landmarks_68_3d, np.float64)
        net[:, 2] += lm3[:, 2].mean() - net[:, 2].mean()
        lm3 = (1.0 - NETWORK_SHARE) * lm3 + NETWORK_SHARE * net
    return fit.replaced(landmarks_68_2d=lm3[:, :2].astype(np.float32),
                        landmarks_68_3d=lm3.astype(np.float32))
