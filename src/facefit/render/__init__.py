"""Rendering: the numpy z-buffer rasteriser (`raster`), shading (`shading`), the overlay
(`overlay`), the differentiable torch renderer (`differentiable`) and the mesh rim (`rim`)."""

from facefit.exports import lazy_exports

__all__ = ["rasterize"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "rasterize": "facefit.render.raster",
})
