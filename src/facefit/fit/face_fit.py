"""One entry point for fitting any kind of face model to one detection.

`fit_face` picks the fitter from the model's kind (`facefit.model.kinds.face_model`), with
the same camera for every kind:

* linear PCA: `facefit.fit.landmark_fit.fit_landmarks` (contour and depth residuals);
* FLAME: `facefit.fit.flame_fit.fit_flame_landmarks` (jaw and neck by skinning);
* FaceScape bilinear: `facefit.fit.bilinear_fit.fit_bilinear_landmarks_2d`;
* ICT blendshapes: `facefit.fit.blendshape.fit_blendshape_face` (weights bounded to [0, 1]);
* any other kind: the one-photo case of `facefit.fit.multi_image.fit_same_person`, which
  fits through the kind's `vertex_jacobian` (scaled orthographic camera; with the
  perspective camera the model's linear form is fitted).
"""

from __future__ import annotations

from facefit.detect.base import FaceLandmarks
from facefit.fit.bilinear_fit import fit_bilinear_landmarks_2d
from facefit.fit.flame_fit import fit_flame_landmarks
from facefit.fit.landmark_fit import camera_model, fit_landmarks
from facefit.fit.multi_image import fit_same_person, view_from_face
from facefit.fit.result import FitResult
from facefit.model.face_model import FaceModel
from facefit.model.kinds import face_model
from facefit.model.morphable_model import MorphableModel

# Landmark noise (fraction of the face size) per kind: fit_landmarks' tuned 0.05 for linear
# models, the FLAME and bilinear fitters' 0.02.
DEFAULT_LANDMARK_SIGMA = {"linear": 0.05, "flame": 0.02, "bilinear": 0.02, "ict": 0.01}


def fit_face(model: MorphableModel | FaceModel, face: FaceLandmarks, image_size: tuple[int, int],
             camera: str = "orthographic", focal_px: float | None = None,
             landmark_sigma: float | None = None) -> FitResult:
    """Fit ``model`` (any kind) to one detected face.

    Args:
        model: the loaded model, or a `FaceModel` kind.
        face: the detection.
        image_size: (width, height) in pixels.
        camera: ``"orthographic"`` (scaled orthographic) or ``"perspective"``.
        focal_px: perspective focal length (default the image diagonal).
        landmark_sigma: landmark noise as a fraction of the face size (default per kind,
            `DEFAULT_LANDMARK_SIGMA`).
    """
    fm = face_model(model)
    model = fm.base
    sigma = (DEFAULT_LANDMARK_SIGMA.get(fm.kind, 0.02) if landmark_sigma is None
             else landmark_sigma)
    if fm.kind == "flame":
        cam = camera_model(camera, image_size, focal_px)
        flame = fm.flame  # type: ignore[attr-defined]
        return fit_flame_landmarks(flame, face, image_size, landmark_sigma=sigma, camera=cam)
    if fm.kind == "ict":
        from facefit.fit.blendshape import fit_blendshape_face

        return fit_blendshape_face(fm, face, image_size, camera=camera,  # type: ignore[arg-type]
                                   focal_px=focal_px, landmark_sigma=sigma)
    if fm.kind == "bilinear":
        cam = camera_model(camera, image_size, focal_px)
        return fit_bilinear_landmarks_2d(model, face, image_size, landmark_sigma=sigma,
                                         camera=cam)
    if fm.kind != "linear" and camera == "orthographic":
        return fit_same_person(model, [view_from_face(model, face, sigma)], kind=fm).fits[0]
    return fit_landmarks(model, face, image_size, camera=camera, focal_px=focal_px,
                         landmark_sigma=sigma)
