"""Photometric refinement (analysis by synthesis) of landmark fits, on the CPU or a GPU.

Starting from landmark fits of one or more photos of one person, shape, expression, pose,
FLAME jaw/neck rotations, spherical-harmonics lighting and albedo are refined so the rendered
face matches each photo pixel by pixel (Blanz & Vetter, "A Morphable Model for the Synthesis
of 3D Faces", SIGGRAPH 1999), with second-order SH lighting (Ramamoorthi & Hanrahan,
SIGGRAPH 2001), over a face-skin mask with per-pixel occluder rejection, coarse to fine.
Models without an albedo basis get mean skin colour plus a per-vertex correction. The
camera is the fit's: scaled orthographic, or perspective (its focal length and principal
point held, the pose refined), for close-up photos whose faces a weak perspective distorts.

The parts, one module each:

* `facefit.fit.photometric.config`: `PhotometricConfig`, every setting;
* `facefit.fit.photometric.data`: data preparation (crop, skin mask, pyramid, targets);
* `facefit.fit.photometric.objective`: the torch objective (mesh, raster, render, losses);
* `facefit.fit.photometric.priors`: the priors as torch costs;
* `facefit.fit.photometric.optimise`: the optimiser, `refine_photometric_multi`,
  `refine_photometric` (the same with one photo) and `best_refinement` (one face under
  several camera models, the one that explains the photo best kept).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names are loaded on first use (PEP 562): the settings (`config`) import numpy only, so the
# command line can read their defaults without importing torch, which the rest needs.
_WHERE = {name: f"{__name__}.{module}" for module, names in (
    ("config", ("IMAGE_LOSSES", "SKIN_RGB", "PhotometricConfig")),
    ("data", ("crop_image", "face_crop_box", "skin_mask")),
    ("optimise", ("MultiPhotometricResult", "PhotometricResult", "best_refinement",
                  "refine_photometric", "refine_photometric_multi")),
) for name in names} | {"mesh_edges": "facefit.render.differentiable"}

if TYPE_CHECKING:
    from facefit.fit.photometric.config import IMAGE_LOSSES, SKIN_RGB, PhotometricConfig
    from facefit.fit.photometric.data import crop_image, face_crop_box, skin_mask
    from facefit.fit.photometric.optimise import (
        MultiPhotometricResult,
        PhotometricResult,
        best_refinement,
        refine_photometric,
        refine_photometric_multi,
    )
    from facefit.render.differentiable import mesh_edges

__all__ = ["IMAGE_LOSSES", "SKIN_RGB", "MultiPhotometricResult", "PhotometricConfig",
           "PhotometricResult", "best_refinement", "crop_image", "face_crop_box", "mesh_edges",
           "refine_photometric", "refine_photometric_multi", "skin_mask"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # found directly from now on
    return value
