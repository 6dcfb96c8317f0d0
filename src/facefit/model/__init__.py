"""Morphable models: the `MorphableModel` type and its loaders."""

from facefit.model.bfm_3ddfa import load_default_model
from facefit.model.load import ModelFileError, load_model, save_model
from facefit.model.morphable_model import MorphableModel

__all__ = ["ModelFileError", "MorphableModel", "load_default_model", "load_model", "save_model"]
