"""facefit: photos and video of faces to 3D faces with 3D morphable models."""

from facefit.io.export import export
from facefit.model import MorphableModel, load_default_model
from facefit.reconstruct import Reconstruction, Reconstructor, reconstruct

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """`reconstruct_same_person` and `track_video` load on first use (PEP 562): importing the
    same-person orchestration and the video pipeline with the package added 0.1-0.4 s to
    ``import facefit`` (measured on a loaded 2-core box)."""
    if name == "reconstruct_same_person":
        from facefit.same_person import reconstruct_same_person

        return reconstruct_same_person
    if name == "track_video":
        from facefit.video.pipeline import track_video

        return track_video
    raise AttributeError(f"module 'facefit' has no attribute {name!r}")
__all__ = ["MorphableModel", "Reconstruction", "Reconstructor", "export", "load_default_model",
           "reconstruct"]
