"""facefit: photos and video of faces to 3D faces with 3D morphable models."""

from facefit.model import MorphableModel, load_default_model
from facefit.reconstruct import Reconstruction, Reconstructor, reconstruct

__version__ = "0.1.0"
__all__ = ["MorphableModel", "Reconstruction", "Reconstructor", "load_default_model",
           "reconstruct"]
