"""Textures from photos: `extract` (visibility, mirror fill, pull-push)."""

from facefit.exports import lazy_exports

__all__ = ["extract_texture"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "extract_texture": "facefit.texture.extract",
})
