"""`face_model`: the one place that tells the kinds of face model apart."""

from __future__ import annotations

from facefit.model.bilinear import BilinearFaceModel, bilinear_from_model
from facefit.model.face_model import FaceModel
from facefit.model.flame import FlameFaceModel
from facefit.model.ict import ict_from_model
from facefit.model.io_flame import flame_from_model
from facefit.model.linear import LinearFaceModel
from facefit.model.morphable_model import MorphableModel


def face_model(model: MorphableModel | FaceModel) -> FaceModel:
    """The kind of a loaded model: ICT when its expressions are blendshapes, FLAME when it
    carries skinning data, bilinear when it carries a FaceScape core tensor, else linear. A
    `FaceModel` is returned unchanged."""
    if isinstance(model, FaceModel):
        return model
    ict = ict_from_model(model)  # blendshape expressions (ICT Face Model)
    if ict is not None:
        return ict
    try:
        return FlameFaceModel(flame_from_model(model))
    except ValueError:
        pass
    bm = bilinear_from_model(model)
    if bm is not None:
        return BilinearFaceModel(bm, model)
    return LinearFaceModel(model)
