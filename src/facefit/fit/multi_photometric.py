"""Joint photometric refinement of several photos of one person: one identity (shape
coefficients and albedo) shared by all photos; pose, expression and second-order SH lighting
per photo (Blanz & Vetter, SIGGRAPH 1999, fitted to several images as in their multi-view
experiments). The refinement is `facefit.fit.photometric.refine_photometric_multi` (the
single-photo `refine_photometric` is the same loop with one photo); this module keeps its
former import path."""

from facefit.fit.photometric.optimise import MultiPhotometricResult, refine_photometric_multi

__all__ = ["MultiPhotometricResult", "refine_photometric_multi"]
