"""Morphable models: the `MorphableModel` type, its loaders and the `FaceModel` protocol with
its kinds (`face_model`: linear, FLAME, bilinear)."""

from facefit.model.bfm_3ddfa import load_default_model
from facefit.model.face_model import FaceModel, FaceParams
from facefit.model.kinds import face_model, load_face_model
from facefit.model.load import ModelFileError, load_model, save_model
from facefit.model.morphable_model import MorphableModel

__all__ = ["FaceModel", "FaceParams", "ModelFileError", "MorphableModel", "face_model",
           "load_default_model", "load_face_model", "load_model", "save_model"]
