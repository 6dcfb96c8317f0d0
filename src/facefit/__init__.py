"""facefit: photos and video of faces to 3D faces with 3D morphable models.

The pipeline's entry points are here (`Reconstructor`, `reconstruct`, `export`,
`reconstruct_same_person`, `track_video`), with the types a user meets (`FitResult`,
`FaceLandmarks`, `MorphableModel`, `FaceModel`); each subpackage exports its own public
names (`facefit.model`, `facefit.fit`, `facefit.detect`, `facefit.io`, `facefit.render`,
`facefit.texture`, `facefit.metrics`, `facefit.eval`, `facefit.synthetic`, `facefit.cli`).
"""

from facefit.exports import lazy_exports
from facefit.io.export import export
from facefit.model import (
    FaceModel,
    ModelFileError,
    MorphableModel,
    load_default_model,
    load_face_model,
    load_model,
)
from facefit.reconstruct import Reconstruction, Reconstructor, reconstruct

__version__ = "0.1.0"

# loaded on first use: importing the same-person orchestration, the video pipeline and the
# photometric refinement (torch) with the package added 0.1-0.4 s to ``import facefit``
# (measured on a loaded 2-core box), and most runs need none of them
__getattr__, __dir__ = lazy_exports(__name__, {
    "reconstruct_same_person": "facefit.same_person",
    "track_video": "facefit.video.pipeline",
    "FitResult": "facefit.fit.result",
    "FaceLandmarks": "facefit.detect.base",
    "PhotometricConfig": "facefit.fit.photometric",
})
__all__ = ["FaceLandmarks", "FaceModel", "FitResult", "ModelFileError", "MorphableModel",
           "PhotometricConfig", "Reconstruction", "Reconstructor", "export", "load_default_model",
           "load_face_model", "load_model", "reconstruct", "reconstruct_same_person",
           "track_video"]
