"""`face_model`: a loaded model as its kind (`facefit.model.face_model.FaceModel`).

The kind is decided by the loader that read the file (`MorphableModel.kind`, stored in
facefit ``.npz`` models) and looked up here; nothing inspects a model's ``extras`` to guess
it. Each kind's constructor reads its own data (FLAME skinning, the FaceScape core tensor,
ICT bounds and regions) from the model.
"""

from __future__ import annotations

from collections.abc import Callable

from facefit.model.bilinear import BilinearFaceModel, bilinear_from_model
from facefit.model.face_model import FaceModel
from facefit.model.flame import FlameFaceModel
from facefit.model.ict import ICTFaceModel
from facefit.model.io_common import PathLike
from facefit.model.io_flame import flame_from_model
from facefit.model.linear import LinearFaceModel
from facefit.model.load import load_model
from facefit.model.morphable_model import MorphableModel


def _bilinear(model: MorphableModel) -> BilinearFaceModel:
    bm = bilinear_from_model(model)
    if bm is None:
        raise ValueError(f"model {model.name}: kind 'bilinear' without its core tensor "
                         "(extras 'bilinear_core' and statistics)")
    return BilinearFaceModel(bm, model)


KINDS: dict[str, Callable[[MorphableModel], FaceModel]] = {
    "linear": LinearFaceModel,
    "flame": lambda m: FlameFaceModel(flame_from_model(m)),
    "bilinear": _bilinear,
    "ict": ICTFaceModel,
}


def face_model(model: MorphableModel | FaceModel) -> FaceModel:
    """The `FaceModel` of ``model``'s kind (``model.kind``); a `FaceModel` is returned
    unchanged. Raises ValueError when the model lacks its kind's data."""
    if isinstance(model, FaceModel):
        return model
    return KINDS[model.kind](model)


def load_face_model(path: PathLike, landmarks: PathLike | None = None,
                    **options: object) -> FaceModel:
    """The model file at ``path`` as its kind: `facefit.model.load_model` (same arguments),
    then `face_model`."""
    return face_model(load_model(path, landmarks, **options))
