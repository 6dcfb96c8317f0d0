"""Fitting: landmarks to model parameters and camera (`face_fit`, `landmark_fit`, `multi_image`,
`flame_fit`, `bilinear_fit`, `blendshape`, on the shared `core`), photometric refinement
(`photometric`), contour correspondence (`contour`) and the typed results (`result`)."""

from facefit.exports import lazy_exports

__all__ = ["FitResult", "PhotometricConfig", "ViewPoints", "fit_face", "fit_landmarks",
           "fit_same_person", "refine_photometric", "refine_photometric_multi"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "fit_face": "facefit.fit.face_fit",
    "fit_landmarks": "facefit.fit.landmark_fit",
    "FitResult": "facefit.fit.result",
    "fit_same_person": "facefit.fit.multi_image",
    "ViewPoints": "facefit.fit.multi_image",
    "refine_photometric": "facefit.fit.photometric",
    "refine_photometric_multi": "facefit.fit.photometric",
    "PhotometricConfig": "facefit.fit.photometric",
})
