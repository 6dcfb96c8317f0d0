"""Metrics that need no face pipeline: `facefit.metrics.generative` (FID, IS, KID, path length)."""
