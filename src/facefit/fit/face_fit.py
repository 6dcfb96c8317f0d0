"""One entry point for fitting any kind of face model to one detection.

`fit_face` picks the fitter from the model's kind (`facefit.model.kinds.face_model`), with
the same camera for every kind:

* linear PCA: `facefit.fit.landmark_fit.fit_landmarks` (contour and depth residuals);
* FLAME: `facefit.fit.flame_fit.fit_flame_landmarks` (jaw and neck by skinning);
* ICT blendshapes: `facefit.fit.blendshape.fit_blendshape_face` (weights bounded to [0, 1]);
* FaceScape bilinear and any other kind: the one-photo case of
  `facefit.fit.multi_image.fit_same_person`, which fits through the kind's `vertex_jacobian`
  (either camera) with the outline landmarks matched to the silhouette
  (`facefit.fit.landmark_fit.KindContour`). On the default model's face recast as a bilinear
  tensor (``tests/fit/test_face_fit_bilinear.py``, yaw 25 degrees) that gives 1.46 mm vertex
  RMS against 3.09 mm for `facefit.fit.bilinear_fit.fit_bilinear_landmarks_2d`, which pins
  the jaw points to fixed vertices.

`with_landmark_outputs` gives a fit its 68-point outputs in the annotation conventions.

Several photos of one person (`facefit.same_person`) and video frames (`facefit.video`) use
the same kinds, cameras and landmark prior (`facefit.fit.multi_image.default_landmark_sigma`).
"""

from __future__ import annotations

from facefit.detect.base import FaceLandmarks
from facefit.fit.flame_fit import fit_flame_landmarks
from facefit.fit.landmark_fit import camera_model, fit_landmarks
from facefit.fit.multi_image import default_landmark_sigma, fit_same_person, view_from_face
from facefit.fit.result import FitResult
from facefit.model.face_model import FaceModel
from facefit.model.kinds import face_model
from facefit.model.morphable_model import MorphableModel


def fit_face(model: MorphableModel | FaceModel, face: FaceLandmarks, image_size: tuple[int, int],
             camera: str = "scaled_orthographic", focal_px: float | None = None,
             landmark_sigma: float | None = None) -> FitResult:
    """Fit ``model`` (any kind) to one detected face.

    Args:
        model: the loaded model, or a `FaceModel` kind.
        face: the detection.
        image_size: (width, height) in pixels.
        camera: ``"scaled_orthographic"`` or ``"perspective"`` (`camera_kind`).
        focal_px: perspective focal length (default the image diagonal).
        landmark_sigma: landmark noise as a fraction of the face size (default per kind,
            `facefit.fit.multi_image.DEFAULT_LANDMARK_SIGMA`).
    """
    fm = face_model(model)
    model = fm.base
    sigma = default_landmark_sigma(fm.kind) if landmark_sigma is None else landmark_sigma
    if fm.kind == "flame":
        cam = camera_model(camera, image_size, focal_px)
        flame = fm.flame  # type: ignore[attr-defined]
        return fit_flame_landmarks(flame, face, image_size, landmark_sigma=sigma, camera=cam)
    if fm.kind == "ict":
        from facefit.fit.blendshape import fit_blendshape_face

        return fit_blendshape_face(fm, face, image_size, camera=camera,  # type: ignore[arg-type]
                                   focal_px=focal_px, landmark_sigma=sigma)
    if fm.kind == "linear":
        return fit_landmarks(model, face, image_size, camera=camera, focal_px=focal_px,
                             landmark_sigma=sigma)
    # bilinear and any other kind: the kind's own vertices and Jacobian, the outline
    # landmarks silhouette-matched (`landmark_fit.KindContour`) as for linear models
    return fit_same_person(model, [view_from_face(model, face, sigma)], kind=fm,
                           camera=camera_model(camera, image_size, focal_px)).fits[0]


def with_landmark_outputs(model: MorphableModel, fit: FitResult, face: FaceLandmarks,
                          landmark_fit: FitResult | None = None) -> FitResult:
    """``fit`` of ``face`` with its 68-point outputs as the best estimates of the two
    annotation conventions: the 300-W points ``landmarks_68_2d_contour``
    (`facefit.fit.points300w.with_detector_points`) and AFLW's ``landmarks_68_2d`` /
    ``landmarks_68_3d`` (`facefit.fit.points_aflw.with_aflw_convention`).

    ``landmark_fit``: the landmark fit of ``face`` that ``fit``, a photometric refinement,
    started from or replaced; its points are the outputs (mesh and coefficients stay
    ``fit``'s). The refinement moves the mesh to explain the pixels, and its projected landmark
    vertices land further from where annotators put the points: `benchmarks/photometric.py
    --faces 0 --aflw 60 --helen 82` reads a balanced NME of 4.20 % for the landmark fit's AFLW
    points against 4.44 % for the refined mesh's (60 AFLW2000-3D dev photos), and 4.12 %
    against 4.20 % inter-ocular for the 300-W points (82 HELEN test photos)."""
    from facefit.fit.points300w import with_detector_points
    from facefit.fit.points_aflw import with_aflw_convention

    src = fit if landmark_fit is None else landmark_fit
    src = with_aflw_convention(model, with_detector_points(model.name, src, face), face)
    if landmark_fit is None:
        return src
    return fit.replaced(landmarks_68_2d=src.landmarks_68_2d, landmarks_68_3d=src.landmarks_68_3d,
                        landmarks_68_2d_contour=src.landmarks_68_2d_contour)
