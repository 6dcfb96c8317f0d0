"""Textures from photos: `extract` (visibility, mirror fill, mip-mapped sampling, pull-push)
and `atlas` (texture layouts with per-corner UVs: ICT's tiles packed into one square)."""

from facefit.exports import lazy_exports

__all__ = ["extract_texture", "texture_layout"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "extract_texture": "facefit.texture.extract",
    "texture_layout": "facefit.texture.atlas",
})
