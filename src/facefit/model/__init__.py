"""Morphable models: the `MorphableModel` type and its loaders."""

from facefit.model.bfm_3ddfa import load_default_model
from facefit.model.morphable_model import MorphableModel

__all__ = ["MorphableModel", "load_default_model"]
